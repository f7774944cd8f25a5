package secgroup

import (
	"maps"
	"slices"
	"sort"
	"sync"

	"neutrino/internal/attr"
	"neutrino/internal/hostapi"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// members are a group's member ports and their addresses, sorted.
type members struct{ ports, addrs []string }

// memberCache holds the groups' members at one revision: when a change
// makes many hosts list their state again at the same revision, a group
// used on all of them is gathered once, not once per host.
type memberCache struct {
	mu      sync.Mutex
	rev     int64
	byGroup map[string]members
}

// members returns group gid's members at the transaction's revision.
func (mc *memberCache) members(c *plugin.Ctx, gid string) (members, error) {
	rev, err := c.Tx.ViewRevision()
	if err != nil {
		return members{}, err
	}
	mc.mu.Lock()
	if mc.rev != rev || mc.byGroup == nil {
		mc.rev, mc.byGroup = rev, map[string]members{}
	}
	m, ok := mc.byGroup[gid]
	mc.mu.Unlock()
	if ok {
		return m, nil
	}
	ports, err := c.Tx.List(schema.Port.Kind, store.Filter{Attr: "security_groups", Values: []string{gid}})
	if err != nil {
		return members{}, err
	}
	m = members{ports: []string{}, addrs: []string{}}
	for _, p := range ports {
		m.ports = append(m.ports, attr.Str(p, "id"))
		m.addrs = append(m.addrs, portAddresses(p)...)
	}
	sort.Strings(m.addrs)
	mc.mu.Lock()
	if mc.rev == rev {
		mc.byGroup[gid] = m
	}
	mc.mu.Unlock()
	return m, nil
}

// hostGroups is the security-group part of a host's span: the groups its
// ports use, the groups their rules admit (remote groups), and the
// addresses of every member of those.
func (s *Service) hostGroups(c *plugin.Ctx, host string, span *hostapi.Span, _ plugin.SpanOptions) error {
	groups := map[string]bool{}
	for _, p := range span.Ports {
		for _, g := range attr.List(p, "security_groups") {
			groups[schema.Render(g)] = true
		}
	}
	remote := map[string]bool{}
	for id := range groups {
		g, err := c.Tx.Get(schema.SecurityGroup.Kind, id)
		if err != nil {
			continue
		}
		span.SecurityGroups = append(span.SecurityGroups, g)
		for _, r := range attr.List(g, "security_group_rules") {
			if m, _ := r.(map[string]any); attr.Str(m, "remote_group_id") != "" {
				remote[attr.Str(m, "remote_group_id")] = true
			}
		}
	}
	var memberPorts [][]string
	for _, gid := range slices.Sorted(maps.Keys(remote)) {
		m, err := s.cache.members(c, gid)
		if err != nil {
			return err
		}
		span.GroupMembers[gid] = m.addrs
		memberPorts = append(memberPorts, m.ports)
	}
	switch len(memberPorts) {
	case 0:
	case 1: // the common case: shared as it is, sorted already
		span.MemberPorts = memberPorts[0]
	default:
		all := map[string]bool{}
		for _, ports := range memberPorts {
			for _, id := range ports {
				all[id] = true
			}
		}
		span.MemberPorts = slices.Sorted(maps.Keys(all))
	}
	sort.Slice(span.SecurityGroups, func(i, j int) bool {
		return attr.Str(span.SecurityGroups[i], "id") < attr.Str(span.SecurityGroups[j], "id")
	})
	return nil
}

// portAddresses are a port's fixed IPs and allowed address pairs.
func portAddresses(p plugin.Object) []string {
	var out []string
	for _, key := range []string{"fixed_ips", "allowed_address_pairs"} {
		for _, e := range attr.List(p, key) {
			if m, _ := e.(map[string]any); m != nil {
				out = append(out, attr.Str(m, "ip_address"))
			}
		}
	}
	return out
}
