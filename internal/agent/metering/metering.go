// Package metering is the host agent's metering concern: in each router
// namespace hosted here, a table counting the traffic of the metering
// labels that apply to the router (router.Meter), and the report of
// the counts to the server at each heartbeat.
package metering

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"

	"neutrino/internal/agent/concern"
	"neutrino/internal/agent/l3"
	"neutrino/internal/attr"
	"neutrino/internal/dataplane"
	"neutrino/internal/dataplane/router"
	"neutrino/internal/hostapi"
)

type meter struct {
	routerID string
	nsID     string // the namespace the table is in (a new one starts afresh)
	m        *router.Meter
}

// Meters is the metering reconciler.
type Meters struct {
	mu     sync.Mutex // the heartbeat reads the counts
	meters map[string]*meter
}

// New returns the metering reconciler.
func New() *Meters { return &Meters{meters: map[string]*meter{}} }

func (*Meters) Name() string { return "metering" }
func (*Meters) Kinds() []string {
	return []string{"metering_label", "metering_label_rule", "router", "l3_binding", "port"}
}
func (*Meters) Close() {}

// Apply implements concern.Reconciler: it runs after the L3 reconciler,
// in the namespaces that made.
func (r *Meters) Apply(ctx context.Context, env *concern.Env, span *hostapi.Span) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	want := map[string]bool{}
	var errs []error
	for _, rt := range span.Routers {
		if rt["admin_state_up"] != true {
			continue
		}
		rid := attr.Str(rt, "id")
		gw := ""
		for _, p := range l3.Ports(span, rid) {
			if _, wired := env.Nets[attr.Str(p, "network_id")]; wired && attr.Str(p, "device_owner") == hostapi.OwnerRouterGateway {
				gw = l3.Dev(p)
			}
		}
		// Where the router's traffic leaves: its gateway; for a
		// distributed router, the gateway of its SNAT part and, in its
		// distributed part, the link its floating IPs leave by.
		type place struct{ ns, dev string }
		places := []place{{env.NSName(concern.RouterNS, rid), gw}}
		if rt["distributed"] == true {
			places = []place{{env.NSName(concern.SNATNS, rid), gw}, {env.NSName(concern.RouterNS, rid), router.RFP(rid[:min(11, len(rid))])}}
		}
		for _, pl := range places {
			id := dataplane.NamespaceID(pl.ns)
			if id == "" {
				continue // the router's namespace is not there (yet)
			}
			want[pl.ns] = true
			m := r.meters[pl.ns]
			if m == nil || m.nsID != id {
				m = &meter{routerID: rid, nsID: id, m: router.NewMeter(pl.ns)}
				r.meters[pl.ns] = m
			}
			if err := m.m.Set(pl.dev, labelsFor(rt, span.MeteringLabels)); err != nil {
				errs = append(errs, fmt.Errorf("router %s: %w", rid, err))
			}
		}
	}
	for ns := range r.meters {
		if !want[ns] {
			delete(r.meters, ns)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("metering: %v", errs)
	}
	return nil
}

// labelsFor returns the labels that apply to router rt (shared ones and
// those of its project), as the data plane counts them.
func labelsFor(rt map[string]any, labels []map[string]any) []router.MeterLabel {
	var out []router.MeterLabel
	for _, l := range labels {
		if l["shared"] != true && attr.Str(l, "project_id") != attr.Str(rt, "project_id") {
			continue
		}
		ml := router.MeterLabel{ID: attr.Str(l, "id")}
		for _, rule := range attr.Objects(l, "rules") {
			ml.Rules = append(ml.Rules, router.MeterRule{Direction: attr.Str(rule, "direction"), Excluded: rule["excluded"] == true,
				Remote: attr.Str(rule, "remote_ip_prefix"), Source: attr.Str(rule, "source_ip_prefix"), Destination: attr.Str(rule, "destination_ip_prefix")})
		}
		out = append(out, ml)
	}
	return out
}

// Counts reads every hosted router's metering counters (totals since this
// agent started counting there).
func (r *Meters) Counts() []hostapi.MeterCount {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []hostapi.MeterCount
	for _, m := range r.meters {
		for _, c := range m.m.Counts() {
			out = append(out, hostapi.MeterCount{RouterID: m.routerID, LabelID: c.LabelID, Direction: c.Direction, Packets: c.Packets, Bytes: c.Bytes})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.RouterID+a.LabelID+a.Direction < b.RouterID+b.LabelID+b.Direction
	})
	return out
}

// Report implements concern.Reporter: the counts go to the server.
func (r *Meters) Report(ctx context.Context, env *concern.Env) error {
	return env.API.Call(ctx, http.MethodPut, "/neutrino/v1/hosts/"+env.HostName+"/metering", map[string]any{"counters": r.Counts()}, nil)
}
