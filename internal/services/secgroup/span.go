package secgroup

import (
	"errors"
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
// with their hostapi.MemberKey and addresses.
type members struct {
	addrs   []string
	keys    map[string]string
	addrsOf map[string][]string
}

// memberCache holds each group's members as of the last change among
// them: when a change makes many hosts compute their state, a group used
// on all of them is gathered once, not once per host, and a change
// elsewhere does not gather it again. A change among them is applied to
// the members before it (stepMembers): what it costs is what changed,
// not the group's size.
type memberCache struct{ plugin.Cache[members] }

// members returns group gid's members.
func (mc *memberCache) members(c *plugin.Ctx, gid string) (members, error) {
	f := groupFilter(gid)
	v, ok := c.Tx.Version(schema.Port.Kind, f)
	return mc.Next(gid, [2]int64{v}, ok, func(prev *members, at [2]int64) (members, error) {
		if prev != nil {
			if m, ok := stepMembers(c, gid, prev, at[0]); ok {
				return m, nil
			}
		}
		return gatherMembers(c, f)
	})
}

// groupFilter selects group gid's member ports (an indexed attribute).
func groupFilter(gid string) store.Filter {
	return store.Filter{Attr: "security_groups", Values: []string{gid}}
}

func gatherMembers(c *plugin.Ctx, f store.Filter) (members, error) {
	ports, err := c.Tx.List(schema.Port.Kind, f)
	if err != nil {
		return members{}, err
	}
	m := members{addrs: []string{}, keys: make(map[string]string, len(ports)), addrsOf: make(map[string][]string, len(ports))}
	for _, p := range ports {
		id := attr.Str(p, "id")
		m.keys[id] = hostapi.MemberKey(p)
		m.addrsOf[id] = portAddresses(p)
		m.addrs = append(m.addrs, m.addrsOf[id]...)
	}
	sort.Strings(m.addrs)
	return m, nil
}

// stepMembers works out group gid's members from prev, its members as of
// revision after, by looking again at the ports changed since; ok is false
// when those changes are not known or too many to be worth it.
func stepMembers(c *plugin.Ctx, gid string, prev *members, after int64) (members, bool) {
	ids, ok := c.Tx.ChangedSince(schema.Port.Kind, after, max(64, len(prev.keys)/4))
	if !ok {
		return members{}, false
	}
	m := members{keys: maps.Clone(prev.keys), addrsOf: maps.Clone(prev.addrsOf)}
	var add, remove []string
	for _, id := range ids {
		remove = append(remove, prev.addrsOf[id]...)
		delete(m.keys, id)
		delete(m.addrsOf, id)
		p, err := c.Tx.Get(schema.Port.Kind, id)
		if errors.Is(err, store.ErrNotFound) || err == nil && !inGroup(p, gid) {
			continue
		}
		if err != nil {
			return members{}, false
		}
		m.keys[id] = hostapi.MemberKey(p)
		m.addrsOf[id] = portAddresses(p)
		add = append(add, m.addrsOf[id]...)
	}
	add, remove = cancelOut(add, remove)
	if len(add) == 0 && len(remove) == 0 {
		m.addrs = prev.addrs // the same list, shared
	} else {
		m.addrs = mergeSorted(prev.addrs, add, remove)
	}
	return m, true
}

func inGroup(p plugin.Object, gid string) bool {
	for _, g := range attr.List(p, "security_groups") {
		if schema.Render(g) == gid {
			return true
		}
	}
	return false
}

// cancelOut sorts add and remove and takes out of both what is in both
// (as multisets).
func cancelOut(add, remove []string) ([]string, []string) {
	sort.Strings(add)
	sort.Strings(remove)
	var a, r []string
	i, j := 0, 0
	for i < len(add) || j < len(remove) {
		switch {
		case j == len(remove) || i < len(add) && add[i] < remove[j]:
			a = append(a, add[i])
			i++
		case i == len(add) || remove[j] < add[i]:
			r = append(r, remove[j])
			j++
		default:
			i, j = i+1, j+1
		}
	}
	return a, r
}

// mergeSorted is sorted list l with the strings of sorted add added and
// one of each string of sorted remove taken out, in a new list.
func mergeSorted(l, add, remove []string) []string {
	out := make([]string, 0, len(l)+len(add))
	i, j := 0, 0
	for _, s := range l {
		for j < len(remove) && remove[j] < s {
			j++ // not in the list: nothing to take out
		}
		if j < len(remove) && remove[j] == s {
			j++
			continue
		}
		for i < len(add) && add[i] <= s {
			out = append(out, add[i])
			i++
		}
		out = append(out, s)
	}
	return append(out, add[i:]...)
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
	for gid := range remote {
		span.GroupMembers[gid] = nil
	}
	if err := s.fillMembers(c, host, span, plugin.SpanOptions{}); err != nil {
		return err
	}
	sort.Slice(span.SecurityGroups, func(i, j int) bool {
		return attr.Str(span.SecurityGroups[i], "id") < attr.Str(span.SecurityGroups[j], "id")
	})
	return nil
}

// fillMembers fills in the members of the groups in span.GroupMembers.
func (s *Service) fillMembers(c *plugin.Ctx, _ string, span *hostapi.Span, _ plugin.SpanOptions) error {
	for _, gid := range slices.Sorted(maps.Keys(span.GroupMembers)) {
		m, err := s.cache.members(c, gid)
		if err != nil {
			return err
		}
		span.GroupMembers[gid] = m.addrs
		if span.Members == nil {
			span.Members = map[string]map[string]string{}
		}
		span.Members[gid] = m.keys
	}
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
