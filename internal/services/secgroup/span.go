package secgroup

import (
	"maps"
	"slices"
	"sort"

	"neutrino/internal/attr"
	"neutrino/internal/hostapi"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// members are a group's members' addresses, sorted, and its member ports
// with their hostapi.MemberKey.
type members struct {
	addrs []string
	keys  map[string]string
}

// memberCache holds each group's members as of the last change among
// them: when a change makes many hosts compute their state, a group used
// on all of them is gathered once, not once per host, and a change
// elsewhere does not gather it again.
type memberCache struct{ plugin.Cache[members] }

// members returns group gid's members.
func (mc *memberCache) members(c *plugin.Ctx, gid string) (members, error) {
	f := store.Filter{Attr: "security_groups", Values: []string{gid}}
	v, ok := c.Tx.Version(schema.Port.Kind, f)
	return mc.Get(gid, [2]int64{v}, ok, func() (members, error) { return gatherMembers(c, f) })
}

func gatherMembers(c *plugin.Ctx, f store.Filter) (members, error) {
	ports, err := c.Tx.List(schema.Port.Kind, f)
	if err != nil {
		return members{}, err
	}
	m := members{addrs: []string{}, keys: make(map[string]string, len(ports))}
	for _, p := range ports {
		m.keys[attr.Str(p, "id")] = hostapi.MemberKey(p)
		m.addrs = append(m.addrs, portAddresses(p)...)
	}
	sort.Strings(m.addrs)
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
	for _, gid := range slices.Sorted(maps.Keys(remote)) {
		m, err := s.cache.members(c, gid)
		if err != nil {
			return err
		}
		span.GroupMembers[gid] = m.addrs
		span.Members = append(span.Members, m.keys)
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
