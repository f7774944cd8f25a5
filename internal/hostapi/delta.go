package hostapi

import (
	"reflect"
	"slices"
	"sort"
	"sync"

	"neutrino/internal/attr"
)

// Delta turns a host's span at one revision into its span at a later one:
// the objects of the span that were added, changed or removed between, and
// nothing else. The server sends it in answer to a host's watch, so that
// a change costs each host what it changes there, not a new copy of its
// whole state.
type Delta struct {
	From     int64 `json:"from"`     // the revision of the span it applies to
	Revision int64 `json:"revision"` // the revision of the span it makes
	// Put are objects added or changed and Remove the ids of those
	// removed, by collection: the Span's keys ("ports", "networks", ...).
	Put    map[string][]Object `json:"put,omitempty"`
	Remove map[string][]string `json:"remove,omitempty"`
	// Peers added or changed, and those gone (port and MAC only).
	Peers      []Peer                `json:"peers,omitempty"`
	PeersGone  []Peer                `json:"peers_gone,omitempty"`
	Members    map[string]*ListDelta `json:"security_group_members,omitempty"`
	GroupsGone []string              `json:"security_group_members_gone,omitempty"`
	DHCP       *ListDelta            `json:"dhcp_networks,omitempty"`
}

// ListDelta is the change of a sorted list of strings (a multiset): what
// to add and what to take out.
type ListDelta struct {
	Add    []string `json:"add,omitempty"`
	Remove []string `json:"remove,omitempty"`
}

// collections are the span's lists of objects keyed by id.
var collections = []struct {
	key string
	at  func(*Span) *[]Object
}{
	{"ports", func(s *Span) *[]Object { return &s.Ports }},
	{"networks", func(s *Span) *[]Object { return &s.Networks }},
	{"subnets", func(s *Span) *[]Object { return &s.Subnets }},
	{"security_groups", func(s *Span) *[]Object { return &s.SecurityGroups }},
	{"dhcp_ports", func(s *Span) *[]Object { return &s.DHCPPorts }},
	{"routers", func(s *Span) *[]Object { return &s.Routers }},
	{"floatingips", func(s *Span) *[]Object { return &s.FloatingIPs }},
	{"metering_labels", func(s *Span) *[]Object { return &s.MeteringLabels }},
	{"dvr_macs", func(s *Span) *[]Object { return &s.DVRMACs }},
	{"loadbalancers", func(s *Span) *[]Object { return &s.LoadBalancers }},
}

// Empty reports whether the delta changes nothing but the revision.
func (d *Delta) Empty() bool {
	return len(d.Put) == 0 && len(d.Remove) == 0 && len(d.Peers) == 0 && len(d.PeersGone) == 0 &&
		len(d.Members) == 0 && len(d.GroupsGone) == 0 && d.DHCP == nil
}

// Diff is the delta from span old to span new.
func Diff(old, new *Span) *Delta {
	d := &Delta{From: old.Revision, Revision: new.Revision}
	for _, c := range collections {
		put, gone := diffObjects(*c.at(old), *c.at(new))
		if len(put) > 0 {
			if d.Put == nil {
				d.Put = map[string][]Object{}
			}
			d.Put[c.key] = put
		}
		if len(gone) > 0 {
			if d.Remove == nil {
				d.Remove = map[string][]string{}
			}
			d.Remove[c.key] = gone
		}
	}
	if !samePeerSources(old, new) {
		diffPeers(d, old, new)
	}
	for gid, addrs := range new.GroupMembers {
		if ld := diffList(old.GroupMembers[gid], addrs); ld != nil {
			if d.Members == nil {
				d.Members = map[string]*ListDelta{}
			}
			d.Members[gid] = ld
		} else if _, ok := old.GroupMembers[gid]; !ok {
			// A group newly in the span with no member yet.
			if d.Members == nil {
				d.Members = map[string]*ListDelta{}
			}
			d.Members[gid] = &ListDelta{}
		}
	}
	for gid := range old.GroupMembers {
		if _, ok := new.GroupMembers[gid]; !ok {
			d.GroupsGone = append(d.GroupsGone, gid)
		}
	}
	sort.Strings(d.GroupsGone)
	d.DHCP = diffList(old.DHCPNetworks, new.DHCPNetworks)
	return d
}

