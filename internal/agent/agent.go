// Package agent is the host agent: it registers with the server, lists its
// host's desired state at a revision, watches the change log after that
// revision, makes the kernel match (idempotently, never flushing what is
// already right) and reports which ports it has wired, so port status is
// reconciled rather than event-driven.
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
	// Synced, if set, is called after each sync has made the kernel match
	// the state at a revision, with the ports wired (benchmarks use it).
	Synced func(revision int64, active int)
}

// Agent runs one host.
type Agent struct {
	cfg   Config
	hc    *http.Client
	host  *dataplane.Host
	wired map[string]dataplane.Network // networks set up, by id
	dhcp  map[string]*dhcpServer       // DHCP responders, by network
	// routers holds per router namespace what outlives a sync.
	routers map[string]*routerState

	interest *interest // what the last sync depended on (nil: unknown)
	lastSync time.Time
	// applied remembers what was applied (key -> the value applied) since
	// lastFull, the last pass that applied everything.
	applied  map[string]string
	lastFull time.Time

	mu    sync.Mutex // token is shared by the heartbeat and the sync loop
	token string

	mmu    sync.Mutex        // meters are read by the heartbeat
	meters map[string]*meter // metering per router namespace
}

// New opens the host's kernel.
func New(cfg Config) (*Agent, error) {
	if cfg.Interval == 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	h, err := dataplane.OpenHost(cfg.NetNS, cfg.VTEP)
	if err != nil {
		return nil, err
	}
	h.Physnets = cfg.Physnets
	return &Agent{cfg: cfg, hc: &http.Client{Timeout: 90 * time.Second}, host: h, wired: map[string]dataplane.Network{},
		dhcp: map[string]*dhcpServer{}, routers: map[string]*routerState{}, meters: map[string]*meter{}}, nil
}

// Close stops the DHCP responders (their namespaces stay, so an agent
// restart does not interrupt leases already given) and releases the handles.
func (a *Agent) Close() {
	for _, s := range a.dhcp {
		s.cancel()
	}
	a.host.Close()
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
		changes, err := a.watch(wctx, rev)
		kicked := wctx.Err() != nil && ctx.Err() == nil
		cancel()
		if kicked || err == nil && len(changes) == 0 {
			// A new device, or a quiet period (the long poll timed out):
			// reconcile the host against the current state.
			if r, err := a.sync(ctx); err == nil {
				rev = r
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
		relevant := time.Since(a.lastSync) > reconcileEvery
		for _, c := range changes {
			rev = max(rev, c.Revision)
			if a.interest.relevant(c) {
				relevant = true
			}
		}
		if relevant {
			// The host's state is listed again at the new revision (one
			// host-scoped read per batch of changes).
			if r, err := a.sync(ctx); err != nil {
				a.cfg.Log.Warn("sync failed", "err", err)
				rev = -1
			} else {
				rev = r
			}
		}
	}
	return nil
}

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
			"host": a.cfg.Host, "topic": "l3_agent", "start_flag": true, "configurations": map[string]any{"agent_mode": "legacy"}})
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
		if a.cfg.L3 {
			if err := a.ReportMetering(ctx); err != nil && ctx.Err() == nil {
				a.cfg.Log.Warn("metering report failed", "err", err)
			}
		}
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
	return conf
}

type change struct {
	Revision int64          `json:"revision"`
	Kind     string         `json:"kind"`
	ID       string         `json:"id"`
	Parent   string         `json:"parent_id"`
	Object   map[string]any `json:"object"` // nil for deletes
}

// reconcileEvery bounds how long the host goes without a full sync while
// changes keep coming that do not concern it.
const reconcileEvery = 30 * time.Second

// interest is what the host's last listed state depends on, so that
// changes elsewhere in the cloud do not make it list again.
type interest struct {
	host     string
	dhcp     bool
	l3       bool
	ports    map[string]bool // bound here, or members of groups used here
	networks map[string]bool
	groups   map[string]bool // used here, or remote groups of rules used here
	vteps    map[string]string
}

func newInterest(host string, dhcp bool, st *hostapi.Span) *interest {
	in := &interest{host: host, dhcp: dhcp, ports: map[string]bool{}, networks: map[string]bool{}, groups: map[string]bool{},
		vteps: map[string]string{}}
	for _, p := range st.Ports {
		in.ports[str(p, "id")] = true
	}
	for _, id := range st.MemberPorts {
		in.ports[id] = true
	}
	for _, n := range st.Networks {
		in.networks[str(n, "id")] = true
	}
	for _, g := range st.SecurityGroups {
		in.groups[str(g, "id")] = true
	}
	for g := range st.GroupMembers {
		in.groups[g] = true
	}
	for _, p := range st.Peers {
		in.vteps[p.Host] = p.VTEP
	}
	return in
}

