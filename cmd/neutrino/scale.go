package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"neutrino/internal/api"
	"neutrino/internal/hostapi"
	"neutrino/internal/identity"
	"neutrino/internal/services"
)

// scale simulates many host agents over the real agent API, as ovn-heater
// does for OVN: each registers, heartbeats, lists its state and long-polls
// its changes, applying the deltas that come with them (or, with
// --deltas=false, listing its state again at each). Then ports are bound to the
// hosts, and each host's first sight of each port that concerns it is
// timed; the server's CPU is measured idle and per change.
func scale(args []string) error {
	fs := flag.NewFlagSet("bench scale", flag.ExitOnError)
	nHosts := fs.Int("hosts", 100, "simulated host agents")
	perHost := fs.Int("ports-per-host", 10, "ports bound to each host")
	perNet := fs.Int("hosts-per-network", 10, "hosts sharing each network")
	interval := fs.Duration("report-interval", 5*time.Second, "each agent's heartbeat interval")
	idle := fs.Duration("idle", 30*time.Second, "how long to measure the idle cloud")
	groups := fs.Bool("security-groups", true, "ports in the default security group (every host holding it needs each new member); false: port security off, a port concerns its network's hosts only")
	groupPerNet := fs.Bool("group-per-network", false, "each network and its ports in a project of its own, with its own default group (a new member concerns that network's hosts only); default: one project, one group for all")
	rate := fs.Float64("rate", 0, "ports created a second (0: one after the other, as fast as the server takes them)")
	deltas := fs.Bool("deltas", true, "take the deltas the server sends with changes (false: list the state again at each change, as agents did before)")
	serverProfile := fs.String("server-cpuprofile", "", "write a CPU profile of the server to this file")
	database := fs.String("database", "", "database DSN (default: SQLite in a temporary directory)")
	stopProfile, err := parseProfiled(fs, args, "write a CPU profile of the simulated agents to this file")
	if err != nil {
		return err
	}
	defer stopProfile()

	base, token, serverCPU, stop, err := scaleServer(*database, *serverProfile)
	if err != nil {
		return err
	}
	defer stop()
	const kinds = "agent,network,port,security_group,subnet" // an agent's L2 and security group concerns
	type host struct {
		name string
		mu   sync.Mutex
		seen map[string]time.Time // port id or "addr:" member address -> when the host first heard of it
	}
	hosts := make([]*host, *nHosts)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var polls, bytes int64
	var pmu sync.Mutex
	ready := make(chan struct{}, *nHosts)
	for i := range hosts {
		h := &host{name: fmt.Sprintf("sim-%04d", i), seen: map[string]time.Time{}}
		hosts[i] = h
		wg.Add(2)
		report := func(c *benchClient, start bool) error {
			return c.do("POST", "/neutrino/v1/agents/report", map[string]any{"agent": map[string]any{"agent_type": hostapi.HostAgentType,
				"binary": "neutrino-agent", "host": h.name, "start_flag": start, "configurations": map[string]any{
					"tunnel_types": []any{"vxlan"}, "tunneling_ip": fmt.Sprintf("10.%d.%d.1", 64+i/250, i%250)}}}, nil)
		}
		go func() { // heartbeats
			defer wg.Done()
			c := newBenchClient(base, token)
			start := true
			for ctx.Err() == nil {
				if report(c, start) == nil {
					start = false
				}
				select {
				case <-ctx.Done():
				case <-time.After(*interval):
				}
			}
		}()
		go func() { // list + watch
			defer wg.Done()
			c := newBenchClient(base, token)
			time.Sleep(100 * time.Millisecond) // registered first
			var st *hostapi.Span
			reported := ""
			// seen notes the ports the host now has: its own, or peers on
			// its networks.
			seen := func(ports []hostapi.Object, peers []hostapi.Peer, members map[string][]string) {
				now := time.Now()
				h.mu.Lock()
				for _, addrs := range members {
					for _, a := range addrs {
						if h.seen["addr:"+a].IsZero() {
							h.seen["addr:"+a] = now
						}
					}
				}
				for _, p := range ports {
					if id, _ := p["id"].(string); h.seen[id].IsZero() {
						h.seen[id] = now
					}
				}
				for _, p := range peers {
					if h.seen[p.PortID].IsZero() {
						h.seen[p.PortID] = now
					}
				}
				h.mu.Unlock()
			}
			// up reports the host's ports wired when they changed, as an
			// agent does.
			up := func() error {
				active := []string{}
				for _, p := range st.Ports {
					id, _ := p["id"].(string)
					active = append(active, id)
				}
				if key := strings.Join(active, ","); key != reported {
					if err := c.do("PUT", "/neutrino/v1/hosts/"+h.name+"/ports", map[string]any{"active": active}, nil); err != nil {
						return err
					}
					reported = key
				}
				return nil
			}
			count := func(raw []byte) {
				pmu.Lock()
				bytes += int64(len(raw))
				pmu.Unlock()
			}
			list := func() int64 {
				var raw []byte
				if err := c.do("GET", "/neutrino/v1/hosts/"+h.name+"/state?kinds="+kinds, nil, &raw); err != nil {
					return -1
				}
				count(raw)
				st = &hostapi.Span{}
				json.Unmarshal(raw, st)
				seen(st.Ports, st.Peers, st.GroupMembers)
				if up() != nil {
					return -1
				}
				return st.Revision
			}
			span := list()
			after := span
			ready <- struct{}{}
			for ctx.Err() == nil {
				var raw []byte
				path := fmt.Sprintf("/neutrino/v1/hosts/%s/changes?after=%d&span=%d&kinds=%s&wait=20", h.name, after, span, kinds)
				if *deltas {
					path += "&delta=1"
				}
				if err := c.do("GET", path, nil, &raw); err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				var ans struct {
					Changes  []struct{}
					Revision int64
					Delta    *hostapi.Delta
				}
				json.Unmarshal(raw, &ans)
				pmu.Lock()
				polls++
				pmu.Unlock()
				count(raw)
				after = max(after, ans.Revision)
				if d := ans.Delta; d != nil && st != nil && d.From == span {
					st.Apply(d)
					span = d.Revision
					added := map[string][]string{}
					for g, ld := range d.Members {
						added[g] = ld.Add
					}
					seen(d.Put["ports"], d.Peers, added)
					if up() == nil {
						continue
					}
				} else if len(ans.Changes) == 0 {
					continue
				}
				if r := list(); r >= 0 {
					span, after = r, max(after, r)
				}
			}
		}()
	}
	for range hosts {
		<-ready
	}
	fmt.Printf("%d simulated hosts registered and watching\n", *nHosts)
	agentCPU := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	// Idle: heartbeats only.
	pmu.Lock()
	polls0 := polls
	pmu.Unlock()
	s0, a0, t0 := serverCPU(), agentCPU(), time.Now()
	time.Sleep(*idle)
	idleServer, idleAgents, idleWall := serverCPU()-s0, agentCPU()-a0, time.Since(t0)
	pmu.Lock()
	idlePolls := polls - polls0
	pmu.Unlock()
	fmt.Printf("idle %v: server %.2f%% of a core, the %d simulated agents %.2f%%; %.1f poll answers/s\n",
		idleWall.Round(time.Second), 100*idleServer.Seconds()/idleWall.Seconds(), *nHosts,
		100*idleAgents.Seconds()/idleWall.Seconds(), float64(idlePolls)/idleWall.Seconds())

	// Ports: one network per group of hosts, each port bound to its host.
	c := newBenchClient(base, token)
	nets := map[int]string{}
	project := func(g int) string { return fmt.Sprintf("5ca1e%027x", g) }
	for g := 0; g*(*perNet) < *nHosts; g++ {
		var out struct{ Network struct{ ID string } }
		network := map[string]any{"name": fmt.Sprint("scale-", g)}
		if *groupPerNet {
			network["project_id"] = project(g)
		}
		if err := c.do("POST", "/v2.0/networks", map[string]any{"network": network}, &out); err != nil {
			return err
		}
		if err := c.do("POST", "/v2.0/subnets", map[string]any{"subnet": map[string]any{"network_id": out.Network.ID, "ip_version": 4,
			"cidr": fmt.Sprintf("10.%d.%d.0/22", 128+g/64, (g%64)*4)}}, nil); err != nil {
			return err
		}
		nets[g] = out.Network.ID
	}
	type created struct {
		id, addr string
		host     int
		at       time.Time
	}
	var ports []created
	s0, a0, t0 = serverCPU(), agentCPU(), time.Now()
	var tick *time.Ticker
	if *rate > 0 {
		tick = time.NewTicker(time.Duration(float64(time.Second) / *rate))
		defer tick.Stop()
	}
	for k := 0; k < *perHost; k++ {
		for i := range hosts {
			if tick != nil {
				<-tick.C
			}
			var out struct {
				Port struct {
					ID       string
					FixedIPs []struct {
						IPAddress string `json:"ip_address"`
					} `json:"fixed_ips"`
				}
			}
			port := map[string]any{"network_id": nets[i/(*perNet)], "binding:host_id": hosts[i].name}
			if *groupPerNet {
				port["project_id"] = project(i / (*perNet))
			}
			if !*groups {
				port["port_security_enabled"], port["security_groups"] = false, []any{}
			}
			if err := c.do("POST", "/v2.0/ports", map[string]any{"port": port}, &out); err != nil {
				return err
			}
			if len(out.Port.FixedIPs) == 0 {
				return fmt.Errorf("port %s has no address", out.Port.ID)
			}
			ports = append(ports, created{out.Port.ID, out.Port.FixedIPs[0].IPAddress, i, time.Now()})
		}
	}
	// Who needs each port: the hosts of its network (a peer), and with
	// security groups every host with a port in its group (a member
	// address), from when the port is bound or from when they have a port
	// of their own there, whichever comes later (a host with no port on a
	// network or in a group needs nothing of it). When did they have all
	// they need of it?
	first := map[int]time.Time{} // host: its first port bound
	for _, p := range ports {
		if _, ok := first[p.host]; !ok {
			first[p.host] = p.at
		}
	}
	var lat []float64
	missed := 0
	deliveries := func() {
		lat, missed = lat[:0], 0
		for _, p := range ports {
			g := p.host / (*perNet)
			from, to := g*(*perNet), min((g+1)*(*perNet), *nHosts)
			if *groups && !*groupPerNet {
				from, to = 0, *nHosts // one group for all
			}
			for i := from; i < to; i++ {
				since, ok := first[i]
				if !ok {
					continue // no port there: it needs none
				}
				var need []string
				if i/(*perNet) == g {
					need = append(need, p.id)
				}
				if *groups {
					need = append(need, "addr:"+p.addr)
				}
				var at time.Time
				hosts[i].mu.Lock()
				for _, k := range need {
					t, seen := hosts[i].seen[k]
					ok = ok && seen
					if t.After(at) {
						at = t
					}
				}
				hosts[i].mu.Unlock()
				if !ok {
					missed++
					continue
				}
				if since.Before(p.at) {
					since = p.at
				}
				lat = append(lat, float64(at.Sub(since).Microseconds())/1000)
			}
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if deliveries(); missed == 0 || time.Now().After(deadline) {
			break
		}
	}
	busyServer, busyAgents, busyWall := serverCPU()-s0, agentCPU()-a0, time.Since(t0)
	sort.Float64s(lat)
	pct := func(q float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(q*float64(len(lat))))]
	}
	fmt.Printf("%d ports bound (%d hosts x %d), %.0f/s: a port reached the hosts that need it in p50 %.1f ms, p99 %.1f ms, max %.1f ms; %d deliveries missed\n",
		len(ports), *nHosts, *perHost, float64(len(ports))/busyWall.Seconds(), pct(0.5), pct(0.99), pct(1), missed)
	fmt.Printf("CPU per port: server %.2f ms, simulated agents %.2f ms; %.1f MB sent to agents in all\n",
		busyServer.Seconds()*1000/float64(len(ports)), busyAgents.Seconds()*1000/float64(len(ports)), float64(bytes)/1e6)
	cancel()
	// What the hosts hold now, against what they were sent to get there.
	var spans int64
	for _, h := range hosts {
		var raw []byte
		if err := c.do("GET", "/neutrino/v1/hosts/"+h.name+"/state?kinds="+kinds, nil, &raw); err != nil {
			return err
		}
		spans += int64(len(raw))
	}
	fmt.Printf("the hosts' states now: %.1f MB in all; sent to them %.1f times that\n", float64(spans)/1e6, float64(bytes)/float64(spans))
	stop() // closes the agents' connections: their long polls end
	wg.Wait()
	if missed > 0 {
		return fmt.Errorf("%d port deliveries missed", missed)
	}
	return nil
}

