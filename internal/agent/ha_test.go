package agent

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"neutrino/internal/agent/l3"
	"neutrino/internal/dataplane"
	"neutrino/internal/dataplane/router"
	"neutrino/internal/netlab"
	"neutrino/internal/testutil"
)

// haCloud is a cloud of two network hosts and a compute host with an HA
// router: a gateway on the external network (the upstream host at
// 203.0.113.1), an interface on a VXLAN network, and vm1 on compute-1
// behind it.
type haCloud struct {
	url, rid, gwIP string
	pub, port      string // the external network, vm1's port
	lab            *netlab.Lab
	n, sn          map[string]any
	// active is the host of the instance l3-agents reports active, once
	// exactly one is and the other standby.
	active func() string
}

func newHACloud(tb testing.TB) *haCloud {
	h := &haCloud{}
	url, lab := testCloud(tb, "ping", "nft", "busybox", "keepalived")
	// keepalived outlives agents by design: the test ends its own, once the
	// agents are stopped (cleanups run last first), or they would start it
	// again.
	tb.Cleanup(func() {
		dirs, _ := filepath.Glob(filepath.Join(l3.HAStateRoot, lab.Prefix+"-*"))
		for _, d := range dirs {
			router.KillHA(d)
			os.RemoveAll(d)
		}
	})
	startAgentsL3(tb, url, lab, []string{"network-1", "network-2", "compute-1"}, "", "network-1", "network-2")
	upstream(tb, lab, []string{"ip", "addr", "add", "203.0.113.1/24", "dev", "eth0"}, []string{"ip", "link", "set", "eth0", "up"})
	pub := post(tb, url+"/v2.0/networks", "POST", map[string]any{"network": map[string]any{"name": "public", "router:external": true,
		"provider:network_type": "flat", "provider:physical_network": "physnet1"}})["network"].(map[string]any)
	post(tb, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": pub["id"], "ip_version": 4,
		"cidr": "203.0.113.0/24", "gateway_ip": "203.0.113.1", "enable_dhcp": false,
		"allocation_pools": []any{map[string]any{"start": "203.0.113.100", "end": "203.0.113.250"}}}})
	rt := post(tb, url+"/v2.0/routers", "POST", map[string]any{"router": map[string]any{"name": "r1", "ha": true,
		"external_gateway_info": map[string]any{"network_id": pub["id"]}}})["router"].(map[string]any)
	rid := rt["id"].(string)
	gwIP := rt["external_gateway_info"].(map[string]any)["external_fixed_ips"].([]any)[0].(map[string]any)["ip_address"].(string)
	n := post(tb, url+"/v2.0/networks", "POST", map[string]any{"network": map[string]any{}})["network"].(map[string]any)
	sn := post(tb, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": n["id"], "ip_version": 4,
		"cidr": "10.63.0.0/24", "enable_dhcp": false}})["subnet"].(map[string]any)
	post(tb, url+"/v2.0/routers/"+rid+"/add_router_interface", "PUT", map[string]any{"subnet_id": sn["id"]})
	p := post(tb, url+"/v2.0/ports", "POST", map[string]any{"port": map[string]any{"network_id": n["id"], "binding:host_id": "compute-1"}})["port"].(map[string]any)
	ip := p["fixed_ips"].([]any)[0].(map[string]any)["ip_address"].(string)
	if err := lab.VM("vm1", "compute-1", dataplane.TapName(p["id"].(string)), p["mac_address"].(string), int(n["mtu"].(float64)), ip+"/24"); err != nil {
		tb.Fatal(err)
	}
	if err := lab.Run("vm1", "ip", "route", "add", "default", "via", sn["gateway_ip"].(string)); err != nil {
		tb.Fatal(err)
	}
	// active is the host of the instance l3-agents reports active, when
	// exactly one is and the other standby.
	h.active = func() string {
		var host string
		testutil.Eventually(tb, 20*time.Second, "one active instance, one standby", func() (bool, string) {
			agents := post(tb, url+"/v2.0/routers/"+rid+"/l3-agents", "GET", nil)["agents"].([]any)
			states := map[string]string{}
			for _, a := range agents {
				a := a.(map[string]any)
				states[fmt.Sprint(a["ha_state"])] = a["host"].(string)
			}
			host = states["active"]
			return len(agents) == 2 && host != "" && states["standby"] != "", fmt.Sprint(agents)
		})
		return host
	}
	h.url, h.lab, h.rid, h.gwIP, h.n, h.sn = url, lab, rid, gwIP, n, sn
	h.pub, h.port = pub["id"].(string), p["id"].(string)
	return h
}

