// Package lbaas is the host agent's load-balancer concern: each load
// balancer scheduled here runs as haproxy in a namespace of its own with
// its VIP port (dataplane/lb); the agent reports the revision it applied
// (which completes the load balancer's pending change) and its members'
// health, read from haproxy's stats socket.
package lbaas

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"neutrino/internal/agent/concern"
	"neutrino/internal/attr"
	"neutrino/internal/dataplane"
	"neutrino/internal/dataplane/lb"
	"neutrino/internal/hostapi"
)

// StateRoot keeps each load balancer's haproxy files, under its
// namespace's name.
var StateRoot = "/run/neutrino/haproxy"

// Balancers is the load-balancer reconciler.
type Balancers struct {
	applied concern.Memo
	mu      sync.Mutex              // guards what the reports read
	lbs     map[string]*lb.Balancer // by namespace
	// revision applied and namespace, by load balancer id.
	revision map[string]float64
	nsOf     map[string]string
	// watching: a poll reports the members' health when it changes.
	watching, closed bool
	health           string
}

// New returns the load-balancer reconciler.
func New() *Balancers {
	return &Balancers{lbs: map[string]*lb.Balancer{}, revision: map[string]float64{}, nsOf: map[string]string{}}
}

func (*Balancers) Name() string { return "lbaas" }
func (*Balancers) Kinds() []string {
	return []string{"lb_loadbalancer", "lb_listener", "lb_pool", "lb_member", "lb_healthmonitor", "lb_binding", "port", "subnet", "network"}
}

// Close stops the health watch and leaves haproxy running (the next
// agent adopts it).
func (r *Balancers) Close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}

// Apply implements concern.Reconciler.
func (r *Balancers) Apply(ctx context.Context, env *concern.Env, span *hostapi.Span) error {
	r.applied.Reset(env)
	subnets := map[string]map[string]any{}
	for _, sn := range span.Subnets {
		subnets[attr.Str(sn, "id")] = sn
	}
	ports := map[string]map[string]any{}
	for _, p := range span.Ports {
		ports[attr.Str(p, "id")] = p
	}
	want := map[string]bool{}
	var errs []string
	r.mu.Lock()
	defer r.mu.Unlock()
	done := map[string]float64{}
	for _, o := range span.LoadBalancers {
		id := attr.Str(o, "id")
		rev := attr.Num(o["revision_number"], 0)
		if attr.Str(o, "provisioning_status") == "PENDING_DELETE" || o["admin_state_up"] != true {
			done[id] = rev // swept below
			continue
		}
		ns := env.NSName(concern.LBNS, id)
		spec, ok := specOf(env, o, ports, subnets)
		if !ok {
			continue // its VIP port or network is not wired here yet
		}
		want[ns] = true
		err := r.applied.Once("lb "+ns, fmt.Sprint(spec, dataplane.NamespaceExists(ns)), func() error {
			b := r.lbs[ns]
			if b == nil || !dataplane.NamespaceExists(ns) {
				var err error
				if b, err = lb.Open(ns, env.NetNS, filepath.Join(StateRoot, ns)); err != nil {
					return err
				}
				r.lbs[ns] = b
			}
			return b.Apply(spec)
		})
		if err != nil {
			errs = append(errs, fmt.Sprintf("load balancer %s: %v", id, err))
			continue
		}
		done[id] = rev
		r.nsOf[id] = ns
	}
	dataplane.SweepNamespaces(env.NSPrefix(concern.LBNS), want, func(ns string) {
		lb.Kill(filepath.Join(StateRoot, ns))
		delete(r.lbs, ns)
		delete(r.applied, "lb "+ns)
	})
	r.revision = done
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	go r.Report(context.Background(), env) // a change completes at once
	if !r.watching {
		r.watching = true
		go r.watch(env)
	}
	return nil
}