// diffPeers puts in d the peers added, changed and gone from old to new.
func diffPeers(d *Delta, old, new *Span) {
	oldPeers := make(map[peerKey]*Peer, len(old.Peers))
	for i := range old.Peers {
		oldPeers[keyOf(&old.Peers[i])] = &old.Peers[i]
	}
	for i := range new.Peers {
		p := &new.Peers[i]
		k := keyOf(p)
		if o, ok := oldPeers[k]; !ok || !samePeer(o, p) {
			d.Peers = append(d.Peers, *p)
		}
		delete(oldPeers, k)
	}
	for k := range oldPeers {
		d.PeersGone = append(d.PeersGone, Peer{PortID: k.port, MACAddress: k.mac})
	}
	sort.Slice(d.PeersGone, func(i, j int) bool { return keyOf(&d.PeersGone[i]).less(keyOf(&d.PeersGone[j])) })
}

// samePeerSources reports whether both spans drew their peers from the
// very same lists (shared, never modified): then their peers are the same.
func samePeerSources(old, new *Span) bool {
	if old.PeerSources == nil || new.PeerSources == nil || len(old.PeerSources) != len(new.PeerSources) {
		return false
	}
	for i, o := range old.PeerSources {
		n := new.PeerSources[i]
		if len(o) != len(n) || len(o) > 0 && &o[0] != &n[0] {
			return false
		}
	}
	return true
}

// Apply makes span st the span the delta leads to. st must be the span
// at d.From (the host's own copy: Apply changes it).
func (st *Span) Apply(d *Delta) {
	st.Revision = d.Revision
	for _, c := range collections {
		put, gone := d.Put[c.key], d.Remove[c.key]
		if len(put) == 0 && len(gone) == 0 {
			continue
		}
		l := c.at(st)
		byID := make(map[string]Object, len(*l)+len(put))
		for _, o := range *l {
			byID[attr.Str(o, "id")] = o
		}
		for _, id := range gone {
			delete(byID, id)
		}
		for _, o := range put {
			byID[attr.Str(o, "id")] = o
		}
		out := make([]Object, 0, len(byID))
		for _, o := range byID {
			out = append(out, o)
		}
		sort.Slice(out, func(i, j int) bool { return attr.Str(out[i], "id") < attr.Str(out[j], "id") })
		*l = out
	}
	if len(d.Peers) > 0 || len(d.PeersGone) > 0 {
		byKey := make(map[peerKey]Peer, len(st.Peers)+len(d.Peers))
		for _, p := range st.Peers {
			byKey[keyOf(&p)] = p
		}
		for _, p := range d.PeersGone {
			delete(byKey, keyOf(&p))
		}
		for _, p := range d.Peers {
			byKey[keyOf(&p)] = p
		}
		st.Peers = make([]Peer, 0, len(byKey))
		for _, p := range byKey {
			st.Peers = append(st.Peers, p)
		}
		sort.Slice(st.Peers, func(i, j int) bool { return keyOf(&st.Peers[i]).less(keyOf(&st.Peers[j])) })
	}
	if st.GroupMembers == nil {
		st.GroupMembers = map[string][]string{}
	}
	for _, gid := range d.GroupsGone {
		delete(st.GroupMembers, gid)
	}
	for gid, ld := range d.Members {
		st.GroupMembers[gid] = ld.apply(st.GroupMembers[gid])
	}
	if d.DHCP != nil {
		st.DHCPNetworks = d.DHCP.apply(st.DHCPNetworks)
	}
}