// relevant reports whether a change may alter this host's state. Before
// the first listing everything is.
func (in *interest) relevant(c change) bool {
	if in == nil {
		return true
	}
	o := c.Object
	switch c.Kind {
	case "port":
		if in.ports[c.ID] || in.networks[c.Parent] || str(o, "binding:host_id") == in.host {
			return true
		}
		groups, _ := o["security_groups"].([]any)
		for _, g := range groups {
			if s, _ := g.(string); in.groups[s] {
				return true
			}
		}
		return false
	case "network":
		return in.networks[c.ID]
	case "subnet":
		return in.networks[c.Parent]
	case "security_group":
		return in.groups[c.ID]
	case "agent":
		// Heartbeats change nothing here; a peer host's tunnel endpoint,
		// or an agent coming or going, may.
		if o == nil {
			return true
		}
		conf, _ := o["configurations"].(map[string]any)
		vtep, ok := in.vteps[str(o, "host")]
		return ok && vtep != str(conf, "tunneling_ip")
	case "dhcp_binding":
		return in.dhcp
	case "router", "floatingip", "l3_binding", "metering_label", "metering_label_rule":
		return in.l3
	}
	return false
}

func (a *Agent) watch(ctx context.Context, after int64) ([]change, error) {
	var out struct {
		Changes []change `json:"changes"`
	}
	err := a.call(ctx, http.MethodGet, fmt.Sprintf("/neutrino/v1/changes?after=%d&wait=25", after), nil, &out)
	return out.Changes, err
}

// sync lists the host's state and makes the kernel match it.
func (a *Agent) sync(ctx context.Context) (int64, error) {
	var st hostapi.Span
	path := "/neutrino/v1/hosts/" + a.cfg.Host + "/state"
	if a.cfg.DHCP {
		path += "?dhcp=1"
	}
	if err := a.call(ctx, http.MethodGet, path, nil, &st); err != nil {
		return 0, err
	}
	active, err := a.apply(ctx, &st)
	if err != nil {
		a.cfg.Log.Warn("apply incomplete", "err", err)
	}
	a.interest, a.lastSync = newInterest(a.cfg.Host, a.cfg.DHCP, &st), time.Now()
	a.interest.l3 = a.cfg.L3
	if a.cfg.Synced != nil {
		a.cfg.Synced(st.Revision, len(active))
	}
	if err := a.call(ctx, http.MethodPut, "/neutrino/v1/hosts/"+a.cfg.Host+"/ports", map[string]any{"active": active}, nil); err != nil {
		return 0, err
	}
	return st.Revision, nil
}

func str(o map[string]any, k string) string { s, _ := o[k].(string); return s }

// network reads a network's segment as the data plane needs it.
func network(o map[string]any) dataplane.Network {
	n := dataplane.Network{ID: str(o, "id"), Type: str(o, "provider:network_type"), PhysicalNetwork: str(o, "provider:physical_network")}
	if v, ok := o["provider:segmentation_id"].(float64); ok {
		n.SegmentationID = int(v)
	}
	if v, ok := o["mtu"].(float64); ok {
		n.MTU = int(v)
	}
	return n
}

