package hostapi

import (
	"testing"
)

// TestInterest: a host lists its state again only for changes that can
// alter it: its ports, its networks' ports and subnets, its groups and the
// members of their remote groups, peers' tunnel endpoints; not heartbeats
// or other hosts' unrelated networks.
func TestInterest(t *testing.T) {
	st := &Span{
		Ports:          []Object{{"id": "p1", "network_id": "n1"}},
		Networks:       []Object{{"id": "n1"}},
		SecurityGroups: []Object{{"id": "g1"}},
		GroupMembers:   map[string][]string{"g2": {"10.0.0.5"}},
		Members: map[string]map[string]string{"g2": {"p9": MemberKey(Object{"fixed_ips": []any{map[string]any{"ip_address": "10.0.0.5"}},
			"security_groups": []any{"g2"}})}},
		Peers: []Peer{{NetworkID: "n1", PortID: "p2", Host: "compute-2", VTEP: "10.250.0.2"}},
	}
	core := []string{"port", "network", "subnet", "security_group", "agent"}
	in := NewInterest("compute-1", core, st)
	for _, c := range []struct {
		c    Change
		want bool
	}{
		{Change{Kind: "port", ID: "p1", Parent: "n1"}, true},
		{Change{Kind: "port", ID: "p3", Parent: "n1", Object: map[string]any{"binding:host_id": "compute-3"}}, true},
		{Change{Kind: "port", ID: "p4", Parent: "n9", Object: map[string]any{"binding:host_id": "compute-1"}}, true},
		{Change{Kind: "port", ID: "p5", Parent: "n9", Object: map[string]any{"security_groups": []any{"g2"}}}, true},
		{Change{Kind: "port", ID: "p9", Parent: "n9"}, true}, // a member went
		// A member elsewhere changing what the span holds of it (its
		// addresses or groups), or not (its status).
		{Change{Kind: "port", ID: "p9", Parent: "n9", Object: map[string]any{"security_groups": []any{"g7"},
			"fixed_ips": []any{map[string]any{"ip_address": "10.0.0.5"}}}}, true},
		{Change{Kind: "port", ID: "p9", Parent: "n9", Object: map[string]any{"security_groups": []any{"g2"},
			"fixed_ips": []any{map[string]any{"ip_address": "10.0.0.6"}}}}, true},
		{Change{Kind: "port", ID: "p9", Parent: "n9", Object: map[string]any{"security_groups": []any{"g2"}, "status": "ACTIVE",
			"fixed_ips": []any{map[string]any{"ip_address": "10.0.0.5"}}}}, false},
		// A port joining a group used here that no rule here admits.
		{Change{Kind: "port", ID: "p8", Parent: "n9", Object: map[string]any{"security_groups": []any{"g1"}}}, false},
		{Change{Kind: "port", ID: "p6", Parent: "n9", Object: map[string]any{"security_groups": []any{"g7"}}}, false},
		{Change{Kind: "port", ID: "p7", Parent: "n9"}, false},
		{Change{Kind: "network", ID: "n1"}, true},
		{Change{Kind: "network", ID: "n9"}, false},
		{Change{Kind: "subnet", ID: "s1", Parent: "n1"}, true},
		{Change{Kind: "subnet", ID: "s9", Parent: "n9"}, false},
		{Change{Kind: "security_group", ID: "g1"}, true},
		{Change{Kind: "security_group", ID: "g2"}, true},
		{Change{Kind: "security_group", ID: "g7"}, false},
		{Change{Kind: "agent", ID: "a2", Object: map[string]any{"host": "compute-2", "configurations": map[string]any{"tunneling_ip": "10.250.0.2"}}}, false},
		{Change{Kind: "agent", ID: "a2", Object: map[string]any{"host": "compute-2", "agent_type": HostAgentType, "configurations": map[string]any{"tunneling_ip": "10.250.0.22"}}}, true},
		{Change{Kind: "agent", ID: "a3", Object: map[string]any{"host": "compute-3"}}, false},
		// A DHCP or L3 agent's report carries no tunnel endpoint: not a
		// change of the peer's.
		{Change{Kind: "agent", ID: "a4", Object: map[string]any{"host": "compute-2", "agent_type": "DHCP agent", "configurations": map[string]any{}}}, false},
		{Change{Kind: "agent", ID: "a3"}, true},
		{Change{Kind: "dhcp_binding", ID: "b1"}, false},
		{Change{Kind: "quota", ID: "q1"}, false},
	} {
		if got := in.Relevant(c.c); got != c.want {
			t.Errorf("%+v: relevant=%v, want %v", c.c, got, c.want)
		}
		// The dispatcher finds every watch a change is relevant to by
		// the change's keys, or its groups' member maps.
		if c.want && !foundByKeys(in, c.c) {
			t.Errorf("%+v: relevant, but not found by its keys %v among %v", c.c, ChangeKeys(c.c), in.Keys())
		}
	}
	dhcp := NewInterest("network-1", append(core, "dhcp_binding"), st)
	if !foundByKeys(dhcp, Change{Kind: "dhcp_binding", ID: "b1"}) || !foundByKeys(EveryChange(core), Change{Kind: "port", ID: "p7"}) {
		t.Error("a kind judged whole, or an unknown span, is not found by the keys")
	}
	if !(*Interest)(nil).Relevant(Change{Kind: "quota"}) {
		t.Error("before any listing every change must count")
	}
	if !NewInterest("network-1", append(core, "dhcp_binding"), st).Relevant(Change{Kind: "dhcp_binding"}) {
		t.Error("a DHCP host ignores scheduling changes")
	}
}

// foundByKeys is how the hub finds the watches a change may concern.
func foundByKeys(in *Interest, c Change) bool {
	keys := ChangeKeys(c)
	if keys == nil {
		return true // every watch
	}
	has := map[string]bool{}
	for _, k := range in.Keys() {
		has[k] = true
	}
	for _, k := range keys {
		if has[k] {
			return true
		}
	}
	for g, m := range in.MemberMaps() {
		if _, ok := m[c.ID]; ok && c.Kind == "port" && has["remote:"+g] {
			return true
		}
	}
	return false
}
