package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"neutrino/internal/dataplane"
	"neutrino/internal/netlab"
)

// Data-plane benchmarks (root): each runs its whole workload once per
// iteration and reports percentiles; run them with
//
//	go test -run '^$' -bench . -benchtime 1x ./internal/agent
//
// Results are recorded in docs/benchmarks.md.

// pinger sends ICMP echo requests from inside a VM's namespace.
type pinger struct {
	c  *icmp.PacketConn
	id int
}

func openPinger(ns string, id int) (*pinger, error) {
	c, err := dataplane.Open(ns, func() (*icmp.PacketConn, error) { return icmp.ListenPacket("ip4:icmp", "0.0.0.0") })
	if err != nil {
		return nil, err
	}
	return &pinger{c: c, id: id}, nil
}

func (p *pinger) Close() { p.c.Close() }

// until sends an echo request to dst every 2 ms until one is answered
// (true) or the deadline passes (false).
func (p *pinger) until(dst net.IP, deadline time.Time) bool {
	buf := make([]byte, 1500)
	for seq := 1; time.Now().Before(deadline); seq++ {
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: p.id & 0xffff, Seq: seq & 0xffff, Data: []byte("neutrino")}}
		b, _ := msg.Marshal(nil)
		if _, err := p.c.WriteTo(b, &net.IPAddr{IP: dst}); err != nil {
			time.Sleep(2 * time.Millisecond)
			continue
		}
		p.c.SetReadDeadline(time.Now().Add(2 * time.Millisecond))
		for {
			n, from, err := p.c.ReadFrom(buf)
			if err != nil {
				break
			}
			m, err := icmp.ParseMessage(1, buf[:n])
			if err != nil || m.Type != ipv4.ICMPTypeEchoReply || !from.(*net.IPAddr).IP.Equal(dst) {
				continue
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.ID == p.id&0xffff {
				return true
			}
		}
	}
	return false
}