// scaleServer runs a server as a process of its own, so that its CPU is
// measured apart from the simulated agents': SQLite in a temporary
// directory (or database), unlimited quotas, an admin token.
func scaleServer(database, profile string) (base, token string, cpu func() time.Duration, stop func(), err error) {
	dir, err := os.MkdirTemp("", "neutrino-scale-")
	if err != nil {
		return "", "", nil, nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", nil, nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	self, err := os.Executable()
	if err != nil {
		return "", "", nil, nil, err
	}
	args := []string{"serve", "--listen", addr, "--lb-listen", "", "--km-listen", "", "--data-dir", dir, "--log-level", "warn", "--default-quotas", "network=-1,subnet=-1,port=-1",
		"--max-connections-per-client", "100000"}
	if database != "" {
		args = append(args, "--database", database)
	}
	if profile != "" {
		args = append(args, "--cpuprofile", profile)
	}
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return "", "", nil, nil, err
	}
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return "", "", nil, nil, err
	}
	stop = func() {
		if cmd.ProcessState == nil {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}
		logf.Close()
		os.RemoveAll(dir)
	}
	base = "http://" + addr
	if err := waitHTTP(base+"/", 20*time.Second); err != nil {
		log, _ := os.ReadFile(logf.Name())
		stop()
		return "", "", nil, nil, fmt.Errorf("%w: %s", err, log)
	}
	env := map[string]string{}
	for _, kv := range openrcEnv(filepath.Join(dir, "openrc-admin")) {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = strings.Trim(v, `"'`)
	}
	if token, err = login(func(k string) string { return env[k] }); err != nil {
		stop()
		return "", "", nil, nil, err
	}
	pid := cmd.Process.Pid
	cpu = func() time.Duration {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		f := strings.Fields(string(b[bytesIndexClose(b)+1:]))
		if len(f) < 13 {
			return 0
		}
		// utime and stime, fields 14 and 15, in clock ticks (100 a second).
		u, _ := strconv.ParseInt(f[11], 10, 64)
		k, _ := strconv.ParseInt(f[12], 10, 64)
		return time.Duration(u+k) * 10 * time.Millisecond
	}
	fmt.Printf("server at %s (pid %d), store %s\n", base, pid, map[bool]string{true: "sqlite", false: "database"}[database == ""])
	return base, token, cpu, stop, nil
}

