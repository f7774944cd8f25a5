package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"neutrino/internal/agent/l3"
	agentlbaas "neutrino/internal/agent/lbaas"
	"neutrino/internal/dataplane"
	"neutrino/internal/dataplane/lb"
	"neutrino/internal/dataplane/router"
	"neutrino/internal/netlab"
)

// The sandbox is a lab on one machine: hosts as network namespaces on an
// underlay switch, a Neutrino server (SQLite, built-in identity) and one
// agent per host, and VMs as namespaces plugged into their host the way a
// hypervisor plugs a tap. Its state lives in --dir; nothing outside the
// sandbox's own namespaces is touched.

type sandboxState struct {
	Prefix string            `json:"prefix"`
	Listen string            `json:"listen"`
	Server string            `json:"server,omitempty"` // a server given to up, not started by it
	Hosts  []sandboxHost     `json:"hosts"`
	PIDs   map[string]int    `json:"pids"`
	VMs    map[string]sandVM `json:"vms"`
}

type sandboxHost struct {
	Name string `json:"name"`
	VTEP string `json:"vtep"`
	// Down: taken off the wire (sandbox host down).
	Down bool `json:"down,omitempty"`
}

// network reports whether h is a network host (DHCP, L3, the external
// network).
func (h sandboxHost) network() bool { return strings.HasPrefix(h.Name, "network-") }

type sandVM struct {
	Host   string `json:"host"`
	PortID string `json:"port_id"`
}

func sandbox(args []string) error {
	return runSub(args, "usage: neutrino sandbox up|down|openrc|vm|host|upstream ... [--dir DIR]", "command", map[string]func([]string) error{
		"up": sandboxUp, "down": sandboxDown, "openrc": sandboxOpenrc, "vm": sandboxVM, "host": sandboxHostCmd,
		"upstream": sandboxUpstream, "advertise": sandboxAdvertise,
	})
}

// runSub runs the subcommand args[0] names with the rest of args; what
// names the kind of subcommand in the error for an unknown one.
func runSub(args []string, usage, what string, cmds map[string]func([]string) error) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	run, ok := cmds[args[0]]
	if !ok {
		return fmt.Errorf("sandbox: unknown %s %q", what, args[0])
	}
	return run(args[1:])
}

func sandboxFlags(name string, args []string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("sandbox "+name, flag.ExitOnError)
	dir := fs.String("dir", envOr("NEUTRINO_SANDBOX", "neutrino-sandbox"), "the sandbox's state directory")
	return fs, dir
}

func loadSandbox(dir string) (*sandboxState, error) {
	b, err := os.ReadFile(filepath.Join(dir, "sandbox.json"))
	if err != nil {
		return nil, fmt.Errorf("sandbox: no sandbox in %s (neutrino sandbox up --dir %s)", dir, dir)
	}
	var st sandboxState
	return &st, json.Unmarshal(b, &st)
}

func (st *sandboxState) save(dir string) error {
	b, _ := json.MarshalIndent(st, "", "  ")
	return os.WriteFile(filepath.Join(dir, "sandbox.json"), b, 0o600)
}

func (st *sandboxState) lab() *netlab.Lab { return &netlab.Lab{Prefix: st.Prefix} }