// ns is the router's namespace on host.
func (h *haCloud) ns(host string) string { return h.lab.Name(host) + "-r" + h.rid[:8] }

// holdsGateway reports whether host's instance has the gateway address.
func (h *haCloud) holdsGateway(host string) bool {
	out, _ := h.lab.Output(host, "ip", "netns", "exec", h.ns(host), "ip", "-br", "addr")
	return strings.Contains(out, h.gwIP+"/")
}

// crash kills host's keepalived and its VRRP process outright.
func (h *haCloud) crash(tb testing.TB, host string) {
	dir := filepath.Join(l3.HAStateRoot, h.ns(host))
	pids := router.HAPIDs(dir)
	if len(pids) != 2 {
		tb.Fatalf("keepalived of %s: processes %v", dir, pids)
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// pingLoss pings the upstream host from vm1 every 10 ms while fail runs
// (a second in), and returns how long replies were missing and whether
// any came.
func (h *haCloud) pingLoss(tb testing.TB, fail func()) (time.Duration, bool) {
	return testutil.PingLoss(tb, func(args ...string) string { o, _ := h.lab.Output("vm1", args...); return o }, "203.0.113.1", fail)
}

// TestHARouterThroughAPI: an HA router made through the API runs on both
// network hosts' L3 agents; one instance is active (l3-agents says which)
// and a VM reaches the upstream host through it by SNAT, and over IPv6
// with the address the active instance advertises. When the active
// instance's keepalived is killed outright, that instance is fenced (the
// gateway address leaves it at once), the other takes over and reports
// active, the router's ports follow it, the VM's pings go on, and the
// killed instance comes back as standby.
func TestHARouterThroughAPI(t *testing.T) {
	h := newHACloud(t)
	url, lab, rid, n := h.url, h.lab, h.rid, h.n
	active := h.active
	first := active()
	pingUntil(t, lab, "vm1", "203.0.113.1", 20*time.Second)
	// IPv6: the active instance advertises the SLAAC subnet, the VM takes
	// its address from it and reaches the router.
	sn6 := post(t, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": n["id"], "ip_version": 6,
		"cidr": "2001:db8:63::/64", "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"}})["subnet"].(map[string]any)
	post(t, url+"/v2.0/routers/"+rid+"/add_router_interface", "PUT", map[string]any{"subnet_id": sn6["id"]})
	testutil.Eventually(t, 20*time.Second, "vm1 has a SLAAC address from the HA router", func() (bool, string) {
		out, _ := lab.Output("vm1", "ip", "-6", "addr", "show", "dev", "eth0", "scope", "global")
		return strings.Contains(out, "2001:db8:63:"), out
	})
	gw6 := sn6["gateway_ip"].(string)
	if err := lab.Run("vm1", "ping", "-c", "3", "-W", "1", gw6); err != nil {
		for _, h := range []string{"network-1", "network-2"} {
			out, _ := lab.Output(h, "ip", "netns", "exec", lab.Name(h)+"-r"+rid[:8], "ip", "-6", "addr")
			conf, _ := os.ReadFile(filepath.Join(l3.HAStateRoot, lab.Name(h)+"-r"+rid[:8], "keepalived.conf"))
			klog, _ := os.ReadFile(filepath.Join(l3.HAStateRoot, lab.Name(h)+"-r"+rid[:8], "keepalived.log"))
			t.Logf("%s:\n%s\n%s\n%s", h, out, conf, klog[max(0, len(klog)-1500):])
		}
		out, _ := lab.Output("vm1", "ip", "-6", "neigh")
		o2, _ := lab.Output("vm1", "ip", "-6", "route")
		t.Fatalf("vm1 cannot reach the router's IPv6 address; its neighbours:\n%s\nroutes:\n%s", out, o2)
	}
	// (On a loaded machine keepalived may miss an advertisement and the
	// instances swap: what counts is that one holds the router, not which.)
	first = active()
	if !h.holdsGateway(first) {
		var diag []string
		for _, host := range []string{"network-1", "network-2"} {
			out, _ := lab.Output(host, "ip", "netns", "exec", h.ns(host), "ip", "-br", "addr")
			diag = append(diag, host+":\n"+out)
		}
		t.Fatalf("the active instance on %s lacks the gateway address %s; l3-agents: %v\n%s", first, h.gwIP,
			post(t, url+"/v2.0/routers/"+rid+"/l3-agents", "GET", nil)["agents"], strings.Join(diag, "\n"))
	}
	other := map[string]string{"network-1": "network-2", "network-2": "network-1"}[first]
	if h.holdsGateway(other) {
		t.Fatalf("the standby on %s holds the gateway address too", other)
	}

	// A TCP connection from a VM (vm2: no floating IP) to the upstream host
	// through SNAT, open across the failover: it goes on (no state is
	// synced between instances; the new one takes the flow up mid-stream,
	// and its SNAT keeps the source port).
	p2 := post(t, url+"/v2.0/ports", "POST", map[string]any{"port": map[string]any{"network_id": n["id"], "binding:host_id": "compute-1"}})["port"].(map[string]any)
	ip2 := p2["fixed_ips"].([]any)[0].(map[string]any)["ip_address"].(string)
	if err := lab.VM("vm2", "compute-1", dataplane.TapName(p2["id"].(string)), p2["mac_address"].(string), int(n["mtu"].(float64)), ip2+"/24"); err != nil {
		t.Fatal(err)
	}
	if err := lab.Run("vm2", "ip", "route", "add", "default", "via", h.sn["gateway_ip"].(string)); err != nil {
		t.Fatal(err)
	}
	pingUntil(t, lab, "vm2", "203.0.113.1", 10*time.Second)
	ln, err := dataplane.Open(lab.Name("upstream"), func() (net.Listener, error) { return net.Listen("tcp4", "203.0.113.1:5000") })
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn, err := dataplane.Open(lab.Name("vm2"), func() (net.Conn, error) { return net.DialTimeout("tcp4", "203.0.113.1:5000", 5*time.Second) })
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	go io.Copy(peer, peer) // echo
	echo := func(msg string) error {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte(msg)); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, buf); err != nil {
			return err
		}
		if string(buf) != msg {
			return fmt.Errorf("echoed %q, sent %q", buf, msg)
		}
		return nil
	}
	if err := echo("before"); err != nil {
		t.Fatal(err)
	}
	// And one from the upstream host to vm1's floating IP (1:1 NAT).
	var def string
	for _, g := range post(t, url+"/v2.0/security-groups?name=default", "GET", nil)["security_groups"].([]any) {
		def = g.(map[string]any)["id"].(string)
	}
	post(t, url+"/v2.0/security-group-rules", "POST", map[string]any{"security_group_rule": map[string]any{
		"security_group_id": def, "direction": "ingress", "protocol": "tcp", "port_range_min": 5001, "port_range_max": 5001}})
	post(t, url+"/v2.0/floatingips", "POST", map[string]any{"floatingip": map[string]any{"floating_network_id": h.pub,
		"floating_ip_address": "203.0.113.60", "port_id": h.port}})
	inLn, err := dataplane.Open(lab.Name("vm1"), func() (net.Listener, error) { return net.Listen("tcp4", ":5001") })
	if err != nil {
		t.Fatal(err)
	}
	defer inLn.Close()
	var in net.Conn
	testutil.Eventually(t, 10*time.Second, "the upstream host connects to vm1's floating IP", func() (bool, string) {
		in, err = dataplane.Open(lab.Name("upstream"), func() (net.Conn, error) { return net.DialTimeout("tcp4", "203.0.113.60:5001", time.Second) })
		return err == nil, fmt.Sprint(err)
	})
	defer in.Close()
	vmSide, err := inLn.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer vmSide.Close()
	go io.Copy(vmSide, vmSide)
	echoIn := func(msg string) error {
		in.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := in.Write([]byte(msg)); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		_, err := io.ReadFull(in, buf)
		return err
	}
	if err := echoIn("before"); err != nil {
		t.Fatal(err)
	}

	// Crash: the active keepalived is killed outright while the VM pings
	// the upstream host every 10 ms.
	lost, resumed := h.pingLoss(t, func() {
		h.crash(t, first)
		testutil.Eventually(t, 2*time.Second, "the killed instance fenced", func() (bool, string) { return !h.holdsGateway(first), "" })
	})
	if err := echo("after the failover"); err != nil {
		t.Fatalf("the TCP connection through SNAT did not survive the failover: %v", err)
	}
	if err := echoIn("after the failover"); err != nil {
		t.Fatalf("the TCP connection to the floating IP did not survive the failover: %v", err)
	}
	t.Logf("crash of the active instance: %v without replies", lost)
	if now := active(); now != other {
		t.Fatalf("after the crash the active instance is on %s, not %s", now, other)
	}
	if !resumed {
		t.Fatal("the VM's pings did not resume through the new active instance")
	}
	pingUntil(t, lab, "vm1", "203.0.113.1", 5*time.Second)
	if h.holdsGateway(first) {
		t.Fatal("the killed instance holds the gateway address again")
	}
	pingUntil(t, lab, "vm1", gw6, 5*time.Second)
}

