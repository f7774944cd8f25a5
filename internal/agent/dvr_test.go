package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
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

// dvrCloud is a cloud of a network host (network-1, L3 agent in dvr_snat
// mode) and two compute hosts (dvr mode), all on the external flat
// network (the upstream host at 203.0.113.1), with a distributed router
// between it and two tenant networks: vm1 on compute-1 on the first
// (10.71.0.0/24), vm2 on compute-2 on the second (10.72.0.0/24).
type dvrCloud struct {
	url, rid, gwIP string
	lab            *netlab.Lab
	ports, ips     [2]string
	ips6           [2]string // SLAAC addresses
	nets           [2]map[string]any
	pub, project   string
	agents         map[string]*runningAgent
}

func newDVRCloud(t testing.TB, typ string, ha bool, more ...string) *dvrCloud {
	d := &dvrCloud{}
	tools := append([]string{"ping", "nft", "busybox", "bridge"}, more...)
	hosts := []string{"network-1", "compute-1", "compute-2"}
	if ha {
		tools, hosts = append(tools, "keepalived"), append(hosts, "network-2")
	}
	url, lab := testCloud(t, tools...)
	if ha {
		// keepalived outlives agents by design: the test ends its own once
		// the agents are stopped (cleanups run last first).
		t.Cleanup(func() {
			dirs, _ := filepath.Glob(filepath.Join(l3.HAStateRoot, lab.Prefix+"-*"))
			for _, d := range dirs {
				router.KillHA(d)
				os.RemoveAll(d)
			}
		})
	}
	d.agents = startAgentsWith(t, url, lab, hosts, func(c *Config) {
		c.L3, c.L3Mode = true, "dvr"
		if strings.HasPrefix(c.Host, "network-") {
			c.L3Mode = "dvr_snat"
		}
	})
	upstream(t, lab, []string{"ip", "addr", "add", "203.0.113.1/24", "dev", "eth0"}, []string{"ip", "link", "set", "eth0", "up"},
		[]string{"ip", "-6", "addr", "add", "2001:db8:100::1/64", "dev", "eth0", "nodad"})
	pub := post(t, url+"/v2.0/networks", "POST", map[string]any{"network": map[string]any{"name": "public", "router:external": true,
		"provider:network_type": "flat", "provider:physical_network": "physnet1"}})["network"].(map[string]any)
	post(t, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": pub["id"], "ip_version": 4,
		"cidr": "203.0.113.0/24", "gateway_ip": "203.0.113.1", "enable_dhcp": false,
		"allocation_pools": []any{map[string]any{"start": "203.0.113.100", "end": "203.0.113.250"}}}})
	post(t, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": pub["id"], "ip_version": 6,
		"cidr": "2001:db8:100::/64", "gateway_ip": "2001:db8:100::1", "enable_dhcp": false}})
	rt := post(t, url+"/v2.0/routers", "POST", map[string]any{"router": map[string]any{"name": "dvr", "distributed": true, "ha": ha,
		"external_gateway_info": map[string]any{"network_id": pub["id"]}}})["router"].(map[string]any)
	if rt["distributed"] != true || rt["ha"] != ha {
		t.Fatalf("router: %v", rt)
	}
	d.rid, d.project = rt["id"].(string), rt["project_id"].(string)
	d.gwIP = rt["external_gateway_info"].(map[string]any)["external_fixed_ips"].([]any)[0].(map[string]any)["ip_address"].(string)
	// ICMP from anywhere into the default group, so the upstream host may
	// ping in.
	for _, g := range post(t, url+"/v2.0/security-groups?name=default", "GET", nil)["security_groups"].([]any) {
		post(t, url+"/v2.0/security-group-rules", "POST", map[string]any{"security_group_rule": map[string]any{
			"security_group_id": g.(map[string]any)["id"], "direction": "ingress", "protocol": "icmp"}})
	}
	for i, cidr := range []string{"10.71.0.0/24", "10.72.0.0/24"} {
		body := map[string]any{}
		if typ == "vlan" {
			body = map[string]any{"provider:network_type": "vlan", "provider:physical_network": "physnet1", "provider:segmentation_id": 171 + i}
		}
		n := post(t, url+"/v2.0/networks", "POST", map[string]any{"network": body})["network"].(map[string]any)
		sn := post(t, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": n["id"], "ip_version": 4,
			"cidr": cidr, "enable_dhcp": false}})["subnet"].(map[string]any)
		post(t, url+"/v2.0/routers/"+d.rid+"/add_router_interface", "PUT", map[string]any{"subnet_id": sn["id"]})
		sn6 := post(t, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": n["id"], "ip_version": 6,
			"cidr": fmt.Sprintf("2001:db8:7%d::/64", i+1), "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"}})["subnet"].(map[string]any)
		post(t, url+"/v2.0/routers/"+d.rid+"/add_router_interface", "PUT", map[string]any{"subnet_id": sn6["id"]})
		// The upstream host routes the tenant prefix to the router's
		// gateway (no NAT for IPv6).
		if err := lab.Run("upstream", "ip", "-6", "route", "add", fmt.Sprintf("2001:db8:7%d::/64", i+1), "via", d.gwIP6(t, url)); err != nil {
			t.Fatal(err)
		}
		host, vm := fmt.Sprintf("compute-%d", i+1), fmt.Sprintf("vm%d", i+1)
		p := post(t, url+"/v2.0/ports", "POST", map[string]any{"port": map[string]any{"network_id": n["id"], "binding:host_id": host,
			"device_owner": "compute:nova"}})["port"].(map[string]any)
		d.ports[i], d.nets[i] = p["id"].(string), n
		for _, f := range p["fixed_ips"].([]any) {
			if a := f.(map[string]any)["ip_address"].(string); strings.Contains(a, ":") {
				d.ips6[i] = a
			} else {
				d.ips[i] = a
			}
		}
		if err := lab.VM(vm, host, dataplane.TapName(d.ports[i]), p["mac_address"].(string), int(n["mtu"].(float64)), d.ips[i]+"/24"); err != nil {
			t.Fatal(err)
		}
		if err := lab.Run(vm, "ip", "route", "add", "default", "via", sn["gateway_ip"].(string)); err != nil {
			t.Fatal(err)
		}
	}
	d.url, d.lab, d.pub = url, lab, pub["id"].(string)
	return d
}

