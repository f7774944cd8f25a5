package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"neutrino/internal/api"
	"neutrino/internal/dataplane"
	"neutrino/internal/dataplane/router"
	"neutrino/internal/identity"
	"neutrino/internal/netlab"
	"neutrino/internal/services"
	"neutrino/internal/services/servicetest"
	"neutrino/internal/testutil"
)

func post(t testing.TB, url, method string, body any) map[string]any {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, url, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	raw, _ := io.ReadAll(r.Body)
	if r.StatusCode >= 300 {
		t.Fatalf("%s %s: %d %s", method, url, r.StatusCode, raw)
	}
	var out map[string]any
	json.Unmarshal(raw, &out)
	return out
}

// testCloud is a real API server (noauth, SQLite) and a namespace lab, both
// removed when the test ends; it skips unless root and the tools exist.
func testCloud(t testing.TB, tools ...string) (string, *netlab.Lab) {
	t.Helper()
	testutil.RequireDataplane(t, append([]string{"ip", "ping"}, tools...)...)
	reg := servicetest.New(t, services.Config{Quotas: map[string]int{"port": -1}}).Reg
	a := api.New(reg, identity.NoAuth{}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	// The key-manager API on the same server: its paths (/v1/...) are
	// none of the network API's.
	mux := http.NewServeMux()
	mux.Handle("/", a)
	mux.Handle("/v1/", a.KeyManager())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	lab, err := netlab.New("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lab.Close)
	return srv.URL, lab
}

// startAgents adds each host to the lab (VTEP 10.250.0.N, interface phy1
// on physical network physnet1) and runs an agent for it until the test
// ends; dhcpHost also serves DHCP.
func startAgents(t testing.TB, url string, lab *netlab.Lab, hosts []string, dhcpHost string) {
	t.Helper()
	startAgentsL3(t, url, lab, hosts, dhcpHost)
}

// startAgentsL3 is startAgents with l3Hosts also hosting routers.
func startAgentsL3(t testing.TB, url string, lab *netlab.Lab, hosts []string, dhcpHost string, l3Hosts ...string) {
	t.Helper()
	startAgentsWith(t, url, lab, hosts, func(c *Config) {
		c.DHCP, c.L3 = c.Host == dhcpHost, slices.Contains(l3Hosts, c.Host)
	})
}

// startAgentsWith is startAgents with each host's configuration as set
// sets it; it returns each host's agent, which the test may restart.
func startAgentsWith(t testing.TB, url string, lab *netlab.Lab, hosts []string, set func(c *Config)) map[string]*runningAgent {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(agentLog(), nil))
	out := map[string]*runningAgent{}
	for i, h := range hosts {
		vtep := "10.250.0." + string(rune('1'+i))
		if err := lab.Host(h, vtep); err != nil {
			t.Fatal(err)
		}
		if err := lab.Physical(h, "phy1"); err != nil {
			t.Fatal(err)
		}
		cfg := Config{Host: h, Server: url, NetNS: lab.Name(h), VTEP: net.ParseIP(vtep), Interval: time.Second,
			Log: quiet, Physnets: map[string]string{"physnet1": "phy1"}}
		set(&cfg)
		ra := &runningAgent{cfg: cfg}
		ra.start(t)
		t.Cleanup(ra.stop)
		out[h] = ra
	}
	return out
}

// runningAgent is an agent a test runs, stops and starts again.
type runningAgent struct {
	cfg    Config
	a      *Agent
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *runningAgent) start(t testing.TB) {
	t.Helper()
	a, err := New(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.a, r.cancel, r.done = a, cancel, make(chan struct{})
	go func() { a.Run(ctx); close(r.done) }()
}

// stop ends the agent as its process ending would (what it made in the
// kernel stays); stopping a stopped agent does nothing.
func (r *runningAgent) stop() {
	if r.a == nil {
		return
	}
	r.cancel()
	<-r.done
	r.a.Close()
	r.a = nil
}

// TestAgentsWireVXLAN: ports created and bound through the API become
// working interfaces: two agents on two hosts wire their VXLAN network,
// the VMs ping each other, and the ports turn ACTIVE.
func TestAgentsWireVXLAN(t *testing.T) {
	url, lab := testCloud(t, "ping")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	hostNames := []string{"compute-1", "compute-2"}
	type running struct {
		a      *Agent
		cancel context.CancelFunc
		done   chan struct{}
		synced chan int64 // the revisions its syncs reached
	}
	start := func(i int) *running {
		synced := make(chan int64, 100)
		a, err := New(Config{Host: hostNames[i], Server: url, NetNS: lab.Name(hostNames[i]),
			VTEP: net.ParseIP("10.250.0." + string(rune('1'+i))), Interval: time.Second, Log: quiet,
			Synced: func(rev int64, _ int) {
				select {
				case synced <- rev:
				default:
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		r := &running{a: a, cancel: cancel, done: make(chan struct{}), synced: synced}
		go func() { a.Run(ctx); a.Close(); close(r.done) }()
		return r
	}
	var agents []*running
	for i, h := range hostNames {
		if err := lab.Host(h, "10.250.0."+string(rune('1'+i))); err != nil {
			t.Fatal(err)
		}
		r := start(i)
		defer r.cancel()
		agents = append(agents, r)
	}

	n := post(t, url+"/v2.0/networks", "POST", map[string]any{"network": map[string]any{"name": "n1"}})["network"].(map[string]any)
	post(t, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": n["id"], "ip_version": 4, "cidr": "10.0.0.0/24"}})
	type vm struct{ name, host, id, mac, ip string }
	var vms []vm
	for i, h := range []string{"compute-1", "compute-2"} {
		p := post(t, url+"/v2.0/ports", "POST", map[string]any{"port": map[string]any{"network_id": n["id"], "binding:host_id": h}})["port"].(map[string]any)
		ip := p["fixed_ips"].([]any)[0].(map[string]any)["ip_address"].(string)
		v := vm{"vm" + string(rune('1'+i)), h, p["id"].(string), p["mac_address"].(string), ip}
		if err := lab.VM(v.name, v.host, dataplane.TapName(v.id), v.mac, int(n["mtu"].(float64)), v.ip+"/24"); err != nil {
			t.Fatal(err)
		}
		vms = append(vms, v)
	}
	// The agents saw the ports through the change log; the VM devices
	// appeared after, and the agents wire them on the link event alone (no
	// API change follows; the periodic reconcile would take 30 s).
	testutil.Eventually(t, 10*time.Second, "vm1 reaches vm2", func() (bool, string) {
		if err := lab.Run("vm1", "ping", "-c", "1", "-W", "1", vms[1].ip); err != nil {
			out, _ := lab.Output("compute-1", "bridge", "fdb", "show")
			return false, fmt.Sprintf("%v; fdb on compute-1:\n%s", err, out)
		}
		return true, ""
	})
	testutil.Eventually(t, 10*time.Second, "port ACTIVE", func() (bool, string) {
		p := post(t, url+"/v2.0/ports/"+vms[0].id, "GET", nil)["port"].(map[string]any)
		return p["status"] == "ACTIVE", fmt.Sprint(p["status"])
	})
	// The VM is unplugged and plugged in again (a new device under the
	// same name): the agent wires the new device, though the port it
	// wired before is unchanged.
	tap := dataplane.TapName(vms[0].id)
	if err := lab.Run("compute-1", "ip", "link", "del", tap); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "link", "add", tap, "netns", lab.Name("compute-1"), "type", "veth",
		"peer", "name", "eth0", "netns", lab.Name("vm1")).CombinedOutput(); err != nil {
		t.Fatalf("plugging vm1 again: %v %s", err, out)
	}
	for _, c := range [][]string{{"ip", "link", "set", "eth0", "address", vms[0].mac, "mtu", fmt.Sprint(n["mtu"]), "up"},
		{"ip", "addr", "add", vms[0].ip + "/24", "dev", "eth0"}} {
		if err := lab.Run("vm1", c...); err != nil {
			t.Fatal(err)
		}
	}
	pingUntil(t, lab, "vm1", vms[1].ip, 10*time.Second)

	// Restart compute-1's agent while vm1 pings vm2 continuously: the kernel
	// keeps forwarding (nothing is flushed), and a network deleted while the
	// agent was away is removed when it comes back.
	agents[0].cancel()
	<-agents[0].done
	stray := post(t, url+"/v2.0/networks", "POST", map[string]any{"network": map[string]any{"name": "stray"}})["network"].(map[string]any)
	strayNet := dataplane.Network{ID: stray["id"].(string), Type: "vxlan", SegmentationID: int(stray["provider:segmentation_id"].(float64)), MTU: 1450}
	// Left over from before: made in compute-1 (the stopped agent's host
	// handle is closed, and would refuse).
	left, err := dataplane.OpenHost(lab.Name("compute-1"), net.ParseIP("10.250.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	err = left.EnsureNetwork(strayNet)
	left.Close()
	if err != nil {
		t.Fatal(err)
	}
	if agents[0].a.host.EnsureNetwork(strayNet) == nil {
		t.Fatal("a closed host still wires networks (in which namespace?)")
	}
	bridgeUp := func() bool {
		_, err := lab.Output("compute-1", "ip", "link", "show", dataplane.BridgeName(strayNet.ID))
		return err == nil
	}
	if !bridgeUp() {
		t.Fatal("the stray network's bridge was not made")
	}
	post(t, url+"/v2.0/networks/"+strayNet.ID, "DELETE", nil)
	// vm1 pings for 6 s; the agent starts again 0.3 s in and must have
	// finished its first sync (listed, applied, reported) well before the
	// pings end: no packet may be lost across it.
	pinger := make(chan string, 1)
	go func() {
		out, _ := lab.Output("vm1", "ping", "-c", "120", "-i", "0.05", "-W", "1", vms[1].ip)
		pinger <- out
	}()
	time.Sleep(300 * time.Millisecond)
	again := start(0)
	defer again.cancel()
	select {
	case <-again.synced:
	case out := <-pinger:
		t.Fatalf("the restarted agent did not sync while vm1 pinged:\n%s", out)
	}
	// The stray network went with that sync.
	if bridgeUp() {
		t.Error("a network deleted while the agent was down was not removed by its first sync")
	}
	if out := <-pinger; !strings.Contains(out, " 0% packet loss") {
		t.Fatalf("packets lost across an agent restart:\n%s", out)
	}
}

// dhcpLease runs busybox udhcpc in vm until it is bound (the DHCP server
// may still be starting) and returns the lease as the client saw it:
// "ip=… subnet=… router=… mtu=… dns=… domain=…". Nothing nudges the
// agents: they must act on the changes they were sent.
func dhcpLease(t *testing.T, url string, lab *netlab.Lab, vm, networkID string) string {
	t.Helper()
	dir := t.TempDir()
	script, out := filepath.Join(dir, "udhcpc.sh"), filepath.Join(dir, "lease")
	os.WriteFile(script, []byte("#!/bin/sh\necho \"$1 ip=$ip subnet=$subnet router=$router mtu=$mtu dns=$dns domain=$domain\" >> "+out+"\n"), 0o755)
	deadline := time.Now().Add(30 * time.Second)
	for {
		lab.Run(vm, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "2", "-T", "1", "-O", "mtu", "-s", script)
		got, _ := os.ReadFile(out)
		for _, line := range strings.Split(string(got), "\n") {
			if strings.HasPrefix(line, "bound ") {
				return strings.TrimPrefix(line, "bound ")
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s got no lease; client said:\n%s", vm, got)
		}
	}
}

// dhclient runs ISC dhclient (-4 or -6, with args) in vm, with a lease
// file of its own, until it is bound (nothing nudges the agents) and
// returns what its script saw: the reason and the lease's values.
// killByArg ends the processes whose command line holds arg (a directory
// of the calling test's own), by pid.
func killByArg(arg string) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(b), arg) {
			syscall.Kill(pid, syscall.SIGTERM)
		}
	}
}

func dhclient(t *testing.T, url string, lab *netlab.Lab, vm, networkID string, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	script, conf, out := filepath.Join(dir, "script"), filepath.Join(dir, "dhclient.conf"), filepath.Join(dir, "out")
	v4 := "ip=$new_ip_address mask=$new_subnet_mask routers=$new_routers mtu=$new_interface_mtu dns=$new_domain_name_servers" +
		" domain=$new_domain_name routes=$new_rfc3442_classless_static_routes"
	if args[0] == "-6" {
		v4 = "ip6=$new_ip6_address/$new_ip6_prefixlen dns=$new_dhcp6_name_servers search=$new_dhcp6_domain_search"
	}
	os.WriteFile(script, []byte("#!/bin/sh\necho \"$reason "+v4+"\" >> "+out+"\n"), 0o755)
	// Option 121 is not asked for by default.
	os.WriteFile(conf, []byte("timeout 4;\nretry 1;\noption rfc3442-classless-static-routes code 121 = array of unsigned integer 8;\n"+
		"request subnet-mask, routers, domain-name, domain-name-servers, interface-mtu, rfc3442-classless-static-routes,"+
		" dhcp6.name-servers, dhcp6.domain-search;\n"), 0o644)
	pidFile := filepath.Join(dir, "pid")
	// Bound, dhclient goes on in the background, and may write its pid file
	// only after the command returned: end every client this test started
	// (by pid: its own files' directory is on the command line).
	t.Cleanup(func() { killByArg(dir) })
	deadline := time.Now().Add(40 * time.Second)
	for {
		cmd := append([]string{"timeout", "8", "dhclient"}, args...)
		cmd = append(cmd, "-1", "-cf", conf, "-sf", script, "-lf", filepath.Join(dir, "lease"), "-pf", pidFile, "eth0")
		lab.Run(vm, cmd...)
		killByArg(dir)
		os.Remove(pidFile)
		got, _ := os.ReadFile(out)
		for _, line := range strings.Split(string(got), "\n") {
			// ISC dhclient reports an information-request's answer as RENEW6.
			for _, r := range []string{"BOUND ", "BOUND6 ", "RENEW6 "} {
				if strings.HasPrefix(line, r) {
					return line
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("dhclient %v in %s: no lease; script saw:\n%s", args, vm, got)
		}
	}
}

// pingUntil pings from vm until to answers or the time is up.
func pingUntil(t testing.TB, lab *netlab.Lab, vm, to string, within time.Duration) {
	t.Helper()
	testutil.Eventually(t, within, vm+" reaches "+to, func() (bool, string) {
		if err := lab.Run(vm, "ping", "-c", "1", "-W", "1", to); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
}

// upstream makes the upstream host, a namespace on the physical network
// (its eth0), and runs setup there.
func upstream(t testing.TB, lab *netlab.Lab, setup ...[]string) {
	t.Helper()
	if _, err := lab.NS("upstream"); err != nil {
		t.Fatal(err)
	}
	if err := lab.Physical("upstream", "eth0"); err != nil {
		t.Fatal(err)
	}
	for _, c := range setup {
		if err := lab.Run("upstream", c...); err != nil {
			t.Fatal(err)
		}
	}
}

// nftPackets is the packet count of the first counter in nft's listing
// (-1 when there is none: an empty listing proves nothing).
func nftPackets(listing string) int {
	_, rest, ok := strings.Cut(listing, "packets ")
	if !ok {
		return -1
	}
	n, err := strconv.Atoi(strings.Fields(rest)[0])
	if err != nil {
		return -1
	}
	return n
}

// TestProviderNetworks: VLAN and flat networks made through the API on a
// physical network: VMs on two hosts get DHCP leases from a third and ping
// each other; two VLANs and the flat network, all with the same subnet,
// do not reach each other.
func TestProviderNetworks(t *testing.T) {
	url, lab := testCloud(t, "busybox", "ping")
	startAgents(t, url, lab, []string{"network-1", "compute-1", "compute-2"}, "network-1")
	type vm struct {
		name, host, net, ip string
	}
	nets := map[string]string{}
	for _, n := range []struct {
		name, typ, cidr, start, end string
		vid                         int
	}{{"v100", "vlan", "10.6.0.0/24", "10.6.0.10", "10.6.0.99", 100}, {"v101", "vlan", "10.6.0.0/24", "10.6.0.110", "10.6.0.199", 101},
		{"flat", "flat", "10.6.0.0/24", "10.6.0.200", "10.6.0.250", 0}} {
		body := map[string]any{"name": n.name, "provider:network_type": n.typ, "provider:physical_network": "physnet1"}
		if n.vid != 0 {
			body["provider:segmentation_id"] = n.vid
		}
		o := post(t, url+"/v2.0/networks", "POST", map[string]any{"network": body})["network"].(map[string]any)
		if o["mtu"].(float64) != 1500 {
			t.Fatalf("%s mtu %v", n.name, o["mtu"])
		}
		nets[n.name] = o["id"].(string)
		post(t, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": o["id"], "ip_version": 4,
			"cidr": n.cidr, "allocation_pools": []any{map[string]any{"start": n.start, "end": n.end}}}})
	}
	vms := []*vm{{"vm1", "compute-1", "v100", ""}, {"vm2", "compute-2", "v100", ""}, {"vm3", "compute-2", "v101", ""},
		{"vm4", "compute-1", "flat", ""}, {"vm5", "compute-2", "flat", ""}}
	for _, v := range vms {
		p := post(t, url+"/v2.0/ports", "POST", map[string]any{"port": map[string]any{"network_id": nets[v.net], "binding:host_id": v.host}})["port"].(map[string]any)
		v.ip = p["fixed_ips"].([]any)[0].(map[string]any)["ip_address"].(string)
		if err := lab.VM(v.name, v.host, dataplane.TapName(p["id"].(string)), p["mac_address"].(string), 1500, ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range vms {
		got := dhcpLease(t, url, lab, v.name, nets[v.net])
		if !strings.HasPrefix(got, "ip="+v.ip+" subnet=255.255.255.0 ") || !strings.Contains(got, " mtu=1500 ") {
			t.Fatalf("%s lease %q, want ip=%s mtu=1500", v.name, got, v.ip)
		}
		lab.Run(v.name, "ip", "addr", "add", v.ip+"/24", "dev", "eth0")
	}
	pingUntil(t, lab, "vm1", vms[1].ip, 10*time.Second)
	pingUntil(t, lab, "vm4", vms[4].ip, 10*time.Second)
	for _, c := range [][2]int{{0, 2}, {1, 2}, {0, 4}} {
		if lab.Run(vms[c[0]].name, "ping", "-c", "1", "-W", "1", vms[c[1]].ip) == nil {
			t.Errorf("%s (%s) reached %s (%s)", vms[c[0]].name, vms[c[0]].net, vms[c[1]].name, vms[c[1]].net)
		}
	}
}

// TestDHCPv6: ISC dhclient -6 on a VM gets its dhcpv6-stateful address as
// the API reported it, with the DNS servers of the port's subnets and an
// IPv6 extra option; an information-request (stateless, DUID-LL) gets
// the options and no address.
func TestDHCPv6(t *testing.T) {
	url, lab := testCloud(t, "dhclient")
	startAgents(t, url, lab, []string{"network-1", "compute-1"}, "network-1")
	n := post(t, url+"/v2.0/networks", "POST", map[string]any{"network": map[string]any{"name": "v6"}})["network"].(map[string]any)
	nid := n["id"].(string)
	post(t, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": nid, "ip_version": 6,
		"cidr": "2001:db8:61::/64", "ipv6_address_mode": "dhcpv6-stateful", "dns_nameservers": []any{"2001:db8:61::53"}}})
	post(t, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": nid, "ip_version": 6,
		"cidr": "2001:db8:62::/64", "ipv6_address_mode": "dhcpv6-stateless", "dns_nameservers": []any{"2001:db8:62::53"}}})
	p := post(t, url+"/v2.0/ports", "POST", map[string]any{"port": map[string]any{"network_id": nid, "binding:host_id": "compute-1",
		"extra_dhcp_opts": []any{map[string]any{"opt_name": "domain-search", "opt_value": "v6.example", "ip_version": 6}}}})["port"].(map[string]any)
	var stateful string
	for _, f := range p["fixed_ips"].([]any) {
		if ip := f.(map[string]any)["ip_address"].(string); strings.HasPrefix(ip, "2001:db8:61:") {
			stateful = ip
		}
	}
	if stateful == "" || len(p["fixed_ips"].([]any)) != 2 {
		t.Fatalf("port addresses: %v", p["fixed_ips"])
	}
	if err := lab.VM("vm1", "compute-1", dataplane.TapName(p["id"].(string)), p["mac_address"].(string), 1450, ""); err != nil {
		t.Fatal(err)
	}
	// A VM runs its DHCPv6 client once its link-local address is usable.
	for i := 0; ; i++ {
		out, _ := lab.Output("vm1", "ip", "-6", "addr", "show", "dev", "eth0", "scope", "link")
		if strings.Contains(out, "fe80") && !strings.Contains(out, "tentative") {
			break
		}
		if i > 100 {
			t.Fatalf("no link-local address: %s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	got := dhclient(t, url, lab, "vm1", nid, "-6")
	for _, want := range []string{"BOUND6 ip6=" + stateful + "/128", "2001:db8:61::53", "2001:db8:62::53", "search=v6.example"} {
		if !strings.Contains(got, want) {
			t.Fatalf("stateful: %q, want %q", got, want)
		}
	}
	got = dhclient(t, url, lab, "vm1", nid, "-6", "-S", "-D", "LL")
	for _, want := range []string{"RENEW6 ip6=/ ", "2001:db8:62::53", "search=v6.example"} {
		if !strings.Contains(got, want) {
			t.Fatalf("stateless: %q, want %q", got, want)
		}
	}
}

// TestDHCPLease: a host serving DHCP answers a real client (busybox udhcpc)
// on another host with the port's address, router, MTU, DNS and an extra
// option.
func TestDHCPLease(t *testing.T) {
	url, lab := testCloud(t, "busybox", "dhclient")
	startAgents(t, url, lab, []string{"network-1", "compute-1"}, "network-1")
	n := post(t, url+"/v2.0/networks", "POST", map[string]any{"network": map[string]any{"name": "n1"}})["network"].(map[string]any)
	post(t, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": n["id"], "ip_version": 4,
		"cidr": "10.9.0.0/24", "dns_nameservers": []any{"10.9.0.53"},
		"host_routes": []any{map[string]any{"destination": "10.99.0.0/16", "nexthop": "10.9.0.254"}}}})
	p := post(t, url+"/v2.0/ports", "POST", map[string]any{"port": map[string]any{"network_id": n["id"], "binding:host_id": "compute-1",
		"extra_dhcp_opts": []any{map[string]any{"opt_name": "domain-name", "opt_value": "lab.example"}}}})["port"].(map[string]any)
	ip := p["fixed_ips"].([]any)[0].(map[string]any)["ip_address"].(string)
	if err := lab.VM("vm1", "compute-1", dataplane.TapName(p["id"].(string)), p["mac_address"].(string), 1450, ""); err != nil {
		t.Fatal(err)
	}
	got := dhcpLease(t, url, lab, "vm1", n["id"].(string))
	if want := "ip=" + ip + " subnet=255.255.255.0 router=10.9.0.1 mtu=1450 dns=10.9.0.53 domain=lab.example"; got != want {
		t.Fatalf("udhcpc lease %q, want %q", got, want)
	}
	got = dhclient(t, url, lab, "vm1", n["id"].(string), "-4")
	want := "BOUND ip=" + ip + " mask=255.255.255.0 routers=10.9.0.1 mtu=1450 dns=10.9.0.53 domain=lab.example" +
		" routes=16 10 99 10 9 0 254 0 10 9 0 1" // 10.99.0.0/16 via .254, default via .1
	if got != want {
		t.Fatalf("dhclient lease %q, want %q", got, want)
	}
}

// TestSecurityGroupsThroughAPI: a group's rules, changed through the API,
// reach the data plane: ingress blocked, then allowed by an ICMP rule.
func TestSecurityGroupsThroughAPI(t *testing.T) {
	url, lab := testCloud(t, "ping", "nft")
	startAgents(t, url, lab, []string{"compute-1", "compute-2"}, "")
	n := post(t, url+"/v2.0/networks", "POST", map[string]any{"network": map[string]any{}})["network"].(map[string]any)
	post(t, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": n["id"], "ip_version": 4, "cidr": "10.8.0.0/24"}})
	sg := post(t, url+"/v2.0/security-groups", "POST", map[string]any{"security_group": map[string]any{"name": "locked"}})["security_group"].(map[string]any)
	var ips []string
	for i, h := range []string{"compute-1", "compute-2"} {
		body := map[string]any{"network_id": n["id"], "binding:host_id": h}
		if i == 1 {
			body["security_groups"] = []any{sg["id"]}
		}
		p := post(t, url+"/v2.0/ports", "POST", map[string]any{"port": body})["port"].(map[string]any)
		ip := p["fixed_ips"].([]any)[0].(map[string]any)["ip_address"].(string)
		if err := lab.VM("vm"+string(rune('1'+i)), h, dataplane.TapName(p["id"].(string)), p["mac_address"].(string), 1450, ip+"/24"); err != nil {
			t.Fatal(err)
		}
		ips = append(ips, ip)
	}
	// Wired (vm2 answers vm1's ARP) but ingress to vm2 is dropped. No
	// update nudges the agents: the VMs' devices appearing is all they get.
	testutil.Eventually(t, 20*time.Second, "vm2 reachable at L2", func() (bool, string) {
		lab.Run("vm1", "ping", "-c", "1", "-W", "1", ips[1])
		out, _ := lab.Output("vm1", "ip", "neigh", "show", ips[1])
		return strings.Contains(out, "lladdr") || strings.Contains(out, "REACHABLE") || strings.Contains(out, "STALE"), out
	})
	if lab.Run("vm1", "ping", "-c", "2", "-W", "1", ips[1]) == nil {
		t.Fatal("vm2 answered with no ingress rule in its group")
	}
	rule := post(t, url+"/v2.0/security-group-rules", "POST", map[string]any{"security_group_rule": map[string]any{
		"security_group_id": sg["id"], "direction": "ingress", "protocol": "icmp"}})["security_group_rule"].(map[string]any)
	pingUntil(t, lab, "vm1", ips[1], 10*time.Second)
	// A remote-group rule admits the group's members only: vm1 (default
	// group) passes, vm3 (another group) does not.
	other := post(t, url+"/v2.0/security-groups", "POST", map[string]any{"security_group": map[string]any{"name": "other"}})["security_group"].(map[string]any)
	p3 := post(t, url+"/v2.0/ports", "POST", map[string]any{"port": map[string]any{"network_id": n["id"], "binding:host_id": "compute-1",
		"security_groups": []any{other["id"]}}})["port"].(map[string]any)
	ip3 := p3["fixed_ips"].([]any)[0].(map[string]any)["ip_address"].(string)
	if err := lab.VM("vm3", "compute-1", dataplane.TapName(p3["id"].(string)), p3["mac_address"].(string), 1450, ip3+"/24"); err != nil {
		t.Fatal(err)
	}
	pingUntil(t, lab, "vm3", ips[1], 10*time.Second) // the plain ICMP rule admits anyone
	var def string
	for _, g := range post(t, url+"/v2.0/security-groups?name=default", "GET", nil)["security_groups"].([]any) {
		def = g.(map[string]any)["id"].(string)
	}
	post(t, url+"/v2.0/security-group-rules", "POST", map[string]any{"security_group_rule": map[string]any{
		"security_group_id": sg["id"], "direction": "ingress", "protocol": "icmp", "remote_group_id": def}})
	post(t, url+"/v2.0/security-group-rules/"+rule["id"].(string), "DELETE", nil)
	testutil.Eventually(t, 10*time.Second, "a non-member refused by the remote-group rule", func() (bool, string) {
		return lab.Run("vm3", "ping", "-c", "1", "-W", "1", ips[1]) != nil, ""
	})
	pingUntil(t, lab, "vm1", ips[1], 10*time.Second)
}

// agentLog is where the agents of a test log: nowhere, unless
// NEUTRINO_TEST_AGENT_LOG=1 asks for standard error.
func agentLog() io.Writer {
	if os.Getenv("NEUTRINO_TEST_AGENT_LOG") == "1" {
		return os.Stderr
	}
	return io.Discard
}

// TestAntiSpoofingThroughAPI: a VM that takes another source address or
// MAC is dropped; an allowed address pair admits that address; with port
// security off, anything goes.
func TestAntiSpoofingThroughAPI(t *testing.T) {
	url, lab := testCloud(t, "ping", "nft")
	startAgents(t, url, lab, []string{"compute-1", "compute-2"}, "")
	n := post(t, url+"/v2.0/networks", "POST", map[string]any{"network": map[string]any{}})["network"].(map[string]any)
	nid := n["id"].(string)
	post(t, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": nid, "ip_version": 4, "cidr": "10.12.0.0/24"}})
	// The target filters nothing, so only the sender's anti-spoofing acts.
	target := post(t, url+"/v2.0/ports", "POST", map[string]any{"port": map[string]any{"network_id": nid, "binding:host_id": "compute-2",
		"port_security_enabled": false, "fixed_ips": []any{map[string]any{"ip_address": "10.12.0.20"}}}})["port"].(map[string]any)
	vm := post(t, url+"/v2.0/ports", "POST", map[string]any{"port": map[string]any{"network_id": nid, "binding:host_id": "compute-1",
		"fixed_ips": []any{map[string]any{"ip_address": "10.12.0.10"}}}})["port"].(map[string]any)
	vid := vm["id"].(string)
	if err := lab.VM("target", "compute-2", dataplane.TapName(target["id"].(string)), target["mac_address"].(string), 1450, "10.12.0.20/24"); err != nil {
		t.Fatal(err)
	}
	if err := lab.VM("vm1", "compute-1", dataplane.TapName(vid), vm["mac_address"].(string), 1450, "10.12.0.10/24"); err != nil {
		t.Fatal(err)
	}
	lab.Run("vm1", "ip", "addr", "add", "10.12.0.99/24", "dev", "eth0") // not the port's
	pingUntil(t, lab, "vm1", "10.12.0.20", 20*time.Second)
	// ARP for addresses the API does not know is not answered across
	// hosts (the tunnels' ARP is answered locally from the ports'
	// addresses), so the target is told where the spoofed address lives:
	// what is tested is whether the sender's frames get through.
	realMAC := vm["mac_address"].(string)
	spoofed := func() bool {
		lab.Run("target", "ip", "neigh", "replace", "10.12.0.99", "lladdr", realMAC, "dev", "eth0", "nud", "permanent")
		return lab.Run("vm1", "ping", "-c", "1", "-W", "1", "-I", "10.12.0.99", "10.12.0.20") == nil
	}
	// Waits for the data plane to reach the wanted state after an API change.
	eventually := func(what string, want bool, f func() bool) {
		t.Helper()
		testutil.Eventually(t, 15*time.Second, what, func() (bool, string) { return f() == want, "" })
	}
	if spoofed() {
		t.Fatal("a spoofed source address got through")
	}
	post(t, url+"/v2.0/ports/"+vid, "PUT", map[string]any{"port": map[string]any{
		"allowed_address_pairs": []any{map[string]any{"ip_address": "10.12.0.99"}}}})
	eventually("allowed address pair", true, spoofed)
	post(t, url+"/v2.0/ports/"+vid, "PUT", map[string]any{"port": map[string]any{"allowed_address_pairs": []any{}}})
	eventually("pair removed", false, spoofed)
	// A spoofed MAC is dropped too (replies would go to the new MAC).
	spoofMAC := func() bool {
		lab.Run("target", "ip", "neigh", "replace", "10.12.0.10", "lladdr", "fa:16:3e:99:99:99", "dev", "eth0", "nud", "permanent")
		return lab.Run("vm1", "ping", "-c", "1", "-W", "1", "10.12.0.20") == nil
	}
	lab.Run("vm1", "ip", "link", "set", "eth0", "address", "fa:16:3e:99:99:99")
	if spoofMAC() {
		t.Fatal("a spoofed MAC got through")
	}
	// Port security off: both pass.
	post(t, url+"/v2.0/ports/"+vid, "PUT", map[string]any{"port": map[string]any{"security_groups": []any{}, "port_security_enabled": false}})
	eventually("port security off, spoofed MAC", true, spoofMAC)
	lab.Run("vm1", "ip", "link", "set", "eth0", "address", realMAC)
	eventually("port security off, spoofed address", true, spoofed)
}

// TestRoutersThroughAPI: a router hosted by network-1 joins two networks
// and an external one: VMs on different hosts and networks reach each
// other through it, a VM reaches the upstream host by SNAT (seen from the
// router's gateway address), and the upstream host reaches a VM on a
// floating IP chosen by address, until it is disassociated.
func TestRoutersThroughAPI(t *testing.T) {
	url, lab := testCloud(t, "ping", "nft", "busybox")
	startAgentsL3(t, url, lab, []string{"network-1", "compute-1", "compute-2"}, "", "network-1")
	// The upstream host on the physical network.
	upstream(t, lab, []string{"ip", "addr", "add", "203.0.113.1/24", "dev", "eth0"}, []string{"ip", "link", "set", "eth0", "up"},
		[]string{"nft", "add table ip seen"}, []string{"nft", "add chain ip seen in { type filter hook input priority 0; }"})
	pub := post(t, url+"/v2.0/networks", "POST", map[string]any{"network": map[string]any{"name": "public", "router:external": true,
		"provider:network_type": "flat", "provider:physical_network": "physnet1"}})["network"].(map[string]any)
	post(t, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": pub["id"], "ip_version": 4,
		"cidr": "203.0.113.0/24", "gateway_ip": "203.0.113.1", "enable_dhcp": false,
		"allocation_pools": []any{map[string]any{"start": "203.0.113.100", "end": "203.0.113.250"}}}})
	router := post(t, url+"/v2.0/routers", "POST", map[string]any{"router": map[string]any{"name": "r1",
		"external_gateway_info": map[string]any{"network_id": pub["id"]}}})["router"].(map[string]any)
	rid := router["id"].(string)
	gwIP := router["external_gateway_info"].(map[string]any)["external_fixed_ips"].([]any)[0].(map[string]any)["ip_address"].(string)
	// ICMP from anywhere into the default group, so the upstream host may ping in.
	var def string
	for _, g := range post(t, url+"/v2.0/security-groups?name=default", "GET", nil)["security_groups"].([]any) {
		def = g.(map[string]any)["id"].(string)
	}
	post(t, url+"/v2.0/security-group-rules", "POST", map[string]any{"security_group_rule": map[string]any{
		"security_group_id": def, "direction": "ingress", "protocol": "icmp"}})
	type vm struct {
		name, host, ip, port, net, gw string
		mtu                           int
	}
	var vms []vm
	for i, cidr := range []string{"10.61.0.0/24", "10.62.0.0/24"} {
		n := post(t, url+"/v2.0/networks", "POST", map[string]any{"network": map[string]any{}})["network"].(map[string]any)
		sn := post(t, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": n["id"], "ip_version": 4,
			"cidr": cidr, "enable_dhcp": false}})["subnet"].(map[string]any)
		post(t, url+"/v2.0/routers/"+rid+"/add_router_interface", "PUT", map[string]any{"subnet_id": sn["id"]})
		host := []string{"compute-1", "compute-2"}[i]
		p := post(t, url+"/v2.0/ports", "POST", map[string]any{"port": map[string]any{"network_id": n["id"], "binding:host_id": host}})["port"].(map[string]any)
		v := vm{"vm" + string(rune('1'+i)), host, p["fixed_ips"].([]any)[0].(map[string]any)["ip_address"].(string), p["id"].(string),
			n["id"].(string), sn["gateway_ip"].(string), int(n["mtu"].(float64))}
		if err := lab.VM(v.name, host, dataplane.TapName(v.port), p["mac_address"].(string), int(n["mtu"].(float64)), v.ip+"/24"); err != nil {
			t.Fatal(err)
		}
		if err := lab.Run(v.name, "ip", "route", "add", "default", "via", sn["gateway_ip"].(string)); err != nil {
			t.Fatal(err)
		}
		vms = append(vms, v)
	}
	// Before any traffic, the router knows its networks' VMs' MACs: its
	// first packet to a VM need not wait on ARP.
	testutil.Eventually(t, 10*time.Second, "the router holds its VMs' MACs", func() (bool, string) {
		out, _ := exec.Command("ip", "netns", "exec", lab.Name("network-1")+"-r"+rid[:8], "ip", "neigh", "show").CombinedOutput()
		for _, v := range vms {
			if !strings.Contains(string(out), v.ip+" dev qr-") {
				return false, string(out)
			}
		}
		return true, ""
	})
	// East-west through the router, across hosts.
	pingUntil(t, lab, "vm1", vms[1].ip, 20*time.Second)
	// North-south by SNAT: the upstream host sees the gateway address.
	lab.Run("upstream", "nft", "add rule ip seen in ip saddr "+gwIP+" counter")
	pingUntil(t, lab, "vm1", "203.0.113.1", 10*time.Second)
	if out, _ := lab.Output("upstream", "nft", "list", "chain", "ip", "seen", "in"); nftPackets(out) < 1 {
		t.Fatalf("the upstream host did not see the router's address %s:\n%s", gwIP, out)
	}
	// Metering: a label of the router's project counts the traffic with
	// the upstream host at the gateway, both ways; a shared label whose
	// excluded prefix covers the upstream host counts none of it.
	meterLabel := func(body map[string]any, rules ...map[string]any) string {
		l := post(t, url+"/v2.0/metering/metering-labels", "POST", map[string]any{"metering_label": body})["metering_label"].(map[string]any)
		for _, r := range rules {
			r["metering_label_id"] = l["id"]
			post(t, url+"/v2.0/metering/metering-label-rules", "POST", map[string]any{"metering_label_rule": r})
		}
		return l["id"].(string)
	}
	up := meterLabel(map[string]any{"name": "upstream", "tenant_id": router["project_id"]},
		map[string]any{"direction": "egress", "remote_ip_prefix": "203.0.113.0/24"},
		map[string]any{"direction": "ingress", "remote_ip_prefix": "203.0.113.0/24"})
	other := meterLabel(map[string]any{"name": "elsewhere", "shared": true, "tenant_id": "someone-else"},
		map[string]any{"direction": "egress", "remote_ip_prefix": "203.0.113.0/24", "excluded": true},
		map[string]any{"direction": "egress", "remote_ip_prefix": "0.0.0.0/0"})
	counted := func(label, dir string) (float64, bool) {
		resp, err := http.Get(url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "neutrino_metering_label_packets_total{") && strings.Contains(line, `label_id="`+label+`"`) &&
				strings.Contains(line, `direction="`+dir+`"`) && strings.Contains(line, `router_id="`+rid+`"`) {
				v, err := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
				return v, err == nil
			}
		}
		return 0, false
	}
	testutil.Eventually(t, 15*time.Second, "label "+up+" counts the upstream traffic", func() (bool, string) {
		lab.Run("vm1", "ping", "-c", "1", "-W", "1", "203.0.113.1")
		out, _ := counted(up, "egress")
		in, _ := counted(up, "ingress")
		rules, _ := exec.Command("ip", "netns", "exec", lab.Name("network-1")+"-r"+rid[:8], "nft", "list", "table", "inet", "neutrino-metering").CombinedOutput()
		return out >= 3 && in >= 3, fmt.Sprintf("%v packets out, %v in; router's table:\n%s", out, in, rules)
	})
	if v, ok := counted(other, "egress"); !ok || v != 0 {
		t.Fatalf("the excluded prefix was counted (%v) or its label not applied (%v)", v, ok)
	}
	// A floating IP chosen by address reaches vm2 from outside.
	fip := post(t, url+"/v2.0/floatingips", "POST", map[string]any{"floatingip": map[string]any{"floating_network_id": pub["id"],
		"floating_ip_address": "203.0.113.50", "port_id": vms[1].port}})["floatingip"].(map[string]any)
	for _, c := range []string{"add table ip seen", "add chain ip seen in { type filter hook input priority 0; }",
		"add rule ip seen in ip saddr 203.0.113.1 icmp type echo-request counter"} {
		if err := lab.Run("vm2", "nft", c); err != nil {
			t.Fatal(err)
		}
	}
	pingUntil(t, lab, "upstream", "203.0.113.50", 10*time.Second)
	if out, _ := lab.Output("vm2", "nft", "list", "chain", "ip", "seen", "in"); nftPackets(out) < 1 {
		rns := lab.Name("network-1") + "-r" + rid[:8]
		rules, _ := exec.Command("ip", "netns", "exec", rns, "nft", "list", "ruleset").CombinedOutput()
		addrs, _ := exec.Command("ip", "-n", rns, "addr").CombinedOutput()
		t.Fatalf("vm2 did not get the pings sent to its floating IP:\n%s\nrouter:\n%s\n%s", out, rules, addrs)
	}
	// Hairpin: a neighbour on vm2's own subnet reaches vm2 by its floating
	// IP, and the replies come back from the floating IP (through the
	// router, not straight over the subnet).
	p3 := post(t, url+"/v2.0/ports", "POST", map[string]any{"port": map[string]any{"network_id": vms[1].net, "binding:host_id": "compute-1"}})["port"].(map[string]any)
	ip3 := p3["fixed_ips"].([]any)[0].(map[string]any)["ip_address"].(string)
	if err := lab.VM("vm3", "compute-1", dataplane.TapName(p3["id"].(string)), p3["mac_address"].(string), vms[1].mtu, ip3+"/24"); err != nil {
		t.Fatal(err)
	}
	if err := lab.Run("vm3", "ip", "route", "add", "default", "via", vms[1].gw); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "vm3 reaches its neighbour vm2 by vm2's floating IP", func() (bool, string) {
		out, _ := lab.Output("vm3", "ping", "-c", "1", "-W", "1", "203.0.113.50")
		return strings.Contains(out, "bytes from 203.0.113.50"), out
	})
	post(t, url+"/v2.0/floatingips/"+fip["id"].(string), "PUT", map[string]any{"floatingip": map[string]any{"port_id": nil}})
	testutil.Eventually(t, 10*time.Second, "the floating IP silent once disassociated", func() (bool, string) {
		return lab.Run("upstream", "ping", "-c", "1", "-W", "1", "203.0.113.50") != nil, ""
	})
	// A removed interface stops answering for its subnet.
	gw1 := "10.61.0.1"
	pingUntil(t, lab, "vm1", gw1, 5*time.Second)
	var sub1, dev1 string
	for _, p := range post(t, url+"/v2.0/ports?device_id="+rid+"&device_owner=network:router_interface", "GET", nil)["ports"].([]any) {
		for _, f := range p.(map[string]any)["fixed_ips"].([]any) {
			if f.(map[string]any)["ip_address"] == gw1 {
				sub1 = f.(map[string]any)["subnet_id"].(string)
				dev1 = "qr-" + p.(map[string]any)["id"].(string)[:11]
			}
		}
	}
	rns := lab.Name("network-1") + "-r" + rid[:8]
	if exec.Command("ip", "-n", rns, "link", "show", dev1).Run() != nil {
		t.Fatalf("the router had no %s to remove", dev1)
	}
	post(t, url+"/v2.0/routers/"+rid+"/remove_router_interface", "PUT", map[string]any{"subnet_id": sub1})
	testutil.Eventually(t, 10*time.Second, "the removed interface "+dev1+" gone", func() (bool, string) {
		return lab.Run("vm1", "ping", "-c", "1", "-W", "1", gw1) != nil && exec.Command("ip", "-n", rns, "link", "show", dev1).Run() != nil, ""
	})
	// The router's ports are ACTIVE, wired on network-1.
	for _, p := range post(t, url+"/v2.0/ports?device_id="+rid, "GET", nil)["ports"].([]any) {
		pm := p.(map[string]any)
		if pm["binding:host_id"] != "network-1" {
			t.Fatalf("router port not bound to network-1: %v", pm)
		}
	}
}

// TestRouterIPv6: the router learns its IPv6 default route from the
// upstream host's advertisements; its own advertisements give VMs on a SLAAC and a
// dhcpv6-stateless subnet exactly the EUI-64 addresses the API reported;
// they reach each other through the router, and the upstream host without
// NAT (it sees the VM's own address); the stateless subnet's DNS servers
// come by DHCPv6.
func TestRouterIPv6(t *testing.T) {
	url, lab := testCloud(t, "ping", "nft", "dhclient")
	startAgentsL3(t, url, lab, []string{"network-1", "compute-1", "compute-2"}, "network-1", "network-1")
	// 2001:db8:200::1 is beyond the external subnet: only a default route
	// reaches it.
	upstream(t, lab, []string{"ip", "addr", "add", "2001:db8:100::1/64", "dev", "eth0", "nodad"}, []string{"ip", "link", "set", "eth0", "up"},
		[]string{"ip", "addr", "add", "2001:db8:200::1/128", "dev", "lo"}, []string{"sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"},
		[]string{"nft", "add table ip6 seen"}, []string{"nft", "add chain ip6 seen in { type filter hook input priority 0; }"})
	pub := post(t, url+"/v2.0/networks", "POST", map[string]any{"network": map[string]any{"router:external": true,
		"provider:network_type": "flat", "provider:physical_network": "physnet1"}})["network"].(map[string]any)
	// No gateway_ip: the router learns its IPv6 default route from the
	// upstream host's advertisements.
	post(t, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": pub["id"], "ip_version": 6,
		"cidr": "2001:db8:100::/64", "gateway_ip": nil, "enable_dhcp": false}})
	raCtx, stopRA := context.WithCancel(context.Background())
	defer stopRA()
	go router.Advertise(raCtx, lab.Name("upstream"), "eth0", netip.MustParsePrefix("2001:db8:100::/64"), 1500)
	router := post(t, url+"/v2.0/routers", "POST", map[string]any{"router": map[string]any{
		"external_gateway_info": map[string]any{"network_id": pub["id"]}}})["router"].(map[string]any)
	rid := router["id"].(string)
	gw6 := router["external_gateway_info"].(map[string]any)["external_fixed_ips"].([]any)[0].(map[string]any)["ip_address"].(string)
	type vm struct{ name, ip string }
	var vms []vm
	var nets []string
	for i, m := range []struct{ cidr, mode string }{{"2001:db8:a1::/64", "slaac"}, {"2001:db8:b1::/64", "dhcpv6-stateless"}} {
		n := post(t, url+"/v2.0/networks", "POST", map[string]any{"network": map[string]any{}})["network"].(map[string]any)
		sn := post(t, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": n["id"], "ip_version": 6,
			"cidr": m.cidr, "ipv6_ra_mode": m.mode, "ipv6_address_mode": m.mode, "dns_nameservers": []any{"2001:db8::53"}}})["subnet"].(map[string]any)
		nets = append(nets, n["id"].(string))
		post(t, url+"/v2.0/routers/"+rid+"/add_router_interface", "PUT", map[string]any{"subnet_id": sn["id"]})
		host := []string{"compute-1", "compute-2"}[i]
		p := post(t, url+"/v2.0/ports", "POST", map[string]any{"port": map[string]any{"network_id": n["id"], "binding:host_id": host}})["port"].(map[string]any)
		v := vm{"vm" + string(rune('1'+i)), p["fixed_ips"].([]any)[0].(map[string]any)["ip_address"].(string)}
		if err := lab.VM(v.name, host, dataplane.TapName(p["id"].(string)), p["mac_address"].(string), int(n["mtu"].(float64)), ""); err != nil {
			t.Fatal(err)
		}
		vms = append(vms, v)
		// The upstream host routes the tenant prefix to the router (no NAT for IPv6).
		if err := lab.Run("upstream", "ip", "-6", "route", "add", m.cidr, "via", gw6); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range vms {
		deadline := time.Now().Add(20 * time.Second)
		for {
			out, _ := lab.Output(v.name, "ip", "-6", "addr", "show", "dev", "eth0", "scope", "global")
			if strings.Contains(out, v.ip+"/64") && !strings.Contains(out, "tentative") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not configure %s from the router's advertisements:\n%s", v.name, v.ip, out)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	pingUntil(t, lab, "vm1", vms[1].ip, 10*time.Second)
	lab.Run("upstream", "nft", "add rule ip6 seen in ip6 saddr "+vms[0].ip+" counter")
	pingUntil(t, lab, "vm1", "2001:db8:200::1", 10*time.Second)
	if out, _ := lab.Output("upstream", "nft", "list", "chain", "ip6", "seen", "in"); strings.Contains(out, "packets 0 ") || !strings.Contains(out, "packets") {
		t.Fatalf("the upstream host did not see vm1's own address:\n%s", out)
	}
	// MTU from the advertisement.
	if out, _ := lab.Output("vm1", "cat", "/proc/sys/net/ipv6/conf/eth0/mtu"); strings.TrimSpace(out) != "1450" {
		t.Fatalf("IPv6 MTU from the advertisement: %q", out)
	}
	// The dhcpv6-stateless subnet's options come by DHCPv6 (O flag).
	if got := dhclient(t, url, lab, "vm2", nets[1], "-6", "-S"); !strings.Contains(got, "2001:db8::53") {
		t.Fatalf("stateless DHCPv6 options: %q", got)
	}
}
