package hostapi

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"reflect"
	"sort"
	"testing"
)

// randomSpan draws a span from a small universe, so that two draws share
// much and differ some.
func randomSpan(r *rand.Rand, rev int64) *Span {
	st := &Span{Revision: rev, GroupMembers: map[string][]string{}}
	objs := func(prefix string, n int) []Object {
		var out []Object
		for i := 0; i < n; i++ {
			if r.Intn(3) == 0 {
				continue
			}
			out = append(out, Object{"id": fmt.Sprintf("%s-%02d", prefix, i), "name": fmt.Sprint("v", r.Intn(2)),
				"fixed_ips": []any{map[string]any{"ip_address": fmt.Sprint("10.0.0.", r.Intn(3))}}})
		}
		return out
	}
	st.Ports, st.Networks, st.Subnets = objs("port", 12), objs("net", 4), objs("sub", 5)
	st.SecurityGroups, st.Routers, st.FloatingIPs = objs("sg", 3), objs("r", 2), objs("fip", 3)
	st.DHCPPorts, st.MeteringLabels = objs("dp", 4), objs("ml", 2)
	for g := 0; g < 3; g++ {
		if r.Intn(3) == 0 {
			continue
		}
		var addrs []string
		for i := 0; i < 8; i++ {
			for n := r.Intn(3); n > 0; n-- { // duplicates too
				addrs = append(addrs, fmt.Sprint("10.1.0.", i))
			}
		}
		sort.Strings(addrs)
		st.GroupMembers[fmt.Sprint("sg-", g)] = addrs
	}
	for i := 0; i < 10; i++ {
		if i < 4 && r.Intn(2) == 0 {
			st.DHCPNetworks = append(st.DHCPNetworks, fmt.Sprintf("net-%02d", i))
		}
	}
	for i := 0; i < 8; i++ {
		if r.Intn(2) == 0 {
			continue
		}
		p := Peer{NetworkID: "net-00", PortID: fmt.Sprintf("peer-%02d", i), MACAddress: "fa:16:3e:00:00:01",
			IPs: []string{fmt.Sprint("10.0.1.", r.Intn(2))}, Host: fmt.Sprint("h", r.Intn(2)), VTEP: "10.9.9.9"}
		st.Peers = append(st.Peers, p)
		if r.Intn(3) == 0 { // an address pair with a MAC of its own
			p.MACAddress, p.IPs = "fa:16:3e:00:00:02", []string{"10.0.1.9"}
			st.Peers = append(st.Peers, p)
		}
	}
	return st
}

// canonical is a span's JSON with lists in a fixed order and empty lists
// as absent ones: what an agent makes of it.
func canonical(t *testing.T, st *Span) string {
	var m map[string]any
	b, _ := json.Marshal(st)
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range m {
		l, ok := v.([]any)
		if v == nil {
			delete(m, k)
			continue
		}
		if !ok {
			if mm, ok := v.(map[string]any); ok && len(mm) == 0 {
				delete(m, k)
			}
			continue
		}
		if len(l) == 0 {
			delete(m, k)
			continue
		}
		sort.Slice(l, func(i, j int) bool { return fmt.Sprint(l[i]) < fmt.Sprint(l[j]) })
	}
	out, _ := json.Marshal(m)
	return string(out)
}

// viaJSON is what the other side of the wire gets.
func viaJSON[T any](t *testing.T, v *T) *T {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func TestDeltaTurnsOneSpanIntoTheNext(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 2000; i++ {
		old, new := randomSpan(r, int64(i)), randomSpan(r, int64(i+1))
		d := Diff(old, new)
		if d.From != old.Revision || d.Revision != new.Revision {
			t.Fatalf("delta revisions %d -> %d", d.From, d.Revision)
		}
		got := viaJSON(t, old) // the agent's copy
		got.Apply(viaJSON(t, d))
		if a, b := canonical(t, got), canonical(t, new); a != b {
			t.Fatalf("draw %d: applying the delta\n%s\ngave\n%s\nnot\n%s", i, mustJSON(d), a, b)
		}
		if same := Diff(new, viaJSON(t, new)); !same.Empty() {
			t.Fatalf("a span differs from its own copy: %s", mustJSON(same))
		}
	}
}

func TestDeltaCarriesOnlyWhatChanged(t *testing.T) {
	ports := []Object{{"id": "p1", "name": "a"}, {"id": "p2", "name": "b"}}
	members := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}
	old := &Span{Revision: 5, Ports: ports, GroupMembers: map[string][]string{"g": members}}
	// One new member of group g, elsewhere: the shared port objects are
	// unchanged, one address is added.
	new := &Span{Revision: 9, Ports: []Object{ports[0], ports[1]},
		GroupMembers: map[string][]string{"g": {"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}}}
	d := Diff(old, new)
	want := &Delta{From: 5, Revision: 9, Members: map[string]*ListDelta{"g": {Add: []string{"10.0.0.4"}}}}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("delta %s, want %s", mustJSON(d), mustJSON(want))
	}
	// A port renamed: only that port; a group gone: named.
	new2 := &Span{Revision: 10, Ports: []Object{ports[0], {"id": "p2", "name": "c"}}}
	d = Diff(new, new2)
	if len(d.Put["ports"]) != 1 || d.Put["ports"][0]["name"] != "c" || !reflect.DeepEqual(d.GroupsGone, []string{"g"}) ||
		d.Members != nil {
		t.Fatalf("delta %s", mustJSON(d))
	}
	if d := Diff(new2, new2); !d.Empty() {
		t.Fatalf("no change, delta %s", mustJSON(d))
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// Spans drawn from the very same peer lists have the same peers: Diff
// does not compare them; from other lists (even equal ones), it does.
func TestDiffSkipsPeersFromTheSameLists(t *testing.T) {
	netA := []Peer{{NetworkID: "a", PortID: "p1", MACAddress: "m1", Host: "h2"}}
	netB := []Peer{{NetworkID: "b", PortID: "p2", MACAddress: "m2", Host: "h3"}}
	old := &Span{Revision: 1, Peers: append(append([]Peer{}, netA...), netB...), PeerSources: [][]Peer{netA, netB}}
	same := &Span{Revision: 2, Peers: append(append([]Peer{}, netA...), netB...), PeerSources: [][]Peer{netA, netB}}
	if d := Diff(old, same); !d.Empty() {
		t.Fatalf("the same lists: %+v", d)
	}
	moved := append([]Peer{}, netB...)
	moved[0].VTEP = "10.0.0.9"
	next := &Span{Revision: 3, Peers: append(append([]Peer{}, netA...), moved...), PeerSources: [][]Peer{netA, moved}}
	if d := Diff(old, next); len(d.Peers) != 1 || d.Peers[0].VTEP != "10.0.0.9" {
		t.Fatalf("a new list for network b: %+v", d)
	}
	listed := &Span{Revision: 4, Peers: next.Peers} // the host's own copy: no sources
	if d := Diff(listed, next); !d.Empty() {
		t.Fatalf("equal peers: %+v", d)
	}
	if d := Diff(listed, old); len(d.Peers) != 1 {
		t.Fatalf("without sources the peers are compared: %+v", d)
	}
}