func sandboxUp(args []string) error {
	fs, dir := sandboxFlags("up", args)
	hosts := fs.Int("hosts", 2, "number of compute hosts")
	networkHosts := fs.Int("network-hosts", 1, "number of network hosts (DHCP and L3 agents, the external network): 2 or more for HA routers")
	listen := fs.String("listen", "127.0.0.1:19696", "address of the sandbox's server")
	lbListen := fs.String("lb-listen", "127.0.0.1:19876", "address of the sandbox's load-balancer API")
	kmListen := fs.String("km-listen", "127.0.0.1:19311", "address of the sandbox's key-manager API")
	server := fs.String("server", "", "use this running Neutrino (admin credentials from OS_* in the environment) instead of starting one")
	fs.Parse(args)
	if os.Geteuid() != 0 {
		return errors.New("sandbox: needs root (network namespaces)")
	}
	if _, err := loadSandbox(*dir); err == nil {
		return fmt.Errorf("sandbox: %s already has a sandbox (neutrino sandbox down --dir %s)", *dir, *dir)
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return err
	}
	lab, err := netlab.New("")
	if err != nil {
		return err
	}
	st := &sandboxState{Prefix: lab.Prefix, Listen: *listen, Server: strings.TrimRight(*server, "/"), PIDs: map[string]int{},
		VMs: map[string]sandVM{}}
	fail := func(err error) error {
		stopPIDs(st)
		lab.Close()
		return err
	}
	if *networkHosts < 1 {
		return errors.New("sandbox: --network-hosts must be at least 1")
	}
	var names []string
	for i := 1; i <= *networkHosts; i++ {
		names = append(names, fmt.Sprintf("network-%d", i))
	}
	for i := 1; i <= *hosts; i++ {
		names = append(names, fmt.Sprintf("compute-%d", i))
	}
	for i, n := range names {
		h := sandboxHost{Name: n, VTEP: fmt.Sprintf("10.250.0.%d", i+1)}
		if err := lab.Host(n, h.VTEP); err != nil {
			return fail(err)
		}
		// physnet1: a second switch every host reaches on its phy1
		// interface, for flat and VLAN provider networks; every host also
		// reaches the external network (physical network "external",
		// where the upstream host is) on phy2: network hosts for routers
		// and SNAT, compute hosts for the floating IPs of distributed
		// routers.
		if err := lab.Physical(n, "phy1"); err != nil {
			return fail(err)
		}
		if err := lab.Attach(n, "phy2", "ext"); err != nil {
			return fail(err)
		}
		st.Hosts = append(st.Hosts, h)
	}
	// The hosts share one kernel and its limited table of dynamic
	// neighbour entries: the underlay is resolved statically, leaving the
	// table to the VMs.
	if err := lab.StaticUnderlay(); err != nil {
		return fail(err)
	}
	self, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	data := filepath.Join(abs, "data")
	base := st.base()
	if st.Server == "" {
		pid, err := spawn(abs, "server", self, []string{"serve", "--listen", *listen, "--lb-listen", *lbListen, "--km-listen", *kmListen, "--data-dir", data}, nil)
		if err != nil {
			return fail(err)
		}
		st.PIDs["server"] = pid
	} else if err := givenServerOpenrc(data); err != nil {
		return fail(err)
	}
	if err := waitHTTP(base+"/", 15*time.Second); err != nil {
		return fail(err)
	}
	env := openrcEnv(filepath.Join(data, "openrc-admin"))
	for _, h := range st.Hosts {
		pid, err := spawn(abs, "agent-"+h.Name, self, st.agentArgs(h, base), env)
		if err != nil {
			return fail(err)
		}
		st.PIDs["agent-"+h.Name] = pid
	}
	if err := upstreamUp(st, lab, abs); err != nil {
		return fail(err)
	}
	if err := st.save(abs); err != nil {
		return fail(err)
	}
	if err := publicNetwork(st, abs); err != nil {
		return fail(err)
	}
	fmt.Printf("sandbox up in %s: server %s, hosts %s\n  . <(neutrino sandbox openrc --dir %s)   # then: openstack network list\n",
		abs, base, strings.Join(names, " "), *dir)
	return nil
}

// agentArgs are the arguments of host h's agent, base the server's URL.
func (st *sandboxState) agentArgs(h sandboxHost, base string) []string {
	args := []string{"agent", "--host", h.Name, "--server", base, "--netns", st.lab().Name(h.Name), "--vtep", h.VTEP,
		"--report-interval", "5s", "--physical-interfaces", "physnet1=phy1,external=phy2"}
	// Network hosts run DHCP, routers (and distributed routers' SNAT) and
	// load balancers, compute hosts the distributed routers of their VMs.
	if h.network() {
		return append(args, "--dhcp", "--l3", "--l3-mode", "dvr_snat", "--lbaas")
	}
	return append(args, "--l3", "--l3-mode", "dvr")
}

