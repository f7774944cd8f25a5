// Package agent is the host agent: it registers with the server, lists its
// host's desired state at a revision, watches the changes after that
// revision that concern it and applies the deltas the server sends with
// them to its copy of the state, makes the kernel match (idempotently,
// never flushing what is already right) and reports which ports it has
// wired, so port status is reconciled rather than event-driven.
package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"neutrino/internal/agent/concern"
	"neutrino/internal/agent/dhcp"
	"neutrino/internal/agent/l2"
	"neutrino/internal/agent/l3"
	"neutrino/internal/agent/lbaas"
	"neutrino/internal/agent/metering"
	"neutrino/internal/agent/secgroup"
	"neutrino/internal/dataplane"
	"neutrino/internal/hostapi"
)

// Config is one agent's settings.
type Config struct {
	Host     string // this host's name (ports' binding:host_id)
	Server   string // server base URL
	Token    func(ctx context.Context, renew bool) (string, error)
	NetNS    string            // the host's network namespace ("" = this process's)
	Physnets map[string]string // physical network -> interface (flat and VLAN networks)
	VTEP     net.IP            // tunnel endpoint address on the underlay
	Interval time.Duration
	Log      *slog.Logger
	// DHCP makes this host serve DHCP for every network with a
	// DHCP-enabled subnet (one DHCP host per network for now).
	DHCP bool
	// L3 makes this host an L3 agent: it hosts routers scheduled to it.
	L3 bool
	// HAAdvert is HA routers' VRRP advertisement interval (0: the
	// default, l3.DefaultHAAdvert).
	HAAdvert time.Duration
	// L3Mode is the L3 agent's mode: l3.ModeLegacy (""), l3.ModeDVR or
	// l3.ModeDVRSNAT.
	L3Mode string
	// LBaaS makes this host a load-balancer agent: it runs the load
	// balancers scheduled to it (haproxy).
	LBaaS bool
	// Synced, if set, is called after each sync has made the kernel match
	// the state at a revision, with the ports wired (benchmarks use it).
	Synced func(revision int64, active int)
}

// Agent runs one host.
type Agent struct {
	cfg  Config
	hc   *http.Client
	host *dataplane.Host
	// reconcilers run in order at each pass, one per concern.
	reconcilers []concern.Reconciler
	status      map[string]string // each reconciler's last error ("" when it succeeded)

	state      *hostapi.Span // the host's desired state, listed then kept current by deltas
	span       int64         // its revision
	lastList   time.Time
	lastSync   time.Time // the last pass
	lastFull   time.Time // the last pass that applied everything
	reported   string    // the ports last reported wired
	lastReport time.Time

	mu    sync.Mutex // token and status are shared by the heartbeat and the sync loop
	token string
}

// l3Mode is the L3 agent's mode as reported.
func (a *Agent) l3Mode() string {
	if a.cfg.L3Mode == "" {
		return l3.ModeLegacy
	}
	return a.cfg.L3Mode
}

// New opens the host's kernel.
func New(cfg Config) (*Agent, error) {
	if cfg.Interval == 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	switch cfg.L3Mode {
	case "", l3.ModeLegacy, l3.ModeDVR, l3.ModeDVRSNAT:
	default:
		return nil, fmt.Errorf("agent: L3 mode %q: want legacy, dvr or dvr_snat", cfg.L3Mode)
	}
	h, err := dataplane.OpenHost(cfg.NetNS, cfg.VTEP)
	if err != nil {
		return nil, err
	}
	h.Physnets = cfg.Physnets
	a := &Agent{cfg: cfg, hc: &http.Client{Timeout: 90 * time.Second}, host: h, status: map[string]string{}}
	// The concerns this host runs, in order: networks first; filters
	// before any port is wired; DHCP and routers on the wired networks;
	// metering in the routers' namespaces; ports last.
	a.reconcilers = []concern.Reconciler{&l2.Networks{}, &secgroup.Filters{}}
	if cfg.DHCP {
		a.reconcilers = append(a.reconcilers, dhcp.New())
	}
	if cfg.L3 {
		a.reconcilers = append(a.reconcilers, l3.New(a.cfg.HAAdvert, a.cfg.L3Mode), metering.New())
	}
	if cfg.LBaaS {
		a.reconcilers = append(a.reconcilers, lbaas.New())
	}
	a.reconcilers = append(a.reconcilers, &l2.Ports{})
	return a, nil
}

