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
	"sort"
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
// its changes, lists again when told of one. Then ports are bound to the
// hosts, and each host's first sight of each port that concerns it is
// timed; the server's CPU is measured idle and per change.
func scale(args []string) error {
	fs := flag.NewFlagSet("bench scale", flag.ExitOnError)
	nHosts := fs.Int("hosts", 100, "simulated host agents")
	perHost := fs.Int("ports-per-host", 10, "ports bound to each host")
	perNet := fs.Int("hosts-per-network", 10, "hosts sharing each network")
	interval := fs.Duration("report-interval", 5*time.Second, "each agent's heartbeat interval")
	idle := fs.Duration("idle", 30*time.Second, "how long to measure the idle cloud")
	database := fs.String("database", "", "database DSN (default: SQLite in a temporary directory)")
	fs.Parse(args)

	base, token, stop, err := embeddedServer(*database)
	if err != nil {
		return err
	}
	defer stop()
	const kinds = "agent,network,port,security_group,subnet" // an agent's L2 and security group concerns
	type host struct {
		name string
		mu   sync.Mutex
		seen map[string]time.Time // port id -> when the host first heard of it
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
			list := func() int64 {
				var st struct {
					Revision int64
					Ports    []struct{ ID string }
					Peers    []struct {
						PortID string `json:"port_id"`
					}
				}
				var raw []byte
				if err := c.do("GET", "/neutrino/v1/hosts/"+h.name+"/state?kinds="+kinds, nil, &raw); err != nil {
					return -1
				}
				pmu.Lock()
				bytes += int64(len(raw))
				pmu.Unlock()
				now := time.Now()
				json.Unmarshal(raw, &st)
				// A port the host needs is in its state: its own, or a peer
				// on one of its networks.
				h.mu.Lock()
				for _, p := range st.Ports {
					if _, ok := h.seen[p.ID]; !ok {
						h.seen[p.ID] = now
					}
				}
				for _, p := range st.Peers {
					if _, ok := h.seen[p.PortID]; !ok {
						h.seen[p.PortID] = now
					}
				}
				h.mu.Unlock()
				// As an agent does once it has wired them: its ports are up.
				active := []string{}
				for _, p := range st.Ports {
					active = append(active, p.ID)
				}
				if err := c.do("PUT", "/neutrino/v1/hosts/"+h.name+"/ports", map[string]any{"active": active}, nil); err != nil {
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
				if err := c.do("GET", path, nil, &raw); err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				var ans struct {
					Changes  []struct{}
					Revision int64
				}
				json.Unmarshal(raw, &ans)
				pmu.Lock()
				polls++
				bytes += int64(len(raw))
				pmu.Unlock()
				after = max(after, ans.Revision)
				if len(ans.Changes) == 0 {
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
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	// Idle: heartbeats only. (The simulated agents run in this process
	// too: what is measured is the whole, server and agents.)
	pmu.Lock()
	polls0 := polls
	pmu.Unlock()
	c0, t0 := cpu(), time.Now()
	time.Sleep(*idle)
	idleCPU, idleWall := cpu()-c0, time.Since(t0)
	pmu.Lock()
	idlePolls := polls - polls0
	pmu.Unlock()
	fmt.Printf("idle %v: %.2f%% of a core (server and %d agents), %.1f poll answers/s\n",
		idleWall.Round(time.Second), 100*idleCPU.Seconds()/idleWall.Seconds(), *nHosts, float64(idlePolls)/idleWall.Seconds())

	// Ports: one network per group of hosts, each port bound to its host.
	c := newBenchClient(base, token)
	nets := map[int]string{}
	for g := 0; g*(*perNet) < *nHosts; g++ {
		var out struct{ Network struct{ ID string } }
		if err := c.do("POST", "/v2.0/networks", map[string]any{"network": map[string]any{"name": fmt.Sprint("scale-", g)}}, &out); err != nil {
			return err
		}
		if err := c.do("POST", "/v2.0/subnets", map[string]any{"subnet": map[string]any{"network_id": out.Network.ID, "ip_version": 4,
			"cidr": fmt.Sprintf("10.%d.%d.0/22", 128+g/64, (g%64)*4)}}, nil); err != nil {
			return err
		}
		nets[g] = out.Network.ID
	}
	type created struct {
		id   string
		host int
		at   time.Time
	}
	var ports []created
	c0, t0 = cpu(), time.Now()
	for k := 0; k < *perHost; k++ {
		for i := range hosts {
			var out struct{ Port struct{ ID string } }
			if err := c.do("POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": nets[i/(*perNet)],
				"binding:host_id": hosts[i].name}}, &out); err != nil {
				return err
			}
			ports = append(ports, created{out.Port.ID, i, time.Now()})
		}
	}
	// Who needs each port: the hosts of its network. When did they have it?
	var lat []float64
	missed := 0
	deliveries := func() {
		lat, missed = lat[:0], 0
		for _, p := range ports {
			g := p.host / (*perNet)
			for i := g * (*perNet); i < min((g+1)*(*perNet), *nHosts); i++ {
				hosts[i].mu.Lock()
				at, ok := hosts[i].seen[p.id]
				hosts[i].mu.Unlock()
				if !ok {
					missed++
					continue
				}
				lat = append(lat, float64(at.Sub(p.at).Microseconds())/1000)
			}
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if deliveries(); missed == 0 || time.Now().After(deadline) {
			break
		}
	}
	busyCPU, busyWall := cpu()-c0, time.Since(t0)
	sort.Float64s(lat)
	pct := func(q float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(q*float64(len(lat))))]
	}
	fmt.Printf("%d ports bound (%d hosts x %d), %.0f/s: a port reached the hosts that need it in p50 %.1f ms, p99 %.1f ms, max %.1f ms; %d deliveries missed\n",
		len(ports), *nHosts, *perHost, float64(len(ports))/busyWall.Seconds(), pct(0.5), pct(0.99), pct(1), missed)
	fmt.Printf("CPU per port change: %.2f ms (server and agents); %.1f MB sent to agents in all\n",
		busyCPU.Seconds()*1000/float64(len(ports)), float64(bytes)/1e6)
	cancel()
	stop() // closes the agents' connections: their long polls end
	wg.Wait()
	if missed > 0 {
		return fmt.Errorf("%d port deliveries missed", missed)
	}
	return nil
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