// bytesIndexClose finds the end of /proc/PID/stat's command field.
func bytesIndexClose(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ')' {
			return i
		}
	}
	return -1
}

// embeddedServer starts a server in this process (SQLite in a temporary
// directory, or database) with unlimited quotas and an admin token.
func embeddedServer(database string) (base, token string, stop func(), err error) {
	dir, err := os.MkdirTemp("", "neutrino-bench-")
	if err != nil {
		return "", "", nil, err
	}
	stops := []func(){func() { os.RemoveAll(dir) }}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			for i := len(stops) - 1; i >= 0; i-- {
				stops[i]()
			}
		})
	}
	fail := func(err error) (string, string, func(), error) { stop(); return "", "", nil, err }
	sf := storeFlags{dataDir: dir, database: database}
	ctx := context.Background()
	db, err := sf.open(ctx)
	if err != nil {
		return fail(err)
	}
	stops = append(stops, func() { db.Close() })
	reg, err := services.Build(db, services.Config{Quotas: map[string]int{"network": -1, "port": -1, "subnet": -1}})
	if err != nil {
		return fail(err)
	}
	ident := identity.NewBuiltin(db)
	if _, err := ident.Bootstrap(ctx, "benchadmin", "benchdemo"); err != nil {
		return fail(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	base = "http://" + ln.Addr().String()
	ident.PublicURL = func(*http.Request) string { return base }
	srv := &http.Server{Handler: api.New(reg, ident, ident, slog.New(slog.NewTextHandler(io.Discard, nil)))}
	go srv.Serve(ln)
	stops = append(stops, func() { srv.Close() })
	tok, err := ident.TokenFor(ctx, "admin", "admin")
	if err != nil {
		return fail(err)
	}
	fmt.Printf("embedded server at %s, store %s\n", base, db.Dialect)
	return base, tok, stop, nil
}