// percentiles reports p50, p95 and max of ds in milliseconds.
func percentiles(b *testing.B, ds []time.Duration) {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	at := func(q float64) float64 {
		return float64(ds[min(len(ds)-1, int(q*float64(len(ds))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.95), "p95-ms")
	b.ReportMetric(float64(ds[len(ds)-1])/float64(time.Millisecond), "max-ms")
	b.ReportMetric(0, "ns/op")
}

// plugged makes a VM namespace whose eth0 has mac and ip/prefix, its other
// end a down veth named tmp in host: after the port exists, renaming that
// end to the port's tap is the hypervisor's plug.
func plugged(b *testing.B, lab *netlab.Lab, vm, host, tmp, mac, cidr string, mtu int) {
	b.Helper()
	if _, err := lab.NS(vm); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("ip", "link", "add", tmp, "netns", lab.Name(host), "type", "veth", "peer", "name", "eth0",
		"netns", lab.Name(vm)).CombinedOutput(); err != nil {
		b.Fatalf("%v %s", err, out)
	}
	if err := lab.Run(vm, "ip", "link", "set", "eth0", "address", mac, "mtu", fmt.Sprint(mtu), "up"); err != nil {
		b.Fatal(err)
	}
	if err := lab.Run(vm, "ip", "addr", "add", cidr, "dev", "eth0"); err != nil {
		b.Fatal(err)
	}
	fastARP(b, lab, vm)
}

// fastARP makes a VM retry address resolution every 10 ms rather than every
// second, so a request sent before its port is wired costs 10 ms, not 1 s,
// and the measurement shows when the data plane became ready.
func fastARP(b *testing.B, lab *netlab.Lab, vm string) {
	if err := lab.Run(vm, "sysctl", "-qw", "net.ipv4.neigh.eth0.retrans_time_ms=10"); err != nil {
		b.Fatal(err)
	}
}

func hostHandle(b *testing.B, lab *netlab.Lab, host string) *netlink.Handle {
	b.Helper()
	ns, err := netns.GetFromName(lab.Name(host))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(h.Close)
	return h
}

func plug(b *testing.B, h *netlink.Handle, tmp, portID string) {
	b.Helper()
	l, err := h.LinkByName(tmp)
	if err != nil {
		b.Fatal(err)
	}
	if err := h.LinkSetName(l, dataplane.TapName(portID)); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPortCreateToPing: 200 ports created one after another, bound
// to compute-1; for each, the time from the API request until the new VM
// gets an echo reply from a VM on compute-2 over VXLAN (the receiving
// host's security group admits it by remote group, so both agents must
// have acted).
func BenchmarkPortCreateToPing(b *testing.B) {
	const ports = 200
	url, lab := testCloud(b, "ping", "nft")
	startAgents(b, url, lab, []string{"compute-1", "compute-2"}, "")
	h1 := hostHandle(b, lab, "compute-1")
	for i := 0; i < b.N; i++ {
		n := post(b, url+"/v2.0/networks", "POST", map[string]any{"network": map[string]any{"name": "bench"}})["network"].(map[string]any)
		nid := n["id"].(string)
		post(b, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": nid, "ip_version": 4, "cidr": "10.20.0.0/16"}})
		target := net.ParseIP("10.20.0.10")
		tp := post(b, url+"/v2.0/ports", "POST", map[string]any{"port": map[string]any{"network_id": nid, "binding:host_id": "compute-2",
			"fixed_ips": []any{map[string]any{"ip_address": target.String()}}}})["port"].(map[string]any)
		if err := lab.VM(fmt.Sprintf("t%d", i), "compute-2", dataplane.TapName(tp["id"].(string)), tp["mac_address"].(string), 1450, "10.20.0.10/16"); err != nil {
			b.Fatal(err)
		}
		fastARP(b, lab, fmt.Sprintf("t%d", i))
		var took []time.Duration
		for k := 0; k < ports; k++ {
			vm, tmp := fmt.Sprintf("v%d-%d", i, k), fmt.Sprintf("tmp%d", k)
			ip := fmt.Sprintf("10.20.%d.%d", 1+k/200, 10+k%200)
			mac := fmt.Sprintf("fa:16:3e:20:%02x:%02x", k>>8, k&0xff)
			plugged(b, lab, vm, "compute-1", tmp, mac, ip+"/16", 1450)
			p, err := openPinger(lab.Name(vm), 1000+k)
			if err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			port := post(b, url+"/v2.0/ports", "POST", map[string]any{"port": map[string]any{"network_id": nid, "binding:host_id": "compute-1",
				"mac_address": mac, "fixed_ips": []any{map[string]any{"ip_address": ip}}}})["port"].(map[string]any)
			plug(b, h1, tmp, port["id"].(string))
			if !p.until(target, t0.Add(10*time.Second)) {
				b.Fatalf("port %d (%s) never reached the target", k, ip)
			}
			took = append(took, time.Since(t0))
			p.Close()
		}
		percentiles(b, took)
	}
}

// BenchmarkSecurityGroupRuleToEnforced: a VM whose group admits nothing;
// for each of 30 rounds, the time from creating an ICMP ingress rule until
// a ping from another host is answered (then the rule is deleted and the
// VM is blocked again before the next round; each round pings with a new
// ICMP id, so conntrack cannot carry an old flow over).
func BenchmarkSecurityGroupRuleToEnforced(b *testing.B) {
	const rounds = 30
	url, lab := testCloud(b, "ping", "nft")
	startAgents(b, url, lab, []string{"compute-1", "compute-2"}, "")
	for i := 0; i < b.N; i++ {
		n := post(b, url+"/v2.0/networks", "POST", map[string]any{"network": map[string]any{}})["network"].(map[string]any)
		nid := n["id"].(string)
		post(b, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": nid, "ip_version": 4, "cidr": "10.21.0.0/24"}})
		sg := post(b, url+"/v2.0/security-groups", "POST", map[string]any{"security_group": map[string]any{"name": "locked"}})["security_group"].(map[string]any)
		var ips []net.IP
		for k, h := range []string{"compute-1", "compute-2"} {
			body := map[string]any{"network_id": nid, "binding:host_id": h}
			if k == 1 {
				body["security_groups"] = []any{sg["id"]}
			}
			p := post(b, url+"/v2.0/ports", "POST", map[string]any{"port": body})["port"].(map[string]any)
			ip := p["fixed_ips"].([]any)[0].(map[string]any)["ip_address"].(string)
			if err := lab.VM(fmt.Sprintf("s%d-%d", i, k), h, dataplane.TapName(p["id"].(string)), p["mac_address"].(string), 1450, ip+"/24"); err != nil {
				b.Fatal(err)
			}
			ips = append(ips, net.ParseIP(ip))
		}
		src := lab.Name(fmt.Sprintf("s%d-0", i))
		// Both wired: the locked VM answers ARP (L2 works) but not ping.
		deadline := time.Now().Add(20 * time.Second)
		for {
			out, _ := exec.Command("ip", "netns", "exec", src, "sh", "-c",
				"ping -c1 -W1 "+ips[1].String()+" >/dev/null; ip neigh show "+ips[1].String()).CombinedOutput()
			if strings.Contains(string(out), "lladdr") {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("locked VM never reachable at L2: %s", out)
			}
		}
		var took []time.Duration
		for r := 0; r < rounds; r++ {
			p, err := openPinger(src, 2000+r)
			if err != nil {
				b.Fatal(err)
			}
			if p.until(ips[1], time.Now().Add(100*time.Millisecond)) {
				b.Fatalf("round %d: the locked VM answered before its rule", r)
			}
			t0 := time.Now()
			rule := post(b, url+"/v2.0/security-group-rules", "POST", map[string]any{"security_group_rule": map[string]any{
				"security_group_id": sg["id"], "direction": "ingress", "protocol": "icmp"}})["security_group_rule"].(map[string]any)
			if !p.until(ips[1], t0.Add(10*time.Second)) {
				b.Fatalf("round %d: the ICMP rule never took effect", r)
			}
			took = append(took, time.Since(t0))
			p.Close()
			post(b, url+"/v2.0/security-group-rules/"+rule["id"].(string), "DELETE", nil)
			// Blocked again (a fresh ICMP id each probe).
			blockBy := time.Now().Add(10 * time.Second)
			for probe := 0; ; probe++ {
				q, err := openPinger(src, 3000+r*100+probe)
				if err != nil {
					b.Fatal(err)
				}
				answered := q.until(ips[1], time.Now().Add(50*time.Millisecond))
				q.Close()
				if !answered {
					break
				}
				if time.Now().After(blockBy) {
					out, _ := lab.Output("compute-2", "nft", "list", "table", "inet", "neutrino")
					b.Fatalf("round %d: deleting the rule did not block the VM; compute-2:\n%s", r, out)
				}
			}
		}
		percentiles(b, took)
	}
}

// BenchmarkAgentRestart: 1,000 ports bound to one host, each with its tap
// device and default security group; the time from starting that host's
// agent again until the kernel matches its state (first sync done, every
// port wired).
func BenchmarkAgentRestart(b *testing.B) {
	const ports = 1000
	url, lab := testCloud(b, "nft")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := lab.Host("compute-1", "10.250.0.1"); err != nil {
		b.Fatal(err)
	}
	var wired atomic.Int64
	converged := make(chan struct{}, 1)
	start := func() (stop func()) {
		a, err := New(Config{Host: "compute-1", Server: url, NetNS: lab.Name("compute-1"), VTEP: net.ParseIP("10.250.0.1"),
			Interval: time.Second, Log: quiet, Synced: func(_ int64, active int) {
				wired.Store(int64(active))
				if active == ports {
					select {
					case converged <- struct{}{}:
					default:
					}
				}
			}})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { a.Run(ctx); a.Close(); close(done) }()
		return func() { cancel(); <-done }
	}
	stop := start()
	n := post(b, url+"/v2.0/networks", "POST", map[string]any{"network": map[string]any{}})["network"].(map[string]any)
	nid := n["id"].(string)
	post(b, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": nid, "ip_version": 4, "cidr": "10.22.0.0/20"}})
	var batch strings.Builder
	for k := 0; k < ports; k++ {
		p := post(b, url+"/v2.0/ports", "POST", map[string]any{"port": map[string]any{"network_id": nid, "binding:host_id": "compute-1"}})["port"].(map[string]any)
		fmt.Fprintf(&batch, "tuntap add dev %s mode tap\n", dataplane.TapName(p["id"].(string)))
	}
	f, _ := os.CreateTemp(b.TempDir(), "batch")
	f.WriteString(batch.String())
	f.Close()
	if err := lab.Run("compute-1", "ip", "-batch", f.Name()); err != nil {
		b.Fatal(err)
	}
	waitConverged := func(within time.Duration) time.Duration {
		t0 := time.Now()
		select {
		case <-converged:
			return time.Since(t0)
		case <-time.After(within):
			b.Fatalf("not converged after %v: %d of %d ports wired", within, wired.Load(), ports)
		}
		return 0
	}
	waitConverged(60 * time.Second) // the first start wires everything
	var took []time.Duration
	for i := 0; i < b.N; i++ {
		for r := 0; r < 5; r++ {
			stop()
			for len(converged) > 0 {
				<-converged
			}
			t0 := time.Now()
			stop = start()
			waitConverged(30 * time.Second)
			took = append(took, time.Since(t0))
		}
	}
	stop()
	percentiles(b, took)
}

// l3Cloud is a cloud whose network-1 hosts routers, with an upstream host
// at 203.0.113.1 on the external network, a router r with its gateway
// there, and the default group open to ICMP.
func l3Cloud(b *testing.B) (url string, lab *netlab.Lab, routerID, publicID string) {
	url, lab = testCloud(b, "ping", "nft")
	startAgentsL3(b, url, lab, []string{"network-1", "compute-1"}, "", "network-1")
	if _, err := lab.NS("upstream"); err != nil {
		b.Fatal(err)
	}
	if err := lab.Physical("upstream", "eth0"); err != nil {
		b.Fatal(err)
	}
	for _, c := range [][]string{{"ip", "addr", "add", "203.0.113.1/24", "dev", "eth0"}, {"ip", "link", "set", "eth0", "up"},
		{"sysctl", "-qw", "net.ipv4.neigh.eth0.retrans_time_ms=10"}} {
		if err := lab.Run("upstream", c...); err != nil {
			b.Fatal(err)
		}
	}
	pub := post(b, url+"/v2.0/networks", "POST", map[string]any{"network": map[string]any{"router:external": true,
		"provider:network_type": "flat", "provider:physical_network": "physnet1"}})["network"].(map[string]any)
	post(b, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": pub["id"], "ip_version": 4,
		"cidr": "203.0.113.0/24", "gateway_ip": "203.0.113.1", "enable_dhcp": false,
		"allocation_pools": []any{map[string]any{"start": "203.0.113.100", "end": "203.0.113.250"}}}})
	r := post(b, url+"/v2.0/routers", "POST", map[string]any{"router": map[string]any{
		"external_gateway_info": map[string]any{"network_id": pub["id"]}}})["router"].(map[string]any)
	var def string
	for _, g := range post(b, url+"/v2.0/security-groups?name=default", "GET", nil)["security_groups"].([]any) {
		def = g.(map[string]any)["id"].(string)
	}
	post(b, url+"/v2.0/security-group-rules", "POST", map[string]any{"security_group_rule": map[string]any{
		"security_group_id": def, "direction": "ingress", "protocol": "icmp"}})
	return url, lab, r["id"].(string), pub["id"].(string)
}

// routedVM makes a network with subnet cidr (gateway .1) and a VM on
// compute-1 at .10 whose default route is the gateway; it returns the
// subnet and the VM's port.
func routedVM(b *testing.B, url string, lab *netlab.Lab, name, prefix string) (subnetID, portID string) {
	n := post(b, url+"/v2.0/networks", "POST", map[string]any{"network": map[string]any{}})["network"].(map[string]any)
	sn := post(b, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": n["id"], "ip_version": 4,
		"cidr": prefix + ".0/24", "enable_dhcp": false}})["subnet"].(map[string]any)
	p := post(b, url+"/v2.0/ports", "POST", map[string]any{"port": map[string]any{"network_id": n["id"], "binding:host_id": "compute-1",
		"fixed_ips": []any{map[string]any{"ip_address": prefix + ".10"}}}})["port"].(map[string]any)
	if err := lab.VM(name, "compute-1", dataplane.TapName(p["id"].(string)), p["mac_address"].(string), 1450, prefix+".10/24"); err != nil {
		b.Fatal(err)
	}
	if err := lab.Run(name, "ip", "route", "add", "default", "via", prefix+".1"); err != nil {
		b.Fatal(err)
	}
	fastARP(b, lab, name)
	return sn["id"].(string), p["id"].(string)
}

// BenchmarkRouterInterfaceToReply: 20 rounds, each a new network with a VM:
// from adding the subnet to the router to the VM's first echo reply from
// the upstream host, routed and SNATed by the router on network-1.
func BenchmarkRouterInterfaceToReply(b *testing.B) {
	const rounds = 20
	url, lab, rid, _ := l3Cloud(b)
	for i := 0; i < b.N; i++ {
		var took []time.Duration
		for r := 0; r < rounds; r++ {
			vm := fmt.Sprintf("ri%d-%d", i, r)
			sn, _ := routedVM(b, url, lab, vm, fmt.Sprintf("10.%d.%d", 90+i, r))
			p, err := openPinger(lab.Name(vm), 4000+r)
			if err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			post(b, url+"/v2.0/routers/"+rid+"/add_router_interface", "PUT", map[string]any{"subnet_id": sn})
			if !p.until(net.ParseIP("203.0.113.1"), t0.Add(10*time.Second)) {
				b.Fatalf("round %d: no routed reply", r)
			}
			took = append(took, time.Since(t0))
			p.Close()
		}
		percentiles(b, took)
	}
}

// BenchmarkFloatingIPToReply: 30 rounds on one VM: from associating a
// floating IP (a chosen address) to the first echo reply the upstream host
// gets from it; the floating IP is disassociated and unreachable again
// between rounds.
func BenchmarkFloatingIPToReply(b *testing.B) {
	const rounds = 30
	url, lab, rid, pub := l3Cloud(b)
	sn, port := routedVM(b, url, lab, "fipvm", "10.89.0")
	post(b, url+"/v2.0/routers/"+rid+"/add_router_interface", "PUT", map[string]any{"subnet_id": sn})
	fip := post(b, url+"/v2.0/floatingips", "POST", map[string]any{"floatingip": map[string]any{"floating_network_id": pub,
		"floating_ip_address": "203.0.113.50"}})["floatingip"].(map[string]any)
	addr := net.ParseIP("203.0.113.50")
	for i := 0; i < b.N; i++ {
		var took []time.Duration
		for r := 0; r < rounds; r++ {
			p, err := openPinger(lab.Name("upstream"), 5000+r)
			if err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			post(b, url+"/v2.0/floatingips/"+fip["id"].(string), "PUT", map[string]any{"floatingip": map[string]any{"port_id": port}})
			if !p.until(addr, t0.Add(10*time.Second)) {
				b.Fatalf("round %d: the floating IP never answered", r)
			}
			took = append(took, time.Since(t0))
			p.Close()
			post(b, url+"/v2.0/floatingips/"+fip["id"].(string), "PUT", map[string]any{"floatingip": map[string]any{"port_id": nil}})
			gone := time.Now().Add(10 * time.Second)
			for probe := 0; ; probe++ {
				q, err := openPinger(lab.Name("upstream"), 6000+r*100+probe)
				if err != nil {
					b.Fatal(err)
				}
				answered := q.until(addr, time.Now().Add(50*time.Millisecond))
				q.Close()
				if !answered {
					break
				}
				if time.Now().After(gone) {
					b.Fatalf("round %d: the floating IP still answers after disassociation", r)
				}
			}
		}
		percentiles(b, took)
	}
}

// BenchmarkVMToVMThroughput: iperf3 from a VM on compute-1 to a VM on
// compute-2, one stream and four, through what Neutrino wires (bridge,
// VXLAN, the default group's rules: the VMs are members, so admitted)
// against the same bridges and VXLAN devices made by hand on two more
// hosts of the same underlay, with no filtering: the data plane's cost
// (issue 11, point 5). Reports Gbit/s and the ratio; root and iperf3.
func BenchmarkVMToVMThroughput(b *testing.B) {
	url, lab := testCloud(b, "iperf3", "nft")
	startAgents(b, url, lab, []string{"compute-1", "compute-2"}, "")
	n := post(b, url+"/v2.0/networks", "POST", map[string]any{"network": map[string]any{}})["network"].(map[string]any)
	post(b, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": n["id"], "ip_version": 4,
		"cidr": "10.70.0.0/24", "enable_dhcp": false}})
	mtu := int(n["mtu"].(float64))
	for i, h := range []string{"compute-1", "compute-2"} {
		ip := fmt.Sprint("10.70.0.", 11+i)
		p := post(b, url+"/v2.0/ports", "POST", map[string]any{"port": map[string]any{"network_id": n["id"], "binding:host_id": h,
			"fixed_ips": []any{map[string]any{"ip_address": ip}}}})["port"].(map[string]any)
		if err := lab.VM(fmt.Sprint("vm", i+1), h, dataplane.TapName(p["id"].(string)), p["mac_address"].(string), mtu, ip+"/24"); err != nil {
			b.Fatal(err)
		}
	}
	// The same by hand: a bridge and a VXLAN device per host, no rules.
	for i, h := range []string{"bare-1", "bare-2"} {
		vtep, peer := fmt.Sprint("10.250.0.", 11+i), fmt.Sprint("10.250.0.", 12-i)
		if err := lab.Host(h, vtep); err != nil {
			b.Fatal(err)
		}
		for _, c := range [][]string{
			{"ip", "link", "add", "br0", "mtu", fmt.Sprint(mtu), "type", "bridge"},
			{"ip", "link", "add", "vx0", "mtu", fmt.Sprint(mtu), "type", "vxlan", "id", "4242", "local", vtep, "dstport", fmt.Sprint(dataplane.VXLANPort), "nolearning"},
			{"bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vx0", "dst", peer},
			{"ip", "link", "set", "vx0", "master", "br0", "up"},
			{"ip", "link", "set", "br0", "up"},
		} {
			if err := lab.Run(h, c...); err != nil {
				b.Fatal(err)
			}
		}
		vm := fmt.Sprint("bvm", i+1)
		if err := lab.VM(vm, h, "tap0", fmt.Sprintf("fa:16:3e:00:00:%02x", i+1), mtu, fmt.Sprint("10.71.0.", 11+i, "/24")); err != nil {
			b.Fatal(err)
		}
		if err := lab.Run(h, "ip", "link", "set", "tap0", "master", "br0", "up"); err != nil {
			b.Fatal(err)
		}
	}
	pingUntil(b, lab, "vm1", "10.70.0.12", 20*time.Second)
	pingUntil(b, lab, "bvm1", "10.71.0.12", 20*time.Second)
	gbps := func(client, server string, streams int) float64 {
		if err := lab.Run(server, "iperf3", "-s", "-D", "-1"); err != nil { // a server for one test
			b.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		out, err := lab.Output(client, "iperf3", "-c", map[string]string{"vm2": "10.70.0.12", "bvm2": "10.71.0.12"}[server],
			"-t", "5", "-P", fmt.Sprint(streams), "-J")
		if err != nil {
			b.Fatal(err)
		}
		var res struct {
			End struct {
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			b.Fatalf("iperf3: %v\n%s", err, out)
		}
		return res.End.SumReceived.BitsPerSecond / 1e9
	}
	for i := 0; i < b.N; i++ {
		for _, streams := range []int{1, 4} {
			ours, bare := gbps("vm1", "vm2", streams), gbps("bvm1", "bvm2", streams)
			b.ReportMetric(ours, fmt.Sprintf("neutrino-%dstream-Gbit/s", streams))
			b.ReportMetric(bare, fmt.Sprintf("bare-%dstream-Gbit/s", streams))
			b.ReportMetric(ours/bare, fmt.Sprintf("ratio-%dstream", streams))
		}
	}
}

// BenchmarkBootAtScale: hosts × ports VMs booted one after another (the
// issue 11 judging run, at a size this machine holds): one network per 10
// hosts, every port in the default group (whose rules admit the group, so
// each new VM is a new member on every host); for each VM, the time from
// POST /v2.0/ports until it gets an echo reply from the first VM of its
// network on another host (that host's agent must have wired the peer and
// added the address to its remote-group set). NEUTRINO_BENCH_HOSTS and
// NEUTRINO_BENCH_PORTS set the size (default 20 × 5); BOOTDEBUG=1 names
// the VMs that took over 300 ms. Root.
func BenchmarkBootAtScale(b *testing.B) {
	nHosts, perHost := envInt("NEUTRINO_BENCH_HOSTS", 20), envInt("NEUTRINO_BENCH_PORTS", 5)
	url, lab := testCloud(b, "ping", "nft")
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	quiet := slog.New(slog.NewTextHandler(agentLog(), nil))
	hosts := make([]string, nHosts)
	handles := make([]*netlink.Handle, nHosts)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("h%03d", i)
		vtep := fmt.Sprint("10.250.", i/200, ".", 1+i%200)
		if err := lab.Host(hosts[i], vtep); err != nil {
			b.Fatal(err)
		}
		if i >= 200 {
			lab.Run(hosts[i], "ip", "addr", "add", vtep+"/16", "dev", "eth0")
		}
		a, err := New(Config{Host: hosts[i], Server: url, NetNS: lab.Name(hosts[i]), VTEP: net.ParseIP(vtep), Interval: 5 * time.Second, Log: quiet})
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan struct{})
		go func() { a.Run(ctx); close(done) }()
		b.Cleanup(func() { cancel(); <-done; a.Close() })
		handles[i] = hostHandle(b, lab, hosts[i])
	}
	if err := lab.StaticUnderlay(); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		// A target VM per network, on its first host.
		var nets []string
		var targets []net.IP
		for g := 0; g*10 < nHosts; g++ {
			n := post(b, url+"/v2.0/networks", "POST", map[string]any{"network": map[string]any{}})["network"].(map[string]any)
			nets = append(nets, n["id"].(string))
			post(b, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": n["id"], "ip_version": 4,
				"cidr": fmt.Sprintf("10.%d.%d.0/22", 100+i, g*4), "enable_dhcp": false}})
			ip := fmt.Sprintf("10.%d.%d.10", 100+i, g*4)
			tp := post(b, url+"/v2.0/ports", "POST", map[string]any{"port": map[string]any{"network_id": n["id"], "binding:host_id": hosts[g*10],
				"fixed_ips": []any{map[string]any{"ip_address": ip}}}})["port"].(map[string]any)
			vm := fmt.Sprintf("t%d-%d", i, g)
			if err := lab.VM(vm, hosts[g*10], dataplane.TapName(tp["id"].(string)), tp["mac_address"].(string), 1450, ip+"/22"); err != nil {
				b.Fatal(err)
			}
			fastARP(b, lab, vm)
			targets = append(targets, net.ParseIP(ip))
		}
		var took []time.Duration
		for k := 0; k < perHost; k++ {
			for h := range hosts {
				g := h / 10
				if h == g*10 && k == 0 {
					continue // the target's host: its first VM is the target
				}
				vm, tmp := fmt.Sprintf("v%d-%d-%d", i, h, k), fmt.Sprintf("tmp%d", k)
				ip := fmt.Sprintf("10.%d.%d.%d", 100+i, g*4+1+k/200, 10+(h%10)*20+k%20)
				mac := fmt.Sprintf("fa:16:3e:%02x:%02x:%02x", i, h, k)
				plugged(b, lab, vm, hosts[h], tmp, mac, ip+"/22", 1450)
				p, err := openPinger(lab.Name(vm), 1000+h*perHost+k)
				if err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				port := post(b, url+"/v2.0/ports", "POST", map[string]any{"port": map[string]any{"network_id": nets[g], "binding:host_id": hosts[h],
					"mac_address": mac, "fixed_ips": []any{map[string]any{"ip_address": ip}}}})["port"].(map[string]any)
				plug(b, handles[h], tmp, port["id"].(string))
				if !p.until(targets[g], t0.Add(20*time.Second)) {
					b.Fatalf("VM %s (%s) never reached its network's target", vm, ip)
				}
				took = append(took, time.Since(t0))
				if os.Getenv("BOOTDEBUG") != "" && time.Since(t0) > 300*time.Millisecond {
					fmt.Fprintf(os.Stderr, "slow: VM %s on %s (network %d, target on %s) took %v, at %s\n", vm, hosts[h], g, hosts[g*10], time.Since(t0), t0.Format("15:04:05.000"))
				}
				p.Close()
			}
		}
		percentiles(b, took)
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
