package agent

import (
	"fmt"
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
	"neutrino/internal/testutil"
)

// TestHARouterThroughAPI: an HA router made through the API runs on both
// network hosts' L3 agents; one instance is active (l3-agents says which)
// and a VM reaches the upstream host through it by SNAT. When the active
// instance's keepalived is killed outright, that instance is fenced (the
// gateway address leaves it at once), the other takes over and reports
// active, the router's ports follow it, the VM's pings go on, and the
// killed instance comes back as standby.
func TestHARouterThroughAPI(t *testing.T) {
	url, lab := testCloud(t, "ping", "nft", "busybox", "keepalived")
	startAgentsL3(t, url, lab, []string{"network-1", "network-2", "compute-1"}, "", "network-1", "network-2")
	// keepalived outlives agents by design: the test ends its own.
	t.Cleanup(func() {
		dirs, _ := filepath.Glob(filepath.Join(l3.HAStateRoot, lab.Prefix+"-*"))
		for _, d := range dirs {
			router.KillHA(d)
			os.RemoveAll(d)
		}
	})
	upstream(t, lab, []string{"ip", "addr", "add", "203.0.113.1/24", "dev", "eth0"}, []string{"ip", "link", "set", "eth0", "up"})
	pub := post(t, url+"/v2.0/networks", "POST", map[string]any{"network": map[string]any{"name": "public", "router:external": true,
		"provider:network_type": "flat", "provider:physical_network": "physnet1"}})["network"].(map[string]any)
	post(t, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": pub["id"], "ip_version": 4,
		"cidr": "203.0.113.0/24", "gateway_ip": "203.0.113.1", "enable_dhcp": false,
		"allocation_pools": []any{map[string]any{"start": "203.0.113.100", "end": "203.0.113.250"}}}})
	rt := post(t, url+"/v2.0/routers", "POST", map[string]any{"router": map[string]any{"name": "r1", "ha": true,
		"external_gateway_info": map[string]any{"network_id": pub["id"]}}})["router"].(map[string]any)
	rid := rt["id"].(string)
	gwIP := rt["external_gateway_info"].(map[string]any)["external_fixed_ips"].([]any)[0].(map[string]any)["ip_address"].(string)
	n := post(t, url+"/v2.0/networks", "POST", map[string]any{"network": map[string]any{}})["network"].(map[string]any)
	sn := post(t, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": n["id"], "ip_version": 4,
		"cidr": "10.63.0.0/24", "enable_dhcp": false}})["subnet"].(map[string]any)
	post(t, url+"/v2.0/routers/"+rid+"/add_router_interface", "PUT", map[string]any{"subnet_id": sn["id"]})
	p := post(t, url+"/v2.0/ports", "POST", map[string]any{"port": map[string]any{"network_id": n["id"], "binding:host_id": "compute-1"}})["port"].(map[string]any)
	ip := p["fixed_ips"].([]any)[0].(map[string]any)["ip_address"].(string)
	if err := lab.VM("vm1", "compute-1", dataplane.TapName(p["id"].(string)), p["mac_address"].(string), int(n["mtu"].(float64)), ip+"/24"); err != nil {
		t.Fatal(err)
	}
	if err := lab.Run("vm1", "ip", "route", "add", "default", "via", sn["gateway_ip"].(string)); err != nil {
		t.Fatal(err)
	}
	// active is the host of the instance l3-agents reports active, when
	// exactly one is and the other standby.
	active := func() string {
		var host string
		testutil.Eventually(t, 20*time.Second, "one active instance, one standby", func() (bool, string) {
			agents := post(t, url+"/v2.0/routers/"+rid+"/l3-agents", "GET", nil)["agents"].([]any)
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
	ns := func(host string) string { return lab.Name(host) + "-r" + rid[:8] }
	holdsGateway := func(host string) bool {
		out, _ := lab.Output(host, "ip", "netns", "exec", ns(host), "ip", "-br", "addr")
		return strings.Contains(out, gwIP+"/")
	}
	if !holdsGateway(first) {
		t.Fatalf("the active instance on %s lacks the gateway address", first)
	}
	other := map[string]string{"network-1": "network-2", "network-2": "network-1"}[first]
	if holdsGateway(other) {
		t.Fatalf("the standby on %s holds the gateway address too", other)
	}

	// Crash: the active keepalived is killed outright while the VM pings
	// the upstream host every 10 ms.
	dir := filepath.Join(l3.HAStateRoot, ns(first))
	out := make(chan string, 1)
	go func() {
		o, _ := lab.Output("vm1", "ping", "-c", "600", "-i", "0.01", "-W", "1", "203.0.113.1")
		out <- o
	}()
	time.Sleep(time.Second)
	for _, f := range []string{"vrrp.pid", "keepalived.pid"} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		} else {
			t.Fatalf("no %s for the active instance in %s", f, dir)
		}
	}
	testutil.Eventually(t, 2*time.Second, "the killed instance fenced", func() (bool, string) { return !holdsGateway(first), "" })
	o := <-out
	m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`).FindStringSubmatch(o)
	if m == nil {
		t.Fatalf("ping said:\n%s", o)
	}
	sent, _ := strconv.Atoi(m[1])
	got, _ := strconv.Atoi(m[2])
	t.Logf("crash of the active instance: %d of %d echoes lost (%v)", sent-got, sent, time.Duration(sent-got)*10*time.Millisecond)
	if now := active(); now != other {
		t.Fatalf("after the crash the active instance is on %s, not %s", now, other)
	}
	pingUntil(t, lab, "vm1", "203.0.113.1", 5*time.Second)
	if got == 0 || !strings.Contains(o[strings.LastIndex(o, "icmp_seq="):], "ttl=") {
		t.Fatalf("the VM's pings did not resume through the new active instance:\n%s", o[max(0, len(o)-600):])
	}
	if holdsGateway(first) {
		t.Fatal("the killed instance holds the gateway address again")
	}
	pingUntil(t, lab, "vm1", gw6, 5*time.Second)
}
