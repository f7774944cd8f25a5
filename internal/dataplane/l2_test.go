package dataplane

import (
	"net"
	"os/exec"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"neutrino/internal/netlab"
	"neutrino/internal/testutil"
)

// lab wraps netlab for a test: skips without root, fails on errors, and
// removes everything at the end.
type lab struct {
	*netlab.Lab
	t *testing.T
}

func newLab(t *testing.T) *lab {
	t.Helper()
	testutil.RequireDataplane(t, "ip", "ping")
	l, err := netlab.New("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return &lab{Lab: l, t: t}
}

func (l *lab) run(n string, args ...string) string {
	l.t.Helper()
	out, err := l.Output(n, args...)
	if err != nil {
		l.t.Fatal(err)
	}
	return out
}

func (l *lab) try(n string, args ...string) error { return l.Run(n, args...) }

func (l *lab) host(n, vtep string) *Host {
	l.t.Helper()
	if err := l.Host(n, vtep); err != nil {
		l.t.Fatal(err)
	}
	h, err := OpenHost(l.Name(n), net.ParseIP(vtep))
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(h.Close)
	return h
}

func (l *lab) vm(n, hostNS, portID, mac, ipCIDR string, mtu int) {
	l.t.Helper()
	if err := l.VM(n, hostNS, TapName(portID), mac, mtu, ipCIDR); err != nil {
		l.t.Fatal(err)
	}
}

func TestVXLANBetweenHosts(t *testing.T) {
	l := newLab(t)
	h1 := l.host("h1", "10.250.0.1")
	h2 := l.host("h2", "10.250.0.2")
	net1 := Network{ID: "11111111-aaaa-4aaa-8aaa-000000000001", Type: "vxlan", SegmentationID: 1001, MTU: 1450}
	net2 := Network{ID: "22222222-aaaa-4aaa-8aaa-000000000002", Type: "vxlan", SegmentationID: 1002, MTU: 1450}
	ports := []struct {
		id, host, vm, mac, ip string
		n                     Network
	}{
		{"a1aaaaaa-0001", "h1", "vm1", "fa:16:3e:00:00:01", "10.0.0.11/24", net1},
		{"a2aaaaaa-0002", "h2", "vm2", "fa:16:3e:00:00:02", "10.0.0.12/24", net1},
		{"a3aaaaaa-0003", "h2", "vm3", "fa:16:3e:00:00:03", "10.0.0.13/24", net2}, // same subnet, other network
	}
	hosts := map[string]*Host{"h1": h1, "h2": h2}
	for _, p := range ports {
		l.vm(p.vm, p.host, p.id, p.mac, p.ip, 1450)
	}
	wire := func() {
		for _, p := range ports {
			h := hosts[p.host]
			if err := h.EnsureNetwork(p.n); err != nil {
				t.Fatal(err)
			}
			if err := h.EnsurePort(p.id, p.n); err != nil {
				t.Fatal(err)
			}
			if !h.PortWired(p.id, p.n) {
				t.Fatalf("port %s not wired", p.id)
			}
		}
		mac := func(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }
		ips := func(s ...string) (out []net.IP) {
			for _, a := range s {
				out = append(out, net.ParseIP(a))
			}
			return out
		}
		if err := h1.SetPeers(net1, []Peer{{mac("fa:16:3e:00:00:02"), ips("10.0.0.12", "2001:db8::12"), h2.VTEP}}); err != nil {
			t.Fatal(err)
		}
		if err := h2.SetPeers(net1, []Peer{{mac("fa:16:3e:00:00:01"), ips("10.0.0.11"), h1.VTEP}}); err != nil {
			t.Fatal(err)
		}
		if err := h2.SetPeers(net2, nil); err != nil {
			t.Fatal(err)
		}
	}
	wire()
	wire() // idempotent: a second pass changes nothing and breaks nothing
	l.run("vm1", "ping", "-c", "1", "-W", "3", "10.0.0.12")
	// Networks are isolated: vm3 has the same subnet on another network.
	if err := l.try("vm1", "ping", "-c", "1", "-W", "1", "10.0.0.13"); err == nil {
		t.Fatal("vm1 reached vm3 on another network")
	}
	// MTU 1450 end to end: 1422 bytes of ICMP payload fit with DF set.
	l.run("vm1", "ping", "-c", "1", "-W", "3", "-M", "do", "-s", "1422", "10.0.0.12")
	// ARP for a remote port is answered on h1 itself: with vm2 unplugged,
	// vm1 still learns its MAC.
	if _, err := exec.LookPath("busybox"); err == nil {
		l.run("vm2", "ip", "link", "set", "eth0", "down")
		out, err := l.Output("vm1", "busybox", "arping", "-c", "1", "-w", "2", "-I", "eth0", "10.0.0.12")
		if err != nil || !strings.Contains(strings.ToLower(out), "fa:16:3e:00:00:02") {
			t.Fatalf("no local ARP answer for a remote port: %v\n%s", err, out)
		}
		l.run("vm2", "ip", "link", "set", "eth0", "up")
	}
	// A peer that goes away loses its forwarding entries.
	if err := h1.SetPeers(net1, nil); err != nil {
		t.Fatal(err)
	}
	if out := l.run("h1", "bridge", "fdb", "show", "dev", "vxlan-1001"); strings.Contains(out, "10.250.0.2") {
		t.Fatalf("stale forwarding entries:\n%s", out)
	}
	if out := l.run("h1", "ip", "neigh", "show", "dev", "vxlan-1001", "nud", "permanent"); strings.TrimSpace(out) != "" {
		t.Fatalf("stale neighbour entries:\n%s", out)
	}
	if err := l.try("vm1", "ping", "-c", "1", "-W", "1", "10.0.0.12"); err == nil {
		t.Fatal("vm1 still reaches vm2 without forwarding entries")
	}
}

// TestSecurityGroups: ingress is dropped until a rule allows it, remote
// groups admit their members only, and spoofed sources are dropped.
func TestSecurityGroups(t *testing.T) {
	testutil.RequireDataplane(t, "nft")
	l := newLab(t)
	h := l.host("h1", "10.250.0.1")
	n := Network{ID: "33333333-aaaa-4aaa-8aaa-000000000003", Type: "vxlan", SegmentationID: 2001, MTU: 1450}
	ports := []struct{ id, vm, mac, ip string }{
		{"b1aaaaaa-0001", "vm1", "fa:16:3e:00:01:01", "10.1.0.11"},
		{"b2aaaaaa-0002", "vm2", "fa:16:3e:00:01:02", "10.1.0.12"},
		{"b3aaaaaa-0003", "vm3", "fa:16:3e:00:01:03", "10.1.0.13"},
	}
	if err := h.EnsureNetwork(n); err != nil {
		t.Fatal(err)
	}
	ip6 := func(ip string) string { return "2001:db8:1::" + ip[strings.LastIndex(ip, ".")+1:] }
	for _, p := range ports {
		l.vm(p.vm, "h1", p.id, p.mac, p.ip+"/24", 1450)
		l.run(p.vm, "ip", "addr", "add", ip6(p.ip)+"/64", "dev", "eth0", "nodad")
		if err := h.EnsurePort(p.id, n); err != nil {
			t.Fatal(err)
		}
	}
	any4 := []FilterRule{{EtherType: "IPv4", PortMin: -1, PortMax: -1}}
	anyIP := append([]FilterRule{{EtherType: "IPv6", PortMin: -1, PortMax: -1}}, any4...)
	open := SecurityGroup{ID: "open", Ingress: anyIP, Egress: anyIP}
	// filterWith filters vm2 by vm2Rules, with the remote group "web"
	// holding vm1 and extra.
	filterWith := func(vm2Rules []FilterRule, extra ...string) {
		t.Helper()
		var pf []PortFilter
		for i, p := range ports {
			f := PortFilter{PortID: p.id, MAC: p.mac, Addrs: []string{p.ip, ip6(p.ip)}, Groups: []string{"open"}}
			if i == 1 {
				f.Groups = []string{"locked"}
			}
			pf = append(pf, f)
		}
		// vm1 is in group "web"; vm3 is not.
		locked := SecurityGroup{ID: "locked", Ingress: vm2Rules, Egress: anyIP}
		if err := h.SetFilters(pf, []SecurityGroup{open, locked}, map[string][]string{"web": append([]string{ports[0].ip, ip6(ports[0].ip)}, extra...)}); err != nil {
			t.Fatal(err)
		}
	}
	filter := func(vm2Rules []FilterRule) { t.Helper(); filterWith(vm2Rules) }
	ping := func(from, to string) bool { return l.try(from, "ping", "-c", "1", "-W", "1", to) == nil }
	filter(nil)
	if ping("vm1", ports[1].ip) {
		t.Fatal("vm2 reachable with no ingress rule")
	}
	fromWeb := []FilterRule{{EtherType: "IPv4", Protocol: "icmp", PortMin: -1, PortMax: -1, RemoteGroup: "web"},
		{EtherType: "IPv6", Protocol: "ipv6-icmp", PortMin: 128, PortMax: -1, RemoteGroup: "web"}}
	filter(fromWeb)
	for _, dst := range []string{ports[1].ip, ip6(ports[1].ip)} {
		if !ping("vm1", dst) {
			t.Fatalf("a member of the remote group cannot reach vm2 at %s", dst)
		}
		if ping("vm3", dst) {
			t.Fatalf("a non-member reached vm2 at %s through a remote-group rule", dst)
		}
	}
	// vm3 joins the group, with a prefix besides (membership alone
	// changes: written through netlink), then leaves it.
	members := func(extra ...string) {
		t.Helper()
		before, tables := nlGroupWrites.Load(), h.nftInet
		filterWith(fromWeb, extra...)
		if nlGroupWrites.Load() != before+1 {
			t.Fatal("a change of members only was not written through netlink")
		}
		// Applied without a rebuild, it left the tables and grants as a
		// rebuild from the same input makes them.
		in := h.filterIn
		if in == nil || h.nftInet != tables {
			t.Fatal("a change of members only rebuilt the filters")
		}
		fresh := inetState(in.ports, in.groups, in.members, in.marks, in.zones)
		if ch, ok := groupElemsOnly(h.nftInet, fresh); !ok || len(ch) > 0 {
			t.Fatalf("the members applied alone differ from a rebuild: %v (comparable %v)", ch, ok)
		}
		if !reflect.DeepEqual(h.grants, portGrants(in.ports, in.groups, in.members)) {
			t.Fatal("the ports' grants after a change of members alone differ from a rebuild's")
		}
	}
	members(ports[2].ip, ip6(ports[2].ip), "10.7.0.0/24", "2001:db8:7::/64", "10.1.0.12", "10.1.0.14", "10.7.1.0/24")
	for _, dst := range []string{ports[1].ip, ip6(ports[1].ip)} {
		if !ping("vm3", dst) {
			out, _ := l.Output("h1", "nft", "list", "table", "inet", "neutrino")
			t.Fatalf("vm3 joined the remote group but cannot reach vm2 at %s; rules:\n%s", dst, out)
		}
	}
	members("10.1.0.12", "10.1.0.14", "10.7.1.0/24") // vm3's address goes from between its neighbours
	if ping("vm3", ports[1].ip) || !ping("vm1", ports[1].ip) {
		t.Fatal("with vm3's address taken out from between adjacent members, vm3 still reaches vm2, or vm1 does not")
	}
	members()
	for _, dst := range []string{ports[1].ip, ip6(ports[1].ip)} {
		if ping("vm3", dst) {
			t.Fatalf("vm3 left the remote group but still reaches vm2 at %s", dst)
		}
		if !ping("vm1", dst) {
			t.Fatalf("vm1, still a member, cannot reach vm2 at %s", dst)
		}
	}
	// What netlink put in, nft takes out when rules change with it.
	members("10.7.0.0/24", "2001:db8:7::/64")
	// Replies come back (stateful) though vm1 has no rule for vm2.
	filter([]FilterRule{{EtherType: "IPv4", Protocol: "icmp", PortMin: 8, PortMax: 0, RemoteCIDR: "10.1.0.0/24"}})
	if out, _ := l.Output("h1", "nft", "list", "table", "inet", "neutrino"); strings.Contains(out, "10.7.0.0/24") || strings.Contains(out, "2001:db8:7::/64") {
		t.Fatalf("members written through netlink were left behind when nft changed the table:\n%s", out)
	}
	if !ping("vm3", ports[1].ip) {
		t.Fatal("icmp echo from the allowed prefix is dropped")
	}
	// Neighbour discovery: vm3 may advertise its own address, not vm2's.
	if !naReaches(t, l, "vm3", "vm1", ip6(ports[2].ip), ports[2].mac) {
		t.Fatal("a neighbour advertisement for the sender's own address was dropped")
	}
	if naReaches(t, l, "vm3", "vm1", ip6(ports[1].ip), ports[2].mac) {
		t.Fatal("a neighbour advertisement for another port's address got through")
	}
	// Spoofing: vm3 takes another source address and is dropped.
	l.run("vm3", "ip", "addr", "add", "10.1.0.99/24", "dev", "eth0")
	if l.try("vm3", "ping", "-c", "1", "-W", "1", "-I", "10.1.0.99", ports[1].ip) == nil {
		t.Fatal("a spoofed source address got through")
	}
	// Egress: vm1 may only talk to 10.1.0.13 (vm3).
	var pf []PortFilter
	for _, p := range ports {
		f := PortFilter{PortID: p.id, MAC: p.mac, Addrs: []string{p.ip}, Groups: []string{"open"}}
		if p.vm == "vm1" {
			f.Groups = []string{"to-vm3", "to-vm3"}
		}
		pf = append(pf, f)
	}
	toVM3 := SecurityGroup{ID: "to-vm3", Ingress: any4, Egress: []FilterRule{{EtherType: "IPv4", PortMin: -1, PortMax: -1, RemoteCIDR: "10.1.0.13/32"}}}
	if err := h.SetFilters(pf, []SecurityGroup{open, toVM3}, nil); err != nil {
		t.Fatal(err)
	}
	if toVM3, toVM2 := ping("vm1", ports[2].ip), ping("vm1", ports[1].ip); !toVM3 || toVM2 {
		out, _ := l.Output("h1", "nft", "list", "ruleset")
		t.Fatalf("vm1's egress rule does not restrict it to vm3 (reaches vm3: %v, vm2: %v); rules:\n%s", toVM3, toVM2, out)
	}
	// A VM may not act as a DHCP server or a router: its DHCP answers and
	// router advertisements are dropped (and pass once nothing filters it).
	if udpReaches(t, l, "vm3", "vm1", ports[0].ip, 67, 68) {
		t.Fatal("a DHCP answer from a VM got through")
	}
	if raReaches(t, l, "vm3", "vm1") {
		t.Fatal("a router advertisement from a VM got through")
	}
	// Port security off: no filter for vm2 at all.
	if err := h.SetFilters(nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if !ping("vm3", ports[1].ip) {
		t.Fatal("traffic dropped with no filters")
	}
	if !udpReaches(t, l, "vm3", "vm1", ports[0].ip, 67, 68) || !raReaches(t, l, "vm3", "vm1") {
		t.Fatal("with no filters, a DHCP answer or a router advertisement is lost: the checks above prove nothing")
	}
}

// udpReaches sends, from VM from's port sport, a datagram to toIP:dport
// and reports whether VM to receives it.
func udpReaches(t *testing.T, l *lab, from, to, toIP string, sport, dport int) bool {
	t.Helper()
	var rx, tx *net.UDPConn
	var err error
	inNS(t, l, to, func() { rx, err = net.ListenUDP("udp4", &net.UDPAddr{Port: dport}) })
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	inNS(t, l, from, func() { tx, err = net.ListenUDP("udp4", &net.UDPAddr{Port: sport}) })
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	for i := 0; i < 3; i++ {
		tx.WriteToUDP([]byte("offer"), &net.UDPAddr{IP: net.ParseIP(toIP), Port: dport})
	}
	rx.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 64)
	n, _, err := rx.ReadFromUDP(buf)
	return err == nil && string(buf[:n]) == "offer"
}

// raReaches sends, from VM from, a router advertisement to all nodes and
// reports whether VM to sees it.
func raReaches(t *testing.T, l *lab, from, to string) bool {
	t.Helper()
	msg, _ := (&icmp.Message{Type: ipv6.ICMPTypeRouterAdvertisement, Body: &icmp.RawBody{Data: make([]byte, 12)}}).Marshal(nil)
	return icmp6Reaches(t, l, from, to, msg, func(m *icmp.Message) bool { return m.Type == ipv6.ICMPTypeRouterAdvertisement })
}

// icmp6Reaches sends msg from VM from to all nodes on its eth0 (hop limit
// 255, as neighbour discovery wants) and reports whether VM to receives a
// message that match accepts.
func icmp6Reaches(t *testing.T, l *lab, from, to string, msg []byte, match func(*icmp.Message) bool) bool {
	t.Helper()
	var rx, tx *icmp.PacketConn
	var err error
	inNS(t, l, to, func() { rx, err = icmp.ListenPacket("ip6:ipv6-icmp", "::") })
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	var ifIndex int
	inNS(t, l, from, func() {
		tx, err = icmp.ListenPacket("ip6:ipv6-icmp", "::")
		if ifi, e := net.InterfaceByName("eth0"); e == nil {
			ifIndex = ifi.Index
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	pc := tx.IPv6PacketConn()
	pc.SetMulticastHopLimit(255)
	for i := 0; i < 3; i++ {
		if _, err := pc.WriteTo(msg, &ipv6.ControlMessage{HopLimit: 255, IfIndex: ifIndex}, &net.IPAddr{IP: net.ParseIP("ff02::1")}); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 1500)
	rx.SetReadDeadline(time.Now().Add(time.Second))
	for {
		n, _, err := rx.ReadFrom(buf)
		if err != nil {
			return false
		}
		if m, err := icmp.ParseMessage(58, buf[:n]); err == nil && match(m) {
			return true
		}
	}
}

// TestPhysicalNetworks: flat and VLAN networks share the hosts' physical
// interfaces; each VLAN reaches only itself across hosts, tagged by tc
// programs, and the flat network only untagged frames.
func TestPhysicalNetworks(t *testing.T) {
	l := newLab(t)
	var hosts []*Host
	for i, n := range []string{"h1", "h2"} {
		h := l.host(n, "10.250.0."+string(rune('1'+i)))
		if err := l.Physical(n, "phy1"); err != nil {
			t.Fatal(err)
		}
		h.Physnets = map[string]string{"physnet1": "phy1"}
		hosts = append(hosts, h)
	}
	flat := Network{ID: "44444444-aaaa-4aaa-8aaa-000000000004", Type: "flat", PhysicalNetwork: "physnet1", MTU: 1500}
	v100 := Network{ID: "66666666-aaaa-4aaa-8aaa-000000000006", Type: "vlan", SegmentationID: 100, PhysicalNetwork: "physnet1", MTU: 1500}
	v200 := Network{ID: "77777777-aaaa-4aaa-8aaa-000000000007", Type: "vlan", SegmentationID: 200, PhysicalNetwork: "physnet1", MTU: 1500}
	// The same subnet on all three networks: only the segment separates them.
	ports := []struct {
		id, vm, ip string
		host       int
		n          Network
	}{
		{"c1aaaaaa-0001", "vm1", "10.4.0.11/24", 0, flat},
		{"c2aaaaaa-0002", "vm2", "10.4.0.12/24", 1, flat},
		{"d1aaaaaa-0001", "vm3", "10.4.0.21/24", 0, v100},
		{"d2aaaaaa-0002", "vm4", "10.4.0.22/24", 1, v100},
		{"e1aaaaaa-0001", "vm5", "10.4.0.31/24", 1, v200},
	}
	for i, p := range ports {
		h := hosts[p.host]
		l.vm(p.vm, "h"+string(rune('1'+p.host)), p.id, "fa:16:3e:00:04:0"+string(rune('1'+i)), p.ip, 1500)
		for range 2 { // idempotent
			if err := h.EnsureNetwork(p.n); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.EnsurePort(p.id, p.n); err != nil {
			t.Fatal(err)
		}
	}
	l.run("vm1", "ping", "-c", "1", "-W", "3", "10.4.0.12")
	l.run("vm3", "ping", "-c", "1", "-W", "3", "10.4.0.22")
	for _, c := range [][2]string{{"vm1", "10.4.0.22"}, {"vm3", "10.4.0.12"}, {"vm3", "10.4.0.31"}, {"vm4", "10.4.0.31"}, {"vm2", "10.4.0.31"}} {
		if l.try(c[0], "ping", "-c", "1", "-W", "1", c[1]) == nil {
			t.Errorf("%s reached %s on another segment", c[0], c[1])
		}
	}
	// VLAN hopping: vm1 (flat) tags its own frames with VLAN 100 (a tc
	// program on its eth0 pushing the tag, as an 8021q device in the VM
	// would) and must not reach VLAN 100's vm4.
	vm1, err := OpenHost(l.Name("vm1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer vm1.Close()
	eth0, err := vm1.nl.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := vm1.nl.QdiscReplace(&netlink.GenericQdisc{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: eth0.Attrs().Index,
		Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}, QdiscType: "clsact"}); err != nil {
		t.Fatal(err)
	}
	push, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "GPL", Instructions: ingressProgram(v100)})
	if err != nil {
		t.Fatal(err)
	}
	defer push.Close()
	if err := vm1.nl.FilterReplace(&netlink.BpfFilter{FilterAttrs: netlink.FilterAttrs{LinkIndex: eth0.Attrs().Index,
		Parent: netlink.HANDLE_MIN_EGRESS, Handle: 1, Protocol: unix.ETH_P_ALL, Priority: 1}, Fd: push.FD(), Name: "hop", DirectAction: true}); err != nil {
		t.Fatal(err)
	}
	l.try("vm4", "ip", "neigh", "flush", "all")
	l.try("vm1", "ping", "-c", "1", "-W", "1", "10.4.0.22")
	// vm4 would have learnt vm1 from its ARP request.
	if out, _ := l.Output("vm4", "ip", "neigh", "show", "10.4.0.11"); strings.Contains(out, "lladdr") {
		t.Errorf("a frame tagged by a VM on the flat network reached VLAN 100: %s", out)
	}
	l.run("vm1", "tc", "qdisc", "del", "dev", "eth0", "clsact")
	// A second VLAN port on h1 joins VLAN 200 there.
	l.vm("vm6", "h1", "e2aaaaaa-0002", "fa:16:3e:00:04:09", "10.4.0.32/24", 1500)
	if err := hosts[0].EnsureNetwork(v200); err != nil {
		t.Fatal(err)
	}
	if err := hosts[0].EnsurePort("e2aaaaaa-0002", v200); err != nil {
		t.Fatal(err)
	}
	l.run("vm6", "ping", "-c", "1", "-W", "3", "10.4.0.31")
	// Pruning VLAN 100 on h1 leaves the flat network and VLAN 200 working.
	if err := hosts[0].Prune([]Network{flat, v200}); err != nil {
		t.Fatal(err)
	}
	l.run("vm1", "ping", "-c", "1", "-W", "3", "10.4.0.12")
	l.run("vm6", "ping", "-c", "1", "-W", "3", "10.4.0.31")
	if l.try("vm4", "ping", "-c", "1", "-W", "1", "10.4.0.21") == nil {
		t.Error("VLAN 100 still reaches h1 after it was pruned there")
	}
	missing := Network{ID: "55555555-aaaa-4aaa-8aaa-000000000005", Type: "flat", PhysicalNetwork: "physnet9", MTU: 1500}
	if err := hosts[0].EnsureNetwork(missing); err == nil {
		t.Fatal("a flat network on an unmapped physical network was wired")
	}
}

// inNS runs fn on a thread inside the lab namespace n.
func inNS(t *testing.T, l *lab, n string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(l.Name(n))
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		t.Fatal(err)
	}
	defer netns.Set(orig)
	fn()
}

// naReaches sends, from VM from, an unsolicited neighbour advertisement
// for target with the given MAC to all nodes, and reports whether VM to
// sees it.
func naReaches(t *testing.T, l *lab, from, to, target, mac string) bool {
	t.Helper()
	hw, _ := net.ParseMAC(mac)
	body := append([]byte{0x20, 0, 0, 0}, net.ParseIP(target).To16()...) // override flag
	body = append(body, 2, 1)                                            // target link-layer address option
	body = append(body, hw...)
	msg, _ := (&icmp.Message{Type: ipv6.ICMPTypeNeighborAdvertisement, Body: &icmp.RawBody{Data: body}}).Marshal(nil)
	return icmp6Reaches(t, l, from, to, msg, func(m *icmp.Message) bool {
		b, ok := m.Body.(*icmp.RawBody)
		return m.Type == ipv6.ICMPTypeNeighborAdvertisement && ok && len(b.Data) >= 20 && net.IP(b.Data[4:20]).Equal(net.ParseIP(target))
	})
}

// TestConntrackZonesAndRevocation: two networks on one host with the same
// addresses keep their flows apart (each its own conntrack zone): a ping
// that network A's rules allow does not open the same 5-tuple on network B,
// whose rules forbid it. And a flow stops as soon as the rule that allowed
// it goes, established or not.
func TestConntrackZonesAndRevocation(t *testing.T) {
	testutil.RequireDataplane(t, "nft", "ping")
	l := newLab(t)
	h := l.host("h1", "10.250.0.1")
	nA := Network{ID: "88888888-aaaa-4aaa-8aaa-00000000000a", Type: "vxlan", SegmentationID: 3001, MTU: 1450}
	nB := Network{ID: "99999999-aaaa-4aaa-8aaa-00000000000b", Type: "vxlan", SegmentationID: 3002, MTU: 1450}
	ports := []struct {
		id, vm, mac, ip string
		n               Network
	}{
		{"f1aaaaaa-0001", "a1", "fa:16:3e:00:0a:01", "10.5.0.11", nA},
		{"f2aaaaaa-0002", "a2", "fa:16:3e:00:0a:02", "10.5.0.12", nA},
		{"f3aaaaaa-0003", "b1", "fa:16:3e:00:0b:01", "10.5.0.11", nB},
		{"f4aaaaaa-0004", "b2", "fa:16:3e:00:0b:02", "10.5.0.12", nB},
	}
	for _, p := range ports {
		if err := h.EnsureNetwork(p.n); err != nil {
			t.Fatal(err)
		}
		l.vm(p.vm, "h1", p.id, p.mac, p.ip+"/24", 1450)
		if err := h.EnsurePort(p.id, p.n); err != nil {
			t.Fatal(err)
		}
	}
	any4 := []FilterRule{{EtherType: "IPv4", PortMin: -1, PortMax: -1}}
	icmp := []FilterRule{{EtherType: "IPv4", Protocol: "icmp", PortMin: -1, PortMax: -1}}
	filterWith := func(openIngress []FilterRule, members map[string][]string) {
		t.Helper()
		groups := []SecurityGroup{{ID: "client", Egress: any4}, {ID: "open", Ingress: openIngress, Egress: any4}, {ID: "locked", Egress: any4}}
		var pf []PortFilter
		for _, p := range ports {
			g := map[string]string{"a1": "client", "b1": "client", "a2": "open", "b2": "locked"}[p.vm]
			pf = append(pf, PortFilter{PortID: p.id, Network: p.n.ID, MAC: p.mac, Addrs: []string{p.ip}, Groups: []string{g}})
		}
		if err := h.SetFilters(pf, groups, members); err != nil {
			t.Fatal(err)
		}
	}
	filter := func(openIngress []FilterRule) { t.Helper(); filterWith(openIngress, nil) }
	// The same ICMP identifier from both networks: the same 5-tuple.
	ping := func(from string, id string) bool {
		return l.try(from, "ping", "-e", id, "-c", "1", "-W", "1", "10.5.0.12") == nil
	}
	filter(icmp)
	if !ping("a1", "4242") {
		t.Fatal("network A's rule does not admit its ping")
	}
	if ping("b1", "4242") {
		t.Fatal("network B's ping rode network A's flow: networks share conntrack state")
	}
	// Revocation: the flow a1 -> a2 stops with the rule that allowed it.
	if !ping("a1", "4343") {
		t.Fatal("a1 cannot reach a2")
	}
	filter(nil)
	if ping("a1", "4343") {
		t.Fatal("an established flow outlived the rule that allowed it")
	}
	filter(icmp)
	if !ping("a1", "4343") {
		t.Fatal("the flow does not start again once its rule is back")
	}
	// A remote group's member: a1 joins (members alone change: applied
	// without a rebuild), its flow is established, and stops when a1
	// leaves the group.
	fromGroup := []FilterRule{{EtherType: "IPv4", Protocol: "icmp", PortMin: -1, PortMax: -1, RemoteGroup: "friends"}}
	filterWith(fromGroup, map[string][]string{"friends": {}})
	if ping("a1", "4444") {
		t.Fatal("a1 reached a2 before joining the remote group")
	}
	tables := h.nftInet
	filterWith(fromGroup, map[string][]string{"friends": {"10.5.0.11"}})
	if !ping("a1", "4444") {
		t.Fatal("a1 joined the remote group but cannot reach a2")
	}
	filterWith(fromGroup, map[string][]string{"friends": {"10.5.0.99"}})
	if ping("a1", "4444") {
		t.Fatal("an established flow outlived its source's membership of the remote group")
	}
	if h.nftInet != tables {
		t.Fatal("members joining and leaving rebuilt the filters")
	}
}