// BenchmarkHAFailoverThroughAPI: the time a VM behind an HA router goes
// without replies from the upstream host (pinged every 10 ms through SNAT)
// when the active instance stops in order (the router removed from its L3
// agent, which stops its keepalived) and when its keepalived is killed
// outright; ten of each, the instance brought back as a standby in
// between. Everything is in: VRRP, the agents' reports, the router's ports
// following the active instance, and the compute host's forwarding entries.
func BenchmarkHAFailoverThroughAPI(b *testing.B) {
	h := newHACloud(b)
	pingUntil(b, h.lab, "vm1", "203.0.113.1", 20*time.Second)
	agentOf := func(host string) string {
		for _, a := range post(b, h.url+"/v2.0/agents?agent_type=L3+agent&host="+host, "GET", nil)["agents"].([]any) {
			return a.(map[string]any)["id"].(string)
		}
		b.Fatalf("no L3 agent on %s", host)
		return ""
	}
	for n := 0; n < b.N; n++ {
		var orderly, crash []time.Duration
		for i := 0; i < 10; i++ {
			a := h.active()
			lost, ok := h.pingLoss(b, func() {
				post(b, h.url+"/v2.0/agents/"+agentOf(a)+"/l3-routers/"+h.rid, "DELETE", nil)
			})
			if !ok {
				b.Fatal("the pings did not resume after an orderly failover")
			}
			orderly = append(orderly, lost)
			post(b, h.url+"/v2.0/agents/"+agentOf(a)+"/l3-routers", "POST", map[string]any{"router_id": h.rid})
			a = h.active()
			lost, ok = h.pingLoss(b, func() { h.crash(b, a) })
			if !ok {
				b.Fatal("the pings did not resume after a crash")
			}
			crash = append(crash, lost)
		}
		b.Logf("orderly: %v; crash: %v", orderly, crash)
		testutil.ReportP50Max(b, "orderly", orderly)
		testutil.ReportP50Max(b, "crash", crash)
	}
}