// diffObjects compares two lists of objects by id: an object the same in
// both (the same shared object, or equal) is neither put nor removed.
func diffObjects(old, new []Object) (put []Object, gone []string) {
	if len(old) == len(new) && (len(old) == 0 || &old[0] == &new[0]) {
		return nil, nil // the same list, shared
	}
	byID := make(map[string]Object, len(old))
	for _, o := range old {
		byID[attr.Str(o, "id")] = o
	}
	for _, o := range new {
		id := attr.Str(o, "id")
		was, ok := byID[id]
		if !ok || !sameObject(was, o) {
			put = append(put, o)
		}
		delete(byID, id)
	}
	for id := range byID {
		gone = append(gone, id)
	}
	sort.Strings(gone)
	return put, gone
}

// sameObject: the server's spans share the store's objects, so an
// unchanged object is usually the very same map.
func sameObject(a, b Object) bool {
	if reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer() {
		return true
	}
	return reflect.DeepEqual(a, b)
}

type peerKey struct{ port, mac string }

func keyOf(p *Peer) peerKey { return peerKey{p.PortID, p.MACAddress} }

func (k peerKey) less(o peerKey) bool { return k.port < o.port || k.port == o.port && k.mac < o.mac }

func samePeer(a, b *Peer) bool {
	return a.NetworkID == b.NetworkID && a.Host == b.Host && a.VTEP == b.VTEP && slices.Equal(a.IPs, b.IPs)
}

// diffList is the change from sorted list old to sorted list new (nil
// when they hold the same strings).
func diffList(old, new []string) *ListDelta {
	if len(old) == len(new) && (len(old) == 0 || &old[0] == &new[0]) {
		return nil // the same list, shared
	}
	if len(old) < 64 || len(new) < 64 {
		return diffSorted(old, new)
	}
	// Long lists are a group's members, the same lists for every host
	// using the group: their change is worked out once.
	k := listPair{&old[0], &new[0], len(old), len(new)}
	listDiffs.mu.Lock()
	d, ok := listDiffs.m[k]
	listDiffs.mu.Unlock()
	if ok {
		return d
	}
	d = diffSorted(old, new)
	listDiffs.mu.Lock()
	if len(listDiffs.m) >= 256 || listDiffs.m == nil {
		listDiffs.m = map[listPair]*ListDelta{}
	}
	listDiffs.m[k] = d
	listDiffs.mu.Unlock()
	return d
}

// listDiffs are the latest changes between long lists, by the lists
// (which are never modified once shared: see sameObject).
var listDiffs struct {
	mu sync.Mutex
	m  map[listPair]*ListDelta
}

type listPair struct {
	old, new       *string
	oldLen, newLen int
}

func diffSorted(old, new []string) *ListDelta {
	old, new = sorted(old), sorted(new)
	var d ListDelta
	i, j := 0, 0
	for i < len(old) || j < len(new) {
		switch {
		case j == len(new) || i < len(old) && old[i] < new[j]:
			d.Remove = append(d.Remove, old[i])
			i++
		case i == len(old) || new[j] < old[i]:
			d.Add = append(d.Add, new[j])
			j++
		default:
			i++
			j++
		}
	}
	if len(d.Add) == 0 && len(d.Remove) == 0 {
		return nil
	}
	return &d
}

// apply returns sorted list l with the delta's strings added and removed.
func (d *ListDelta) apply(l []string) []string {
	l = sorted(l)
	out := make([]string, 0, len(l)+len(d.Add))
	rm := sorted(d.Remove)
	i, j := 0, 0
	for _, s := range l {
		for j < len(rm) && rm[j] < s {
			j++
		}
		if j < len(rm) && rm[j] == s {
			j++ // one taken out for each removal
			continue
		}
		out = append(out, s)
	}
	add := sorted(d.Add)
	merged := make([]string, 0, len(out)+len(add))
	for j = 0; i < len(out) || j < len(add); {
		if j == len(add) || i < len(out) && out[i] <= add[j] {
			merged = append(merged, out[i])
			i++
		} else {
			merged = append(merged, add[j])
			j++
		}
	}
	return merged
}

// sorted returns l sorted (l itself when it is; a sorted copy if not).
func sorted(l []string) []string {
	if slices.IsSorted(l) {
		return l
	}
	return slices.Sorted(slices.Values(l))
}