// metered reads the server's metering metrics: a label's packets through
// a router in one direction, by reporting host.
func metered(t testing.TB, url, rid, label, dir string) map[string]float64 {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	host := regexp.MustCompile(`host="([^"]*)"`)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "neutrino_metering_label_packets_total{") && strings.Contains(line, `label_id="`+label+`"`) &&
			strings.Contains(line, `direction="`+dir+`"`) && strings.Contains(line, `router_id="`+rid+`"`) {
			if m := host.FindStringSubmatch(line); m != nil {
				v, _ := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
				out[m[1]] += v
			}
		}
	}
	return out
}

// gwIP6 is the router's IPv6 gateway address.
func (d *dvrCloud) gwIP6(t testing.TB, url string) string {
	rt := post(t, url+"/v2.0/routers/"+d.rid, "GET", nil)["router"].(map[string]any)
	for _, f := range rt["external_gateway_info"].(map[string]any)["external_fixed_ips"].([]any) {
		if a := f.(map[string]any)["ip_address"].(string); strings.Contains(a, ":") {
			return a
		}
	}
	t.Fatalf("the router has no IPv6 gateway address: %v", rt)
	return ""
}

// ports lists the router's ports of a device owner.
func (d *dvrCloud) routerPorts(t *testing.T, owner string) []map[string]any {
	var out []map[string]any
	for _, p := range post(t, d.url+"/v2.0/ports?device_id="+d.rid, "GET", nil)["ports"].([]any) {
		if p := p.(map[string]any); p["device_owner"] == owner {
			out = append(out, p)
		}
	}
	return out
}