// sandboxHostCmd takes a host off the wire and brings it back: host down
// HOST (its links down, its agent and HA routers' keepalived killed as a
// crash would: what they made in the kernel stays, cut off) and host up
// HOST (links up, its agent started again, which fences and restarts its
// HA router instances as standbys).
func sandboxHostCmd(args []string) error {
	usage := "usage: neutrino sandbox host down|up HOST [--dir DIR]"
	if len(args) < 2 || args[0] != "down" && args[0] != "up" {
		return errors.New(usage)
	}
	down, name := args[0] == "down", args[1]
	fs, dir := sandboxFlags("host "+args[0], args[2:])
	fs.Parse(args[2:])
	st, err := loadSandbox(*dir)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(st.Hosts, func(h sandboxHost) bool { return h.Name == name })
	if i < 0 {
		return fmt.Errorf("sandbox: no host %q", name)
	}
	h, lab := &st.Hosts[i], st.lab()
	if h.Down == down {
		return fmt.Errorf("sandbox: %s is already %s", name, args[0])
	}
	links := []string{"eth0", "phy1", "phy2"}
	state := "up"
	if down {
		// As a crash: the agent and the HA routers' keepalived it started
		// die at once (what they put in the kernel stays, cut off).
		state = "down"
		if pid, ok := st.PIDs["agent-"+name]; ok {
			syscall.Kill(pid, syscall.SIGKILL)
			delete(st.PIDs, "agent-"+name)
		}
		dirs, _ := filepath.Glob(filepath.Join(l3.HAStateRoot, lab.Name(name)+"-*"))
		for _, d := range dirs {
			for _, pid := range router.HAPIDs(d) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	for _, l := range links {
		if err := lab.Run(name, "ip", "link", "set", l, state); err != nil {
			return err
		}
	}
	if !down {
		abs, err := filepath.Abs(*dir)
		if err != nil {
			return err
		}
		self, err := os.Executable()
		if err != nil {
			return err
		}
		pid, err := spawn(abs, "agent-"+name, self, st.agentArgs(*h, st.base()), openrcEnv(filepath.Join(abs, "data", "openrc-admin")))
		if err != nil {
			return err
		}
		st.PIDs["agent-"+name] = pid
	}
	h.Down = down
	if err := st.save(*dir); err != nil {
		return err
	}
	fmt.Printf("sandbox host %s is %s\n", name, args[0])
	return nil
}

// givenServerOpenrc keeps the caller's admin credentials for a server the
// sandbox did not start, as the sandbox's openrc-admin.
func givenServerOpenrc(data string) error {
	var b strings.Builder
	for _, k := range []string{"OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME", "OS_USER_DOMAIN_NAME",
		"OS_PROJECT_DOMAIN_NAME", "OS_IDENTITY_API_VERSION", "OS_AUTH_TYPE", "OS_TOKEN", "OS_ENDPOINT", "OS_REGION_NAME"} {
		if v := os.Getenv(k); v != "" {
			fmt.Fprintf(&b, "export %s=%s\n", k, v)
		}
	}
	if os.Getenv("OS_AUTH_URL") == "" {
		return errors.New("sandbox: --server needs admin credentials in the environment (OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME)")
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(data, "openrc-admin"), []byte(b.String()), 0o600)
}

// spawn starts a background process in its own session, logging to dir.
func spawn(dir, name, bin string, args, env []string) (int, error) {
	logf, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("sandbox: start %s: %w", name, err)
	}
	go cmd.Wait()
	return cmd.Process.Pid, nil
}

func waitHTTP(url string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if r, err := http.Get(url); err == nil {
			r.Body.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("sandbox: %s did not answer", url)
}

// openrcEnv reads the export lines of an openrc file.
func openrcEnv(path string) []string {
	b, _ := os.ReadFile(path)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "export "); ok {
			out = append(out, v)
		}
	}
	return out
}