// watch reports the members' health within a second of a change.
func (r *Balancers) watch(env *concern.Env) {
	for {
		time.Sleep(time.Second)
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return
		}
		var h []string
		for _, id := range slices.Sorted(maps.Keys(r.revision)) {
			if b := r.lbs[r.nsOf[id]]; b != nil {
				m, _, _ := b.Health()
				h = append(h, fmt.Sprint(id, m))
			}
		}
		r.mu.Unlock()
		if now := strings.Join(h, ";"); now != r.health {
			if r.Report(context.Background(), env) == nil {
				r.health = now
			}
		}
	}
}

// specOf is a load balancer's haproxy spec from its bundle (see
// hostapi.Span.LoadBalancers).
func specOf(env *concern.Env, o map[string]any, ports, subnets map[string]map[string]any) (lb.Spec, bool) {
	vip := ports[attr.Str(o, "vip_port_id")]
	if vip == nil || attr.Str(vip, "binding:host_id") != env.HostName {
		return lb.Spec{}, false
	}
	n, ok := env.Nets[attr.Str(vip, "network_id")]
	if !ok {
		return lb.Spec{}, false
	}
	id := attr.Str(vip, "id")
	spec := lb.Spec{VIP: dataplane.PortVeth{Tap: dataplane.TapName(id), Dev: "vip-" + id[:min(11, len(id))], MAC: attr.Str(vip, "mac_address"), MTU: n.MTU}}
	for _, f := range attr.Objects(vip, "fixed_ips") {
		sn := subnets[attr.Str(f, "subnet_id")]
		cidr := attr.Str(sn, "cidr")
		if sn == nil || !strings.Contains(cidr, "/") {
			continue
		}
		spec.Addrs = append(spec.Addrs, attr.Str(f, "ip_address")+cidr[strings.LastIndex(cidr, "/"):])
		if gw := net.ParseIP(attr.Str(sn, "gateway_ip")); gw != nil {
			spec.Gateways = append(spec.Gateways, gw)
		}
	}
	pools := map[string]*lb.Pool{}
	for _, p := range attr.Objects(o, "_pools") {
		pool := &lb.Pool{ID: attr.Str(p, "id"), Protocol: attr.Str(p, "protocol"), Algorithm: attr.Str(p, "lb_algorithm")}
		if sp, _ := p["session_persistence"].(map[string]any); sp != nil {
			pool.Persistence, pool.Cookie = attr.Str(sp, "type"), attr.Str(sp, "cookie_name")
		}
		for _, m := range attr.Objects(p, "_members") {
			pool.Members = append(pool.Members, lb.Member{ID: attr.Str(m, "id"), Address: attr.Str(m, "address"),
				Port: int(attr.Num(m["protocol_port"], 0)), Weight: int(attr.Num(m["weight"], 1)), Backup: m["backup"] == true,
				Down: m["admin_state_up"] != true})
		}
		if hm, _ := p["_healthmonitor"].(map[string]any); hm != nil && hm["admin_state_up"] == true {
			pool.Monitor = &lb.Monitor{Type: attr.Str(hm, "type"), Delay: int(attr.Num(hm["delay"], 5)), Timeout: int(attr.Num(hm["timeout"], 5)),
				Rise: int(attr.Num(hm["max_retries"], 3)), Fall: int(attr.Num(hm["max_retries_down"], 3)),
				Method: attr.Str(hm, "http_method"), Path: attr.Str(hm, "url_path"), Codes: attr.Str(hm, "expected_codes")}
		}
		if p["tls_enabled"] == true {
			t, _ := p["_tls"].(map[string]any)
			pool.TLS, pool.ClientCert, pool.CA, pool.CRL = true, pemOf(t, "cert"), pemOf(t, "ca"), pemOf(t, "crl")
		}
		if p["admin_state_up"] == true && p["_tls_error"] == nil {
			pools[pool.ID] = pool
		}
	}
	for _, l := range attr.Objects(o, "_listeners") {
		if l["admin_state_up"] != true || l["_tls_error"] != nil {
			continue // (a listener whose certificate cannot be read any more is left out)
		}
		li := lb.Listener{ID: attr.Str(l, "id"), Protocol: attr.Str(l, "protocol"),
			Port: int(attr.Num(l["protocol_port"], 0)), ConnLimit: int(attr.Num(l["connection_limit"], -1)),
			ClientData: int(attr.Num(l["timeout_client_data"], 0)), MemberConnect: int(attr.Num(l["timeout_member_connect"], 0)),
			MemberData: int(attr.Num(l["timeout_member_data"], 0)), Pool: pools[attr.Str(l, "default_pool_id")]}
		if t, _ := l["_tls"].(map[string]any); t != nil {
			for _, c := range attr.List(t, "certs") {
				if c, ok := c.(string); ok {
					li.Certs = append(li.Certs, []byte(c))
				}
			}
			li.ClientCA, li.ClientCRL, li.ClientAuth = pemOf(t, "client_ca"), pemOf(t, "client_crl"), attr.Str(l, "client_authentication")
		}
		if h, _ := l["insert_headers"].(map[string]any); h != nil {
			for _, k := range slices.Sorted(maps.Keys(h)) {
				if v := fmt.Sprint(h[k]); strings.EqualFold(v, "true") {
					li.Headers = append(li.Headers, k)
				}
			}
		}
		for _, c := range attr.List(l, "allowed_cidrs") {
			if c, ok := c.(string); ok {
				li.Allowed = append(li.Allowed, c)
			}
		}
		policies := attr.Objects(l, "_l7policies")
		slices.SortStableFunc(policies, func(a, b map[string]any) int {
			return int(attr.Num(a["position"], 0) - attr.Num(b["position"], 0))
		})
		for _, p := range policies {
			if p["admin_state_up"] != true {
				continue
			}
			pol := lb.Policy{ID: attr.Str(p, "id"), Action: attr.Str(p, "action"), Pool: pools[attr.Str(p, "redirect_pool_id")],
				URL: attr.Str(p, "redirect_url"), Prefix: attr.Str(p, "redirect_prefix"), Code: int(attr.Num(p["redirect_http_code"], 0))}
			for _, r := range attr.Objects(p, "_rules") {
				if r["admin_state_up"] == true {
					pol.Rules = append(pol.Rules, lb.Rule{ID: attr.Str(r, "id"), Type: attr.Str(r, "type"), Compare: attr.Str(r, "compare_type"),
						Key: attr.Str(r, "key"), Value: attr.Str(r, "value"), Invert: r["invert"] == true})
				}
			}
			li.Policies = append(li.Policies, pol)
		}
		spec.Listeners = append(spec.Listeners, li)
	}
	return spec, true
}

// pemOf reads a PEM document of a bundle's TLS part.
func pemOf(t map[string]any, key string) []byte {
	if s := attr.Str(t, key); s != "" {
		return []byte(s)
	}
	return nil
}

// Report implements concern.Reporter: each load balancer's applied
// revision and its members' health (sent when it changed, and at every
// heartbeat).
func (r *Balancers) Report(ctx context.Context, env *concern.Env) error {
	r.mu.Lock()
	out := map[string]any{}
	for id, rev := range r.revision {
		members, listeners := map[string]string{}, map[string]lb.Counters{}
		if b := r.lbs[r.nsOf[id]]; b != nil {
			if m, l, err := b.Health(); err == nil {
				members, listeners = m, l
			}
		}
		out[id] = map[string]any{"revision": rev, "members": members, "listeners": listeners}
	}
	r.mu.Unlock()
	if len(out) == 0 {
		return nil
	}
	return env.API.Call(ctx, "PUT", "/neutrino/v1/hosts/"+env.HostName+"/loadbalancers", map[string]any{"loadbalancers": out}, nil)
}