// probe counts the IPv4 packets from src to dst that host sees, in its
// bridges (family bridge, whatever the port) or as a host (family ip): it
// returns a function reading the count.
func probe(t *testing.T, lab *netlab.Lab, host, family, name, src, dst string) func() int {
	t.Helper()
	for _, c := range [][]string{{"add", "table", family, name}, {"add", "chain", family, name, "pre", "{ type filter hook prerouting priority -300; }"},
		{"add", "rule", family, name, "pre", "ip", "saddr", src, "ip", "daddr", dst, "counter"}} {
		if err := lab.Run(host, append([]string{"nft"}, c...)...); err != nil {
			t.Fatal(err)
		}
	}
	return func() int {
		out, _ := lab.Output(host, "nft", "list", "chain", family, name, "pre")
		return nftPackets(out)
	}
}

// TestDVRThroughAPI: a distributed router made through the API, on VXLAN
// and on VLAN tenant networks. Its centralized part is scheduled to the
// dvr_snat agent only (with one SNAT port per interface there), its
// interfaces are distributed ports. VMs on two subnets on two compute hosts
// reach each other routed on their own hosts: a counter on the network
// host sees none of it (and does see the SNAT traffic, so it counts), and
// on the wire the router's frames carry the sending host's DVR MAC, never
// the router's. A floating IP is served on its VM's compute host: the
// upstream host reaches it, and the VM reaches upstream from it, while the
// network host is off the wire (and SNAT with it).
func TestDVRThroughAPI(t *testing.T) {
	for _, typ := range []string{"vxlan", "vlan"} {
		t.Run(typ, func(t *testing.T) { testDVR(t, typ) })
	}
}