func stopPIDs(st *sandboxState) {
	for _, pid := range st.PIDs {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range st.PIDs {
		for time.Now().Before(deadline) && syscall.Kill(pid, 0) == nil {
			time.Sleep(50 * time.Millisecond)
		}
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

func sandboxDown(args []string) error {
	fs, dir := sandboxFlags("down", args)
	fs.Parse(args)
	st, err := loadSandbox(*dir)
	if err != nil {
		return err
	}
	stopPIDs(st)
	// HA routers' keepalived and load balancers' haproxy outlive their
	// agents by design: they go before their namespaces.
	dirs, _ := filepath.Glob(filepath.Join(l3.HAStateRoot, st.Prefix+"-*"))
	for _, d := range dirs {
		router.KillHA(d)
		os.RemoveAll(d)
	}
	dirs, _ = filepath.Glob(filepath.Join(agentlbaas.StateRoot, st.Prefix+"-*"))
	for _, d := range dirs {
		lb.Kill(d)
	}
	st.lab().Close() // every namespace under the sandbox's prefix
	fmt.Printf("sandbox in %s is down\n", *dir)
	return os.RemoveAll(*dir)
}

func sandboxOpenrc(args []string) error {
	fs, dir := sandboxFlags("openrc", args)
	project := fs.String("project", "admin", "admin or demo")
	fs.Parse(args)
	if _, err := loadSandbox(*dir); err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(*dir, "data", "openrc-"+*project))
	if err != nil {
		return err
	}
	os.Stdout.Write(b)
	return nil
}

// sandboxAPI calls the sandbox's server as admin.
type sandboxAPI struct {
	base, token string
}

func (st *sandboxState) api(dir string) (*sandboxAPI, error) {
	for _, kv := range openrcEnv(filepath.Join(dir, "data", "openrc-admin")) {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	tok, err := loginFromEnv()
	if err != nil {
		return nil, err
	}
	return &sandboxAPI{base: st.base(), token: tok}, nil
}

// base is the URL of the sandbox's server.
func (st *sandboxState) base() string {
	if st.Server != "" {
		return st.Server
	}
	return "http://" + st.Listen
}

func (a *sandboxAPI) do(method, path string, body any) (map[string]any, error) {
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, a.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Auth-Token", a.token)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer r.Body.Close()
	var out map[string]any
	json.NewDecoder(r.Body).Decode(&out)
	if r.StatusCode >= 300 {
		return out, fmt.Errorf("%s %s: HTTP %d %v", method, path, r.StatusCode, out)
	}
	return out, nil
}

// findID resolves a name or id in a collection.
func (a *sandboxAPI) findID(collection, nameOrID string) (string, error) {
	out, err := a.do("GET", "/v2.0/"+collection+"?name="+nameOrID, nil)
	if err != nil {
		return "", err
	}
	if l, _ := out[collection].([]any); len(l) == 1 {
		return l[0].(map[string]any)["id"].(string), nil
	}
	if _, err := a.do("GET", "/v2.0/"+collection+"/"+nameOrID, nil); err == nil {
		return nameOrID, nil
	}
	return "", fmt.Errorf("sandbox: no single %s named %q", strings.TrimSuffix(collection, "s"), nameOrID)
}

func sandboxVM(args []string) error {
	return runSub(args, "usage: neutrino sandbox vm create|exec|delete NAME ...", "vm command", map[string]func([]string) error{
		"create": vmCreate, "exec": vmExec, "delete": vmDelete,
	})
}

// udhcpcScript applies a busybox udhcpc lease inside a VM namespace.
const udhcpcScript = `#!/bin/sh
case "$1" in
bound|renew)
  ip addr flush dev "$interface"
  ip addr add "$ip/${mask:-24}" dev "$interface"
  [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
  [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
  ;;
esac
exit 0
`

// splitName takes the VM name from the front of args (flags may follow).
func splitName(args []string) (string, []string, error) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return "", nil, errors.New("sandbox: a VM name is required")
	}
	return args[0], args[1:], nil
}

func vmCreate(args []string) error {
	name, rest, err := splitName(args)
	if err != nil {
		return err
	}
	fs, dir := sandboxFlags("vm create", rest)
	network := fs.String("network", "", "network name or id")
	host := fs.String("host", "", "host to run on (default: the compute host with fewest VMs)")
	port := fs.String("port", "", "an existing port to use (name or id)")
	fs.Parse(rest)
	st, err := loadSandbox(*dir)
	if err != nil {
		return err
	}
	if _, ok := st.VMs[name]; ok {
		return fmt.Errorf("sandbox: VM %s exists", name)
	}
	if *host == "" {
		count := map[string]int{}
		for _, v := range st.VMs {
			count[v.Host]++
		}
		for _, h := range st.Hosts {
			if strings.HasPrefix(h.Name, "compute-") && (*host == "" || count[h.Name] < count[*host]) {
				*host = h.Name
			}
		}
	}
	a, err := st.api(*dir)
	if err != nil {
		return err
	}
	var p map[string]any
	if *port != "" {
		id, err := a.findID("ports", *port)
		if err != nil {
			return err
		}
		out, err := a.do("PUT", "/v2.0/ports/"+id, map[string]any{"port": map[string]any{"binding:host_id": *host, "device_id": name, "device_owner": "compute:sandbox"}})
		if err != nil {
			return err
		}
		p = out["port"].(map[string]any)
	} else {
		if *network == "" {
			return errors.New("sandbox: --network or --port is required")
		}
		nid, err := a.findID("networks", *network)
		if err != nil {
			return err
		}
		out, err := a.do("POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": nid, "name": name,
			"binding:host_id": *host, "device_id": name, "device_owner": "compute:sandbox"}})
		if err != nil {
			return err
		}
		p = out["port"].(map[string]any)
	}
	nout, err := a.do("GET", "/v2.0/networks/"+p["network_id"].(string), nil)
	if err != nil {
		return err
	}
	mtu := int(nout["network"].(map[string]any)["mtu"].(float64))
	lab := st.lab()
	vmNS := "vm-" + name
	if err := lab.VM(vmNS, *host, dataplane.TapName(p["id"].(string)), p["mac_address"].(string), mtu, ""); err != nil {
		return err
	}
	// The VM asks for its address as a guest would: busybox's udhcpc, with
	// a script that applies the lease (address, routes, MTU).
	script := filepath.Join(*dir, "udhcpc.script")
	os.WriteFile(script, []byte(udhcpcScript), 0o755)
	var lastErr error
	for try := 0; try < 10; try++ {
		if lastErr = lab.Run(vmNS, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "3", "-T", "1",
			"-O", "mtu", "-O", "staticroutes", "-s", script); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		fmt.Fprintf(os.Stderr, "vm %s: no DHCP lease yet (%v)\n", name, lastErr)
	}
	st.VMs[name] = sandVM{Host: *host, PortID: p["id"].(string)}
	if err := st.save(*dir); err != nil {
		return err
	}
	fmt.Printf("vm %s on %s: port %s %s %v\n", name, *host, p["id"], p["mac_address"], p["fixed_ips"])
	return nil
}

