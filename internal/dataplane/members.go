package dataplane

import (
	"maps"
	"reflect"
	"slices"
	"sort"
)

// filterInput is what SetFilters last applied, kept to tell the commonest
// change (remote groups' members alone: a port joining or leaving a group
// elsewhere) from any other, and apply it without rebuilding the tables.
type filterInput struct {
	ports  []PortFilter
	groups []SecurityGroup
	marks  map[string]uint32
	zones  map[string]uint16
	// refs are the remote groups the ports' rules name, members the
	// members applied of those that had some (nil list: none known),
	// portRefs the remote groups with members each port's rules name.
	refs     []string
	members  map[string][]string
	portRefs map[string][]string
}

// newFilterInput records what the tables were just built from.
func newFilterInput(ports []PortFilter, groups []SecurityGroup, members map[string][]string, marks map[string]uint32, zones map[string]uint16) *filterInput {
	in := &filterInput{ports: slices.Clone(ports), groups: slices.Clone(groups), marks: marks, zones: zones,
		members: map[string][]string{}, portRefs: map[string][]string{}}
	byID := map[string]SecurityGroup{}
	for _, g := range groups {
		byID[g.ID] = g
	}
	refs := map[string]bool{}
	for _, p := range ports {
		mine := map[string]bool{}
		for _, gid := range p.Groups {
			for _, r := range slices.Concat(byID[gid].Ingress, byID[gid].Egress) {
				if r.RemoteGroup == "" {
					continue
				}
				refs[r.RemoteGroup] = true
				if _, ok := members[r.RemoteGroup]; ok {
					mine[r.RemoteGroup] = true
				}
			}
		}
		in.portRefs[p.PortID] = sortedKeys(mine)
	}
	in.refs = sortedKeys(refs)
	for _, gid := range in.refs {
		if m, ok := members[gid]; ok {
			in.members[gid] = slices.Clone(m)
		}
	}
	return in
}

// setMembersOnly applies a change of remote groups' members alone: the
// sets' elements through netlink, the flows of members gone revoked. It
// returns false (having changed nothing) for any other change, or when the
// netlink write fails: the caller then rebuilds and diffs the tables.
func (h *Host) setMembersOnly(ports []PortFilter, groups []SecurityGroup, members map[string][]string, marks map[string]uint32, zones map[string]uint16) (bool, error) {
	last := h.filterIn
	if last == nil || h.nftInet == nil || h.grants == nil || !maps.Equal(marks, last.marks) || !maps.Equal(zones, last.zones) ||
		!reflect.DeepEqual(ports, last.ports) || !reflect.DeepEqual(groups, last.groups) {
		return false, nil
	}
	changes := map[string]elemChange{}
	added := map[string][]string{}
	next := maps.Clone(last.members)
	removed := false
	for _, gid := range last.refs {
		now, ok := members[gid]
		before, had := last.members[gid]
		if ok != had {
			return false, nil // a group gains or loses its rules
		}
		if !ok || slices.Equal(now, before) {
			continue
		}
		next[gid] = slices.Clone(now)
		b4, b6 := split(before)
		n4, n6 := split(now)
		for _, f := range []struct {
			fam         string
			before, now []string
		}{{"4", b4, n4}, {"6", b6, n6}} {
			ch := elemChange{add: minus(f.now, f.before), remove: minus(f.before, f.now)}
			if len(ch.add)+len(ch.remove) > 0 {
				changes[groupSet(gid, f.fam)] = ch
				removed = removed || len(ch.remove) > 0
				added[gid] = append(added[gid], ch.add...)
			}
		}
	}
	if len(changes) > 0 {
		if err := h.writeGroupElems(changes); err != nil {
			return false, nil
		}
		for name, ch := range changes {
			for _, e := range ch.remove {
				delete(h.nftInet.elems[name], e)
			}
			for _, e := range ch.add {
				h.nftInet.elem(name, []string{e})
			}
		}
	}
	last.members = next
	if removed {
		// What each port may reach is recomputed whole (rarely: members
		// leave less often than they join), and the flows lost revoked.
		return true, h.revoke(ports, portGrants(ports, groups, members), zones)
	}
	for port, gids := range last.portRefs {
		for _, gid := range gids {
			for _, a := range added[gid] {
				h.grants[port].members[a] = true
			}
		}
	}
	return true, nil
}

// minus is what a holds and b does not, sorted.
func minus(a, b []string) []string {
	in := make(map[string]bool, len(b))
	for _, s := range b {
		in[s] = true
	}
	var out []string
	for _, s := range a {
		if !in[s] {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}