func testDVR(t *testing.T, typ string) {
	d := newDVRCloud(t, typ, false)
	url, lab := d.url, d.lab
	// The agents' modes, and where the router went.
	modes := map[string]string{}
	for _, a := range post(t, url+"/v2.0/agents?agent_type=L3+agent", "GET", nil)["agents"].([]any) {
		a := a.(map[string]any)
		modes[a["host"].(string)] = fmt.Sprint(a["configurations"].(map[string]any)["agent_mode"])
	}
	if modes["network-1"] != "dvr_snat" || modes["compute-1"] != "dvr" || modes["compute-2"] != "dvr" {
		t.Fatalf("agent modes: %v", modes)
	}
	testutil.Eventually(t, 10*time.Second, "the router's centralized part on network-1 only", func() (bool, string) {
		agents := post(t, url+"/v2.0/routers/"+d.rid+"/l3-agents", "GET", nil)["agents"].([]any)
		return len(agents) == 1 && agents[0].(map[string]any)["host"] == "network-1", fmt.Sprint(agents)
	})
	for _, p := range d.routerPorts(t, "network:router_interface_distributed") {
		if p["binding:vif_type"] != "distributed" || p["binding:host_id"] != "" {
			t.Fatalf("interface port: %v", p)
		}
	}
	if snat := d.routerPorts(t, "network:router_centralized_snat"); len(snat) != 2 || snat[0]["binding:host_id"] != "network-1" {
		t.Fatalf("SNAT ports: %v", snat)
	}
	// East-west, routed on the sending host.
	pingUntil(t, lab, "vm1", d.ips[1], 20*time.Second)
	pingUntil(t, lab, "vm2", d.ips[0], 20*time.Second)
	testutil.Eventually(t, 10*time.Second, "the distributed interfaces ACTIVE once wired", func() (bool, string) {
		ps := d.routerPorts(t, "network:router_interface_distributed")
		for _, p := range ps {
			if p["status"] != "ACTIVE" {
				return false, fmt.Sprint(ps)
			}
		}
		return len(ps) == 4, fmt.Sprint(ps) // an IPv4 and an IPv6 interface on each network
	})
	there := probe(t, lab, "network-1", "bridge", "probe", d.ips[0], d.ips[1])
	back := probe(t, lab, "network-1", "bridge", "probe2", d.ips[1], d.ips[0])
	out := probe(t, lab, "network-1", "bridge", "probe3", d.ips[1], "203.0.113.1")
	if err := lab.Run("vm1", "ping", "-c", "20", "-i", "0.01", "-W", "1", d.ips[1]); err != nil {
		t.Fatalf("vm1 to vm2: %v", err)
	}
	pingUntil(t, lab, "vm2", "203.0.113.1", 20*time.Second) // through SNAT on network-1
	if n, m, o := there(), back(), out(); n != 0 || m != 0 || o < 1 {
		t.Fatalf("network-1 saw %d packets from vm1 to vm2, %d back, and %d to upstream by SNAT (want 0, 0, some)", n, m, o)
	}
	// IPv6: east-west on the hosts as well (each host advertising the
	// prefixes to its own VMs), and out through the SNAT part, unNATed.
	testutil.Eventually(t, 20*time.Second, "vm1 reaches vm2 over IPv6", func() (bool, string) {
		out, err := lab.Output("vm1", "ping", "-c", "1", "-W", "1", d.ips6[1])
		return err == nil, out
	})
	pingUntil(t, lab, "vm2", "2001:db8:100::1", 20*time.Second)
	// The router's frames leave compute-1 with its DVR MAC: no bridge
	// along the way (compute-2's, or the physical network's) learned a
	// router MAC anywhere but on its own host's router port.
	macs := []string{}
	for _, p := range d.routerPorts(t, "network:router_interface_distributed") {
		macs = append(macs, p["mac_address"].(string))
	}
	fdbs, _ := lab.Output("compute-2", "bridge", "fdb", "show")
	phys, _ := lab.Output("ul", "bridge", "fdb", "show", "br", "phys")
	for _, mac := range macs {
		for _, line := range strings.Split(fdbs, "\n") {
			if strings.HasPrefix(line, mac) && !strings.Contains(line, "dev tap") {
				t.Fatalf("compute-2 learned router MAC %s off its router's port: %s", mac, line)
			}
		}
		if strings.Contains(phys, mac) {
			t.Fatalf("the physical network learned router MAC %s:\n%s", mac, phys)
		}
	}
	rewrites, _ := lab.Output("compute-1", "nft", "list", "chain", "bridge", "neutrino-dvr", "out")
	if !strings.Contains(rewrites, "ether saddr set fa:16:3f") {
		t.Fatalf("compute-1's DVR rules:\n%s", rewrites)
	}
	// Metering: a label of the router's project counts the traffic with
	// the upstream host where it leaves, on each host: the SNAT part's
	// gateway (network-1) and the floating IPs' link (compute-1).
	label := post(t, url+"/v2.0/metering/metering-labels", "POST", map[string]any{"metering_label": map[string]any{"name": "up",
		"tenant_id": d.project}})["metering_label"].(map[string]any)["id"].(string)
	post(t, url+"/v2.0/metering/metering-label-rules", "POST", map[string]any{"metering_label_rule": map[string]any{
		"metering_label_id": label, "direction": "egress", "remote_ip_prefix": "203.0.113.0/24"}})
	// A floating IP for vm1, served on compute-1 through its own port on
	// the external network.
	fip := post(t, url+"/v2.0/floatingips", "POST", map[string]any{"floatingip": map[string]any{"floating_network_id": d.pub,
		"port_id": d.ports[0]}})["floatingip"].(map[string]any)
	addr := fip["floating_ip_address"].(string)
	testutil.Eventually(t, 10*time.Second, "compute-1's floating IP agent gateway port", func() (bool, string) {
		ps := post(t, url+"/v2.0/ports?device_owner=network:floatingip_agent_gateway", "GET", nil)["ports"].([]any)
		return len(ps) == 1 && ps[0].(map[string]any)["binding:host_id"] == "compute-1", fmt.Sprint(ps)
	})
	pingUntil(t, lab, "upstream", addr, 20*time.Second)
	from := probe(t, lab, "upstream", "ip", "fromfip", addr, "203.0.113.1")
	pingUntil(t, lab, "vm1", "203.0.113.1", 20*time.Second)
	if from() < 1 {
		t.Fatalf("vm1's pings did not reach upstream from its floating IP %s", addr)
	}
	testutil.Eventually(t, 15*time.Second, "both hosts count the label's egress", func() (bool, string) {
		lab.Run("vm1", "ping", "-c", "1", "-W", "1", "203.0.113.1")
		lab.Run("vm2", "ping", "-c", "1", "-W", "1", "203.0.113.1")
		byHost := metered(t, url, d.rid, label, "egress")
		return byHost["network-1"] >= 1 && byHost["compute-1"] >= 1, fmt.Sprint(byHost)
	})
	// compute-1's agent restarted: it takes up the distributed router, its
	// floating IP namespace and the DVR rules as it finds them, without a
	// floating IP ping or an east-west ping lost.
	fipPings, ewPings := make(chan string, 1), make(chan string, 1)
	go func() {
		o, _ := lab.Output("upstream", "ping", "-c", "400", "-i", "0.01", "-W", "1", addr)
		fipPings <- o
	}()
	go func() {
		o, _ := lab.Output("vm1", "ping", "-c", "400", "-i", "0.01", "-W", "1", d.ips[1])
		ewPings <- o
	}()
	time.Sleep(500 * time.Millisecond)
	d.agents["compute-1"].stop()
	d.agents["compute-1"].start(t)
	// (One reply in 400 was once missing when the whole suite loaded both
	// cores, VLAN case; a resync that rebuilt anything would lose many.)
	for what, ch := range map[string]chan string{"the floating IP": fipPings, "vm1 to vm2": ewPings} {
		out := <-ch
		if !strings.Contains(out, "400 packets transmitted, 400 received") && !strings.Contains(out, "400 packets transmitted, 399 received") {
			t.Fatalf("%s lost pings across compute-1's agent restart:\n%s", what, out[max(0, len(out)-300):])
		}
	}
	// The network host off the wire: the floating IP and east-west go on,
	// SNAT does not.
	for _, dev := range []string{"eth0", "phy1"} {
		if err := lab.Run("network-1", "ip", "link", "set", dev, "down"); err != nil {
			t.Fatal(err)
		}
	}
	if err := lab.Run("upstream", "ping", "-c", "5", "-i", "0.1", "-W", "1", addr); err != nil {
		t.Fatalf("floating IP %s with the network host down: %v", addr, err)
	}
	if err := lab.Run("vm1", "ping", "-c", "5", "-i", "0.1", "-W", "1", d.ips[1]); err != nil {
		t.Fatalf("east-west with the network host down: %v", err)
	}
	if err := lab.Run("vm2", "ping", "-c", "2", "-W", "1", "203.0.113.1"); err == nil {
		t.Fatal("vm2 reached upstream by SNAT with the network host down")
	}
}