func vmExec(args []string) error {
	name, rest, err := splitName(args)
	if err != nil {
		return err
	}
	st, argv, err := execArgs("vm exec", "usage: neutrino sandbox vm exec NAME [--dir DIR] -- COMMAND...", rest)
	if err != nil {
		return err
	}
	if _, ok := st.VMs[name]; !ok {
		return fmt.Errorf("sandbox: no VM %s", name)
	}
	if err := st.execIn("vm-"+name, argv); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			os.Exit(ee.ExitCode())
		}
		return err
	}
	return nil
}

func vmDelete(args []string) error {
	name, rest, err := splitName(args)
	if err != nil {
		return err
	}
	fs, dir := sandboxFlags("vm delete", rest)
	fs.Parse(rest)
	st, err := loadSandbox(*dir)
	if err != nil {
		return err
	}
	vm, ok := st.VMs[name]
	if !ok {
		return fmt.Errorf("sandbox: no VM %s", name)
	}
	exec.Command("ip", "netns", "del", st.lab().Name("vm-"+name)).Run()
	if a, err := st.api(*dir); err == nil {
		a.do("DELETE", "/v2.0/ports/"+vm.PortID, nil)
	}
	delete(st.VMs, name)
	fmt.Printf("vm %s deleted\n", name)
	return st.save(*dir)
}

// The upstream host: outside the cloud, on the physical network
// "external" (reached by every host) at 203.0.113.1 and
// 2001:db8:100::1 (the gateway of the external network "public"),
// answering ping and HTTP and advertising 2001:db8:100::/64.
const (
	upstreamV4 = "203.0.113.1"
	upstreamV6 = "2001:db8:100::1"
)