// apply wires what the state asks for and returns the ports now wired.
func (a *Agent) apply(ctx context.Context, st *hostapi.Span) ([]string, error) {
	var errs []string
	// What was applied unchanged since the last full pass is not applied
	// again (a host with many networks and routers would otherwise redo
	// all of them for every change); every reconcileEvery, everything is.
	if time.Since(a.lastFull) > reconcileEvery || a.applied == nil {
		a.applied, a.lastFull = map[string]string{}, time.Now()
	}
	once := func(key, value string, fn func() error) error {
		if a.applied[key] == value {
			return nil
		}
		delete(a.applied, key)
		if err := fn(); err != nil {
			return err
		}
		a.applied[key] = value
		return nil
	}
	nets := map[string]dataplane.Network{}
	for _, o := range st.Networks {
		n := network(o)
		if err := once("network "+n.ID, fmt.Sprint(n), func() error { return a.host.EnsureNetwork(n) }); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		nets[n.ID] = n
	}
	peers := map[string][]dataplane.Peer{}
	for _, p := range st.Peers {
		mac, err1 := net.ParseMAC(p.MACAddress)
		vtep := net.ParseIP(p.VTEP)
		if err1 != nil || vtep == nil {
			continue // that host's agent has not reported its endpoint yet
		}
		var ips []net.IP
		for _, a := range p.IPs {
			if ip := net.ParseIP(a); ip != nil {
				ips = append(ips, ip)
			}
		}
		peers[p.NetworkID] = append(peers[p.NetworkID], dataplane.Peer{MAC: mac, IPs: ips, VTEP: vtep})
	}
	for id, n := range nets {
		if err := once("peers "+id, fmt.Sprint(n, peers[id]), func() error { return a.host.SetPeers(n, peers[id]) }); err != nil {
			errs = append(errs, err.Error())
		}
	}
	// Filters first: a port is never wired before its security groups and
	// anti-spoofing are in place; if they cannot be installed, filtered
	// ports are not wired at all.
	pf, groups := filters(st)
	unsafe := map[string]bool{}
	if err := a.host.SetFilters(pf, groups, st.GroupMembers); err != nil {
		errs = append(errs, err.Error())
		for _, f := range pf {
			unsafe[f.PortID] = true
		}
	}
	if a.cfg.DHCP {
		errs = append(errs, a.applyDHCP(ctx, st, nets)...)
	}
	if a.cfg.L3 {
		errs = append(errs, a.applyL3(ctx, st, nets, once)...)
	}
	active := []string{}
	for _, p := range st.Ports {
		n, ok := nets[str(p, "network_id")]
		if !ok || unsafe[str(p, "id")] {
			continue
		}
		if err := a.host.EnsurePort(str(p, "id"), n); err != nil {
			continue // no device yet: the VM is not plugged in
		}
		active = append(active, str(p, "id"))
	}
	// Networks with no port left here go away, including those deleted
	// while this agent was not running.
	keep := make([]dataplane.Network, 0, len(nets))
	for _, n := range nets {
		keep = append(keep, n)
	}
	if err := a.host.Prune(keep); err != nil {
		errs = append(errs, err.Error())
	}
	a.wired = nets
	for key := range a.applied {
		if id, ok := strings.CutPrefix(key, "network "); ok && nets[id].ID == "" {
			delete(a.applied, key) // pruned: made again if it returns
			delete(a.applied, "peers "+id)
		}
	}
	sort.Strings(active)
	if len(errs) > 0 {
		return active, errors.New(strings.Join(errs, "; "))
	}
	return active, nil
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

// filters derives each port's security state: ports with port security and
// not owned by the network (DHCP, routers) are filtered by their groups'
// ingress and egress rules.
func filters(st *hostapi.Span) ([]dataplane.PortFilter, []dataplane.SecurityGroup) {
	num := func(v any) int {
		if f, ok := v.(float64); ok {
			return int(f)
		}
		return -1
	}
	var groups []dataplane.SecurityGroup
	for _, g := range st.SecurityGroups {
		sg := dataplane.SecurityGroup{ID: str(g, "id")}
		for _, r := range list(g, "security_group_rules") {
			proto := ""
			if v := r["protocol"]; v != nil {
				proto = fmt.Sprint(v)
			}
			fr := dataplane.FilterRule{EtherType: str(r, "ethertype"), Protocol: proto,
				PortMin: num(r["port_range_min"]), PortMax: num(r["port_range_max"]),
				RemoteCIDR: str(r, "normalized_cidr"), RemoteGroup: str(r, "remote_group_id")}
			if str(r, "direction") == "ingress" {
				sg.Ingress = append(sg.Ingress, fr)
			} else {
				sg.Egress = append(sg.Egress, fr)
			}
		}
		groups = append(groups, sg)
	}
	var out []dataplane.PortFilter
	for _, p := range st.Ports {
		if p["port_security_enabled"] != true || strings.HasPrefix(str(p, "device_owner"), "network:") {
			continue
		}
		f := dataplane.PortFilter{PortID: str(p, "id"), MAC: str(p, "mac_address")}
		for _, ip := range list(p, "fixed_ips") {
			f.Addrs = append(f.Addrs, str(ip, "ip_address"))
		}
		for _, pair := range list(p, "allowed_address_pairs") {
			f.Addrs = append(f.Addrs, str(pair, "ip_address"))
			if m := str(pair, "mac_address"); m != "" && m != f.MAC {
				f.PairMACs = append(f.PairMACs, m)
			}
		}
		sgs, _ := p["security_groups"].([]any)
		for _, gid := range sgs {
			f.Groups = append(f.Groups, fmt.Sprint(gid))
		}
		out = append(out, f)
	}
	return out, groups
}