// Close stops what the reconcilers run (DHCP responders, advertisement
// senders; their namespaces stay, so an agent restart does not interrupt
// leases already given) and releases the handles.
func (a *Agent) Close() {
	for _, r := range a.reconcilers {
		r.Close()
	}
	a.host.Close()
}

// env is a pass's environment for the reconcilers.
func (a *Agent) env(full bool) *concern.Env {
	return &concern.Env{Host: a.host, HostName: a.cfg.Host, NetNS: a.cfg.NetNS, API: apiClient{a}, Log: a.cfg.Log, Full: full}
}

type apiClient struct{ a *Agent }

func (c apiClient) Call(ctx context.Context, method, path string, body, out any) error {
	return c.a.call(ctx, method, path, body, out)
}

var errGone = errors.New("agent: revision compacted")

// Run reports, syncs and watches until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	go a.heartbeat(ctx)
	// A device appearing (a VM plugged in) is reconciled at once.
	kick := make(chan struct{}, 1)
	if err := a.host.WatchTaps(ctx.Done(), func(string) {
		select {
		case kick <- struct{}{}:
		default:
		}
	}); err != nil {
		a.cfg.Log.Warn("no link events; relying on periodic reconciliation", "err", err)
	}
	var rev int64 = -1
	for ctx.Err() == nil {
		if rev < 0 {
			r, err := a.sync(ctx)
			if err != nil {
				a.cfg.Log.Warn("sync failed", "err", err)
				sleep(ctx, time.Second)
				continue
			}
			rev = r
		}
		wctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-kick:
				cancel()
			case <-wctx.Done():
			}
		}()
		changes, next, delta, err := a.watch(wctx, rev, a.span)
		kicked := wctx.Err() != nil && ctx.Err() == nil
		cancel()
		if kicked || err == nil && len(changes) == 0 && time.Since(a.lastSync) > reconcileEvery {
			// A new device, or a quiet period: make the host match its
			// state again (and, once in a long while, list that state
			// again: a safety net, not a need).
			if time.Since(a.lastList) > relistEvery {
				rev = -1
			} else if err := a.pass(ctx); err != nil {
				a.cfg.Log.Warn("pass failed", "err", err)
				rev = -1
			}
			continue
		}
		switch {
		case errors.Is(err, errGone):
			rev = -1 // fell behind a compaction: list again
			continue
		case err != nil:
			if ctx.Err() == nil {
				a.cfg.Log.Warn("watch failed", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		rev = next
		switch {
		case delta != nil && a.state != nil && delta.From == a.span:
			// What changed in the host's state: applied to the copy
			// held here, no list needed.
			a.state.Apply(delta)
			a.span = delta.Revision
			if err := a.pass(ctx); err != nil {
				a.cfg.Log.Warn("pass failed", "err", err)
				rev = -1
			}
		case len(changes) > 0:
			// A server that does not know this host's state (another
			// one, or restarted): the state is listed again at the new
			// revision (one host-scoped read per batch of changes).
			rev = -1
		}
	}
	return nil
}

// relistEvery is how long a host goes at most without listing its whole
// state again, though deltas keep it current.
const relistEvery = 10 * time.Minute

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (a *Agent) heartbeat(ctx context.Context) {
	reports := []map[string]any{{"agent_type": hostapi.HostAgentType, "binary": "neutrino-agent", "host": a.cfg.Host,
		"topic": "N/A", "start_flag": true,
		"configurations": a.configurations()}}
	if a.cfg.DHCP {
		// Serving DHCP shows as a DHCP agent of its own, which networks are
		// scheduled to.
		reports = append(reports, map[string]any{"agent_type": hostapi.DHCPAgentType, "binary": "neutrino-dhcp-agent",
			"host": a.cfg.Host, "topic": "dhcp_agent", "start_flag": true, "configurations": map[string]any{}})
	}
	if a.cfg.L3 {
		reports = append(reports, map[string]any{"agent_type": hostapi.L3AgentType, "binary": "neutrino-l3-agent",
			"host": a.cfg.Host, "topic": "l3_agent", "start_flag": true, "configurations": map[string]any{"agent_mode": a.l3Mode()}})
	}
	if a.cfg.LBaaS {
		reports = append(reports, map[string]any{"agent_type": hostapi.LBAgentType, "binary": "neutrino-lbaas-agent",
			"host": a.cfg.Host, "topic": "n-lbaasv2-agent", "start_flag": true, "configurations": map[string]any{"device_drivers": []any{"haproxy_ns"}}})
	}
	for {
		for _, report := range reports {
			if err := a.call(ctx, http.MethodPost, "/neutrino/v1/agents/report", map[string]any{"agent": report}, nil); err != nil {
				if ctx.Err() != nil {
					return
				}
				a.cfg.Log.Warn("report failed", "err", err)
			} else {
				report["start_flag"] = false
			}
		}
		for _, r := range a.reconcilers {
			if rep, ok := r.(concern.Reporter); ok {
				if err := rep.Report(ctx, a.env(false)); err != nil && ctx.Err() == nil {
					a.cfg.Log.Warn("report failed", "concern", r.Name(), "err", err)
				}
			}
		}
		reports[0]["configurations"] = a.configurations()
		sleep(ctx, a.cfg.Interval)
		if ctx.Err() != nil {
			return
		}
	}
}

// configurations is what the host agent tells the server it can wire:
// VXLAN from its tunnel endpoint, flat and VLAN networks on the physical
// networks it has an interface for (the server binds ports by this).
func (a *Agent) configurations() map[string]any {
	mappings := map[string]any{}
	for name, ifname := range a.cfg.Physnets {
		mappings[name] = ifname
	}
	conf := map[string]any{"interface_mappings": mappings, "bridge_mappings": map[string]any{}, "l2_population": true,
		"tunnel_types": []any{}}
	if a.cfg.VTEP != nil {
		conf["tunneling_ip"] = a.cfg.VTEP.String()
		conf["tunnel_types"] = []any{"vxlan"}
	}
	// Each concern's state after its last pass.
	recon := map[string]any{}
	a.mu.Lock()
	for _, r := range a.reconcilers {
		st := map[string]any{"ok": true}
		if err, seen := a.status[r.Name()]; !seen {
			st["ok"] = false
			st["error"] = "not run yet"
		} else if err != "" {
			st["ok"], st["error"] = false, err
		}
		recon[r.Name()] = st
	}
	a.mu.Unlock()
	conf["reconcilers"] = recon
	return conf
}

// reconcileEvery bounds how long the host goes without listing its state
// again (and so applying all of it), whatever changes or does not.
const reconcileEvery = 30 * time.Second

// watch long-polls the server for the changes after revision after that
// concern the state this host was given at revision span (the server
// judges), and returns them with the revision to resume after and, when
// the server knows that state, the delta that brings it there.
func (a *Agent) watch(ctx context.Context, after, span int64) ([]hostapi.Change, int64, *hostapi.Delta, error) {
	var out struct {
		Changes  []hostapi.Change `json:"changes"`
		Revision int64            `json:"revision"`
		Delta    *hostapi.Delta   `json:"delta"`
	}
	path := fmt.Sprintf("/neutrino/v1/hosts/%s/changes?after=%d&span=%d&kinds=%s&wait=25&delta=1", a.cfg.Host, after, span, a.kinds())
	err := a.call(ctx, http.MethodGet, path, nil, &out)
	return out.Changes, max(after, out.Revision), out.Delta, err
}

// kinds are the kinds of change the enabled concerns depend on.
func (a *Agent) kinds() string {
	seen := map[string]bool{}
	var out []string
	for _, r := range a.reconcilers {
		for _, k := range r.Kinds() {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// sync lists the host's state and makes the kernel match it.
func (a *Agent) sync(ctx context.Context) (int64, error) {
	var st hostapi.Span
	path := "/neutrino/v1/hosts/" + a.cfg.Host + "/state?kinds=" + a.kinds()
	if a.cfg.DHCP {
		path += "&dhcp=1"
	}
	if err := a.call(ctx, http.MethodGet, path, nil, &st); err != nil {
		return 0, err
	}
	a.state, a.span, a.lastList = &st, st.Revision, time.Now()
	a.reported = "" // a new list: report the ports again
	if err := a.pass(ctx); err != nil {
		return 0, err
	}
	return st.Revision, nil
}

// pass makes the kernel match the state held and reports the ports wired
// when they are not what was last reported (or a while ago: a report lost
// cannot leave a port's status wrong for long).
func (a *Agent) pass(ctx context.Context) error {
	active, err := a.apply(ctx, a.state)
	if err != nil {
		a.cfg.Log.Warn("apply incomplete", "err", err)
	}
	a.lastSync = time.Now()
	if a.cfg.Synced != nil {
		a.cfg.Synced(a.span, len(active))
	}
	sort.Strings(active)
	if key := strings.Join(active, ","); key != a.reported || time.Since(a.lastReport) > reconcileEvery {
		if err := a.call(ctx, http.MethodPut, "/neutrino/v1/hosts/"+a.cfg.Host+"/ports", map[string]any{"active": active}, nil); err != nil {
			a.reported = ""
			return err
		}
		a.reported, a.lastReport = key, time.Now()
	}
	return nil
}

// apply runs every reconciler on the span and returns the ports now wired.
// What a reconciler applied unchanged since the last full pass it need not
// apply again (a host with many networks and routers would otherwise redo
// all of them for every change); every reconcileEvery, everything is.
func (a *Agent) apply(ctx context.Context, st *hostapi.Span) ([]string, error) {
	full := time.Since(a.lastFull) > reconcileEvery
	if full {
		a.lastFull = time.Now()
	}
	env := a.env(full)
	var errs []string
	for _, r := range a.reconcilers {
		err := r.Apply(ctx, env, st)
		a.mu.Lock()
		a.status[r.Name()] = ""
		if err != nil {
			a.status[r.Name()] = err.Error()
			errs = append(errs, r.Name()+": "+err.Error())
		}
		a.mu.Unlock()
	}
	if len(errs) > 0 {
		return env.Active, errors.New(strings.Join(errs, "; "))
	}
	return env.Active, nil
}

func (a *Agent) call(ctx context.Context, method, path string, body, out any) error {
	for attempt := 0; attempt < 2; attempt++ {
		a.mu.Lock()
		if a.token == "" && a.cfg.Token != nil {
			t, err := a.cfg.Token(ctx, attempt > 0)
			if err != nil {
				a.mu.Unlock()
				return err
			}
			a.token = t
		}
		token := a.token
		a.mu.Unlock()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(ctx, method, a.cfg.Server+path, rd)
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Auth-Token", token)
		resp, err := a.hc.Do(req)
		if err != nil {
			return err
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusUnauthorized && attempt == 0:
			a.mu.Lock()
			a.token = ""
			a.mu.Unlock()
			continue
		case resp.StatusCode == http.StatusGone:
			return errGone
		case resp.StatusCode >= 300:
			return fmt.Errorf("%s %s: HTTP %d %s", method, path, resp.StatusCode, data)
		}
		if out != nil {
			return json.Unmarshal(data, out)
		}
		return nil
	}
	return fmt.Errorf("%s %s: unauthorized", method, path)
}