// TestDVRHASNAT: a distributed router with HA SNAT: its centralized part
// runs on both dvr_snat hosts, one active. When the active instance's
// keepalived is killed outright, and then when the active host goes off
// the wire, SNAT moves to the other (vm2, which has no floating IP, pings
// on through it) while vm1's floating IP, served on its compute host,
// loses not one ping; the host back on the wire leaves one instance with
// the gateway address.
func TestDVRHASNAT(t *testing.T) {
	d := newDVRCloud(t, "vxlan", true)
	url, lab := d.url, d.lab
	states := func() map[string]string {
		out := map[string]string{}
		for _, a := range post(t, url+"/v2.0/routers/"+d.rid+"/l3-agents", "GET", nil)["agents"].([]any) {
			a := a.(map[string]any)
			out[fmt.Sprint(a["ha_state"])] = a["host"].(string)
		}
		return out
	}
	var active string
	testutil.Eventually(t, 20*time.Second, "one active SNAT instance, one standby", func() (bool, string) {
		st := states()
		active = st["active"]
		return len(st) == 2 && active != "" && st["standby"] != "", fmt.Sprint(st)
	})
	fip := post(t, url+"/v2.0/floatingips", "POST", map[string]any{"floatingip": map[string]any{"floating_network_id": d.pub,
		"port_id": d.ports[0]}})["floatingip"].(map[string]any)
	addr := fip["floating_ip_address"].(string)
	pingUntil(t, lab, "upstream", addr, 20*time.Second)
	pingUntil(t, lab, "vm2", "203.0.113.1", 20*time.Second)
	pingUntil(t, lab, "vm1", d.ips[1], 20*time.Second)
	fipPings := make(chan string, 1)
	go func() {
		out, _ := lab.Output("upstream", "ping", "-c", "300", "-i", "0.01", "-W", "1", addr)
		fipPings <- out
	}()
	lost, resumed := testutil.PingLoss(t, func(args ...string) string { o, _ := lab.Output("vm2", args...); return o }, "203.0.113.1", func() {
		pids := router.HAPIDs(filepath.Join(l3.HAStateRoot, lab.Name(active)+"-s"+d.rid[:8]))
		if len(pids) != 2 {
			t.Fatalf("keepalived of the SNAT instance on %s: processes %v", active, pids)
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	out := <-fipPings
	if !strings.Contains(out, "300 packets transmitted, 300 received") {
		t.Fatalf("vm1's floating IP was interrupted by the SNAT failover:\n%s", out)
	}
	if !resumed {
		t.Fatal("vm2's pings through SNAT did not resume after the failover")
	}
	t.Logf("SNAT failover (crash of the active instance): %v without replies; the floating IP lost none", lost)
	testutil.Eventually(t, 10*time.Second, "the other instance active, the killed one back as standby", func() (bool, string) {
		st := states()
		return st["active"] != "" && st["active"] != active && st["standby"] == active, fmt.Sprint(st)
	})
	pingUntil(t, lab, "vm2", "203.0.113.1", 5*time.Second)

	// The active SNAT host off the wire (its links down): the other takes
	// over again, the floating IP goes on untouched; back on the wire, one
	// instance holds the gateway address, not two.
	active = states()["active"]
	go func() {
		out, _ := lab.Output("upstream", "ping", "-c", "300", "-i", "0.01", "-W", "1", addr)
		fipPings <- out
	}()
	lost, resumed = testutil.PingLoss(t, func(args ...string) string { o, _ := lab.Output("vm2", args...); return o }, "203.0.113.1", func() {
		for _, dev := range []string{"eth0", "phy1"} {
			if err := lab.Run(active, "ip", "link", "set", dev, "down"); err != nil {
				t.Fatal(err)
			}
		}
	})
	if out := <-fipPings; !strings.Contains(out, "300 packets transmitted, 300 received") {
		t.Fatalf("vm1's floating IP was interrupted by the loss of the SNAT host:\n%s", out)
	}
	if !resumed {
		t.Fatal("vm2's pings through SNAT did not resume after the SNAT host went off the wire")
	}
	t.Logf("SNAT host off the wire: %v without replies", lost)
	for _, dev := range []string{"eth0", "phy1"} {
		if err := lab.Run(active, "ip", "link", "set", dev, "up"); err != nil {
			t.Fatal(err)
		}
	}
	holders := func() []string {
		var out []string
		for _, h := range []string{"network-1", "network-2"} {
			a, _ := lab.Output(h, "ip", "netns", "exec", lab.Name(h)+"-s"+d.rid[:8], "ip", "-4", "-br", "addr")
			if strings.Contains(a, d.gwIP+"/") {
				out = append(out, h)
			}
		}
		return out
	}
	testutil.Eventually(t, 10*time.Second, "one SNAT instance holds the gateway address once the host is back", func() (bool, string) {
		h := holders()
		return len(h) == 1, fmt.Sprint(h)
	})
	pingUntil(t, lab, "vm2", "203.0.113.1", 10*time.Second)
}

// BenchmarkDVR: east-west between vm1 (compute-1) and vm2 (compute-2) on
// two subnets of one router, distributed (routed on the sending host,
// straight to the other) against centralized on the network host (the
// same router migrated, on the same hosts): round trip (100 pings 10 ms
// apart, mean) and throughput (iperf3, one stream, 5 s). And, on the
// distributed router, the time from the POST of a floating IP for vm1 to
// the upstream host's first echo reply from it (10 runs, pings 10 ms
// apart). Root, iperf3.
func BenchmarkDVR(b *testing.B) {
	d := newDVRCloud(b, "vxlan", false, "iperf3")
	url, lab := d.url, d.lab
	pingUntil(b, lab, "vm1", d.ips[1], 20*time.Second)
	rtt := func() float64 {
		out, err := lab.Output("vm1", "ping", "-q", "-c", "100", "-i", "0.01", "-W", "1", d.ips[1])
		m := regexp.MustCompile(`= [\d.]+/([\d.]+)/`).FindStringSubmatch(out)
		if err != nil || m == nil {
			b.Fatalf("ping: %v\n%s", err, out)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	gbps := func() float64 {
		if err := lab.Run("vm2", "iperf3", "-s", "-D", "-1"); err != nil {
			b.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		out, err := lab.Output("vm1", "iperf3", "-c", d.ips[1], "-t", "5", "-J")
		var res struct {
			End struct {
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
		}
		if err != nil || json.Unmarshal([]byte(out), &res) != nil {
			b.Fatalf("iperf3: %v\n%s", err, out)
		}
		return res.End.SumReceived.BitsPerSecond / 1e9
	}
	set := func(body map[string]any) {
		post(b, url+"/v2.0/routers/"+d.rid, "PUT", map[string]any{"router": body})
	}
	for i := 0; i < b.N; i++ {
		b.ReportMetric(rtt()*1000, "dvr-rtt-µs")
		b.ReportMetric(gbps(), "dvr-Gbit/s")
		var took []time.Duration
		for k := 0; k < 10; k++ {
			start := time.Now()
			fip := post(b, url+"/v2.0/floatingips", "POST", map[string]any{"floatingip": map[string]any{"floating_network_id": d.pub,
				"port_id": d.ports[0]}})["floatingip"].(map[string]any)
			out, _ := lab.Output("upstream", "ping", "-c", "1", "-i", "0.01", "-w", "10", fip["floating_ip_address"].(string))
			if !regexp.MustCompile(`[1-9]\d* received`).MatchString(out) {
				b.Fatalf("no reply from the floating IP:\n%s", out)
			}
			took = append(took, time.Since(start))
			post(b, url+"/v2.0/floatingips/"+fip["id"].(string), "DELETE", nil)
		}
		b.Logf("floating IP to first reply: %v", took)
		testutil.ReportP50Max(b, "fip-reply", took)
		// The same router, centralized on network-1.
		set(map[string]any{"admin_state_up": false})
		set(map[string]any{"distributed": false})
		set(map[string]any{"admin_state_up": true})
		pingUntil(b, lab, "vm1", d.ips[1], 20*time.Second)
		b.ReportMetric(rtt()*1000, "central-rtt-µs")
		b.ReportMetric(gbps(), "central-Gbit/s")
		set(map[string]any{"admin_state_up": false})
		set(map[string]any{"distributed": true})
		set(map[string]any{"admin_state_up": true})
		pingUntil(b, lab, "vm1", d.ips[1], 20*time.Second)
	}
}

// BenchmarkDVRHASNATFailover: a distributed router with HA SNAT on two
// dvr_snat hosts; vm2 (no floating IP) pings the upstream host through
// SNAT every 10 ms while the active SNAT instance stops in order (the
// router removed from its L3 agent) or crashes (its keepalived and VRRP
// process SIGKILLed); ten of each, the instance back as a standby in
// between. Meanwhile the upstream host pings vm1's floating IP (on its
// compute host) every 10 ms: its losses are reported too (the issue wants
// none).
func BenchmarkDVRHASNATFailover(b *testing.B) {
	d := newDVRCloud(b, "vxlan", true)
	url, lab := d.url, d.lab
	fip := post(b, url+"/v2.0/floatingips", "POST", map[string]any{"floatingip": map[string]any{"floating_network_id": d.pub,
		"port_id": d.ports[0]}})["floatingip"].(map[string]any)
	addr := fip["floating_ip_address"].(string)
	pingUntil(b, lab, "upstream", addr, 20*time.Second)
	pingUntil(b, lab, "vm2", "203.0.113.1", 20*time.Second)
	// active waits for one active instance and one standby.
	active := func() string {
		var host string
		testutil.Eventually(b, 20*time.Second, "one active SNAT instance, one standby", func() (bool, string) {
			st := map[string]string{}
			for _, a := range post(b, url+"/v2.0/routers/"+d.rid+"/l3-agents", "GET", nil)["agents"].([]any) {
				a := a.(map[string]any)
				st[fmt.Sprint(a["ha_state"])] = a["host"].(string)
			}
			host = st["active"]
			return len(st) == 2 && host != "" && st["standby"] != "", fmt.Sprint(st)
		})
		return host
	}
	agentOf := func(host string) string {
		for _, a := range post(b, url+"/v2.0/agents?agent_type=L3+agent&host="+host, "GET", nil)["agents"].([]any) {
			return a.(map[string]any)["id"].(string)
		}
		b.Fatalf("no L3 agent on %s", host)
		return ""
	}
	fipLost := 0
	failover := func(fail func()) time.Duration {
		fipPings := make(chan string, 1)
		go func() {
			out, _ := lab.Output("upstream", "ping", "-c", "300", "-i", "0.01", "-W", "1", addr)
			fipPings <- out
		}()
		lost, ok := testutil.PingLoss(b, func(args ...string) string { o, _ := lab.Output("vm2", args...); return o }, "203.0.113.1", fail)
		if !ok {
			b.Fatal("vm2's pings through SNAT did not resume after the failover")
		}
		m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`).FindStringSubmatch(<-fipPings)
		if m == nil {
			b.Fatal("no ping statistics for the floating IP")
		}
		sent, _ := strconv.Atoi(m[1])
		got, _ := strconv.Atoi(m[2])
		fipLost = max(fipLost, sent-got)
		return lost
	}
	for n := 0; n < b.N; n++ {
		var orderly, crash []time.Duration
		for i := 0; i < 10; i++ {
			a := active()
			orderly = append(orderly, failover(func() {
				post(b, url+"/v2.0/agents/"+agentOf(a)+"/l3-routers/"+d.rid, "DELETE", nil)
			}))
			post(b, url+"/v2.0/agents/"+agentOf(a)+"/l3-routers", "POST", map[string]any{"router_id": d.rid})
			a = active()
			crash = append(crash, failover(func() {
				for _, pid := range router.HAPIDs(filepath.Join(l3.HAStateRoot, lab.Name(a)+"-s"+d.rid[:8])) {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}))
		}
		b.Logf("orderly: %v; crash: %v", orderly, crash)
		testutil.ReportP50Max(b, "orderly", orderly)
		testutil.ReportP50Max(b, "crash", crash)
		b.ReportMetric(float64(fipLost), "fip-lost-max")
	}
}
