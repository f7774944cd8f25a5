package agent

import (
	"testing"

	"neutrino/internal/hostapi"
)

// TestInterest: a host lists its state again only for changes that can
// alter it: its ports, its networks' ports and subnets, its groups and the
// members of their remote groups, peers' tunnel endpoints; not heartbeats
// or other hosts' unrelated networks.
func TestInterest(t *testing.T) {
	st := &hostapi.Span{
		Ports:          []hostapi.Object{{"id": "p1", "network_id": "n1"}},
		Networks:       []hostapi.Object{{"id": "n1"}},
		SecurityGroups: []hostapi.Object{{"id": "g1"}},
		GroupMembers:   map[string][]string{"g2": {"10.0.0.5"}},
		MemberPorts:    []string{"p9"},
		Peers:          []hostapi.Peer{{NetworkID: "n1", PortID: "p2", Host: "compute-2", VTEP: "10.250.0.2"}},
	}
	core := map[string]bool{"port": true, "network": true, "subnet": true, "security_group": true, "agent": true}
	in := newInterest("compute-1", core, st)
	for _, c := range []struct {
		c    change
		want bool
	}{
		{change{Kind: "port", ID: "p1", Parent: "n1"}, true},
		{change{Kind: "port", ID: "p3", Parent: "n1", Object: map[string]any{"binding:host_id": "compute-3"}}, true},
		{change{Kind: "port", ID: "p4", Parent: "n9", Object: map[string]any{"binding:host_id": "compute-1"}}, true},
		{change{Kind: "port", ID: "p5", Parent: "n9", Object: map[string]any{"security_groups": []any{"g2"}}}, true},
		{change{Kind: "port", ID: "p9", Parent: "n9"}, true}, // a member left, or went
		{change{Kind: "port", ID: "p6", Parent: "n9", Object: map[string]any{"security_groups": []any{"g7"}}}, false},
		{change{Kind: "port", ID: "p7", Parent: "n9"}, false},
		{change{Kind: "network", ID: "n1"}, true},
		{change{Kind: "network", ID: "n9"}, false},
		{change{Kind: "subnet", ID: "s1", Parent: "n1"}, true},
		{change{Kind: "subnet", ID: "s9", Parent: "n9"}, false},
		{change{Kind: "security_group", ID: "g1"}, true},
		{change{Kind: "security_group", ID: "g2"}, true},
		{change{Kind: "security_group", ID: "g7"}, false},
		{change{Kind: "agent", ID: "a2", Object: map[string]any{"host": "compute-2", "configurations": map[string]any{"tunneling_ip": "10.250.0.2"}}}, false},
		{change{Kind: "agent", ID: "a2", Object: map[string]any{"host": "compute-2", "agent_type": hostapi.HostAgentType, "configurations": map[string]any{"tunneling_ip": "10.250.0.22"}}}, true},
		{change{Kind: "agent", ID: "a3", Object: map[string]any{"host": "compute-3"}}, false},
		// A DHCP or L3 agent's report carries no tunnel endpoint: not a
		// change of the peer's.
		{change{Kind: "agent", ID: "a4", Object: map[string]any{"host": "compute-2", "agent_type": "DHCP agent", "configurations": map[string]any{}}}, false},
		{change{Kind: "agent", ID: "a3"}, true},
		{change{Kind: "dhcp_binding", ID: "b1"}, false},
		{change{Kind: "quota", ID: "q1"}, false},
	} {
		if got := in.relevant(c.c); got != c.want {
			t.Errorf("%+v: relevant=%v, want %v", c.c, got, c.want)
		}
	}
	if !(*interest)(nil).relevant(change{Kind: "quota"}) {
		t.Error("before any listing every change must count")
	}
	withDHCP := map[string]bool{"dhcp_binding": true}
	for k := range core {
		withDHCP[k] = true
	}
	if !newInterest("network-1", withDHCP, st).relevant(change{Kind: "dhcp_binding"}) {
		t.Error("a DHCP host ignores scheduling changes")
	}
}