func upstreamUp(st *sandboxState, lab *netlab.Lab, dir string) error {
	if _, err := lab.NS("upstream"); err != nil {
		return err
	}
	if err := lab.Attach("upstream", "eth0", "ext"); err != nil {
		return err
	}
	for _, c := range [][]string{{"sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0"},
		{"ip", "addr", "add", upstreamV4 + "/24", "dev", "eth0"}, {"ip", "addr", "add", upstreamV6 + "/64", "dev", "eth0", "nodad"},
		{"ip", "link", "set", "eth0", "up"}} {
		if err := lab.Run("upstream", c...); err != nil {
			return err
		}
	}
	www := filepath.Join(dir, "upstream-www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("hello from upstream\n"), 0o644); err != nil {
		return err
	}
	pid, err := spawn(dir, "upstream-httpd", "ip", []string{"netns", "exec", lab.Name("upstream"), "busybox", "httpd", "-f", "-p", "80", "-h", www}, nil)
	if err != nil {
		return err
	}
	st.PIDs["upstream-httpd"] = pid
	self, err := os.Executable()
	if err != nil {
		return err
	}
	pid, err = spawn(dir, "upstream-ra", self, []string{"sandbox", "advertise", "--netns", lab.Name("upstream"), "--dev", "eth0",
		"--prefix", "2001:db8:100::/64"}, nil)
	if err != nil {
		return err
	}
	st.PIDs["upstream-ra"] = pid
	return nil
}

// sandboxAdvertise sends the upstream host's router advertisements (run
// by sandbox up in the background).
func sandboxAdvertise(args []string) error {
	fs := flag.NewFlagSet("sandbox advertise", flag.ExitOnError)
	ns := fs.String("netns", "", "namespace")
	dev := fs.String("dev", "eth0", "interface")
	prefix := fs.String("prefix", "", "IPv6 prefix to advertise for SLAAC")
	mtu := fs.Int("mtu", 1500, "MTU to advertise")
	fs.Parse(args)
	p, err := netip.ParsePrefix(*prefix)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return router.Advertise(ctx, *ns, *dev, p, *mtu)
}

// publicNetwork registers the upstream network as the shared external
// network "public" (flat on "external"), unless it exists.
func publicNetwork(st *sandboxState, dir string) error {
	api, err := st.api(dir)
	if err != nil {
		return err
	}
	if id, err := api.findID("networks", "public"); err == nil && id != "" {
		return nil
	}
	n, err := api.do(http.MethodPost, "/v2.0/networks", map[string]any{"network": map[string]any{"name": "public", "shared": true,
		"router:external": true, "provider:network_type": "flat", "provider:physical_network": "external"}})
	if err != nil {
		return err
	}
	id := n["network"].(map[string]any)["id"]
	for _, sn := range []map[string]any{
		{"name": "public-v4", "ip_version": 4, "cidr": "203.0.113.0/24", "gateway_ip": upstreamV4, "enable_dhcp": false,
			"allocation_pools": []any{map[string]any{"start": "203.0.113.100", "end": "203.0.113.250"}}},
		{"name": "public-v6", "ip_version": 6, "cidr": "2001:db8:100::/64", "gateway_ip": upstreamV6, "enable_dhcp": false},
	} {
		sn["network_id"] = id
		if _, err := api.do(http.MethodPost, "/v2.0/subnets", map[string]any{"subnet": sn}); err != nil {
			return err
		}
	}
	return nil
}

// sandboxUpstream runs a command in the upstream host: upstream exec -- CMD.
func sandboxUpstream(args []string) error {
	if len(args) == 0 || args[0] != "exec" {
		return errors.New("usage: neutrino sandbox upstream exec [--dir DIR] -- COMMAND...")
	}
	st, argv, err := execArgs("upstream exec", "usage: neutrino sandbox upstream exec [--dir DIR] -- COMMAND...", args[1:])
	if err != nil {
		return err
	}
	return st.execIn("upstream", argv)
}

// execArgs parses the arguments of an exec command, "[--dir DIR] --
// COMMAND...", and loads the sandbox they name; usage is the error when
// there is no command.
func execArgs(name, usage string, args []string) (*sandboxState, []string, error) {
	cmdAt := slices.Index(args, "--")
	if cmdAt < 0 {
		cmdAt = len(args)
	}
	fs, dir := sandboxFlags(name, args[:cmdAt])
	fs.Parse(args[:cmdAt])
	if cmdAt >= len(args)-1 {
		return nil, nil, errors.New(usage)
	}
	st, err := loadSandbox(*dir)
	return st, args[cmdAt+1:], err
}

// execIn runs argv in the sandbox's namespace ns, on this terminal.
func (st *sandboxState) execIn(ns string, argv []string) error {
	cmd := exec.Command("ip", append([]string{"netns", "exec", st.lab().Name(ns)}, argv...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	return cmd.Run()
}
