package agent

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strings"

	"github.com/vishvananda/netns"
	"sigs.k8s.io/knftables"

	"neutrino/internal/dataplane"
	"neutrino/internal/hostapi"
)

// Metering: in each router namespace a table counts, per metering label
// and direction, the traffic forwarded through the external gateway device
// (ingress: in from it; egress: out of it). A label's excluded prefixes
// return first; its other rules count and return, so a packet counts at
// most once per label. The table is rewritten whole when the labels, the
// rules or the gateway change; what its counters held is kept as a base,
// so the totals the agent reports never go back.

// meter is one router's metering state.
type meter struct {
	routerID string
	nft      knftables.Interface
	base     map[string]hostapi.MeterCount // counts carried over rewrites, by counter name
	conf     string                        // what the table was written from
}

// labelsFor returns the labels that apply to router r: shared ones and
// those of its project.
func labelsFor(r map[string]any, labels []map[string]any) []map[string]any {
	var out []map[string]any
	for _, l := range labels {
		if l["shared"] == true || str(l, "project_id") == str(r, "project_id") {
			out = append(out, l)
		}
	}
	return out
}

// counterName names a label's counter for one direction (nft names must
// not start with a digit, as a UUID may).
func counterName(labelID, direction string) string { return "m-" + labelID + "-" + direction }

// prefixMatch is the nft match of a prefix as source or destination.
func prefixMatch(prefix, dir string) (string, bool) {
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		return "", false
	}
	fam := "ip"
	if p.Addr().Is6() {
		fam = "ip6"
	}
	return fam + " " + dir + " " + p.Masked().String(), true
}

// ruleMatch is the nft match of one metering rule (empty: none possible).
func ruleMatch(rule map[string]any) string {
	var parts []string
	if rp := str(rule, "remote_ip_prefix"); rp != "" {
		side := "saddr" // ingress: from the remote side
		if str(rule, "direction") == "egress" {
			side = "daddr"
		}
		m, ok := prefixMatch(rp, side)
		if !ok {
			return ""
		}
		parts = append(parts, m)
	}
	for _, f := range []struct{ key, side string }{{"source_ip_prefix", "saddr"}, {"destination_ip_prefix", "daddr"}} {
		if v := str(rule, f.key); v != "" {
			m, ok := prefixMatch(v, f.side)
			if !ok {
				return ""
			}
			parts = append(parts, m)
		}
	}
	return strings.Join(parts, " ")
}

// setMetering makes router routerID's metering table match labels.
func (a *Agent) setMetering(ns, routerID, gwDev string, labels []map[string]any) error {
	conf := fmt.Sprint(gwDev, labels)
	a.mmu.Lock()
	defer a.mmu.Unlock()
	m := a.meters[ns]
	if m != nil && m.conf == conf {
		return nil
	}
	if m == nil {
		m = &meter{routerID: routerID, base: map[string]hostapi.MeterCount{}}
		a.meters[ns] = m
	}
	return inNamespace(ns, func() error {
		if m.nft == nil {
			nft, err := knftables.New(knftables.InetFamily, "neutrino-metering")
			if err != nil {
				return err
			}
			m.nft = nft
		}
		// Keep what the counters hold before they are rebuilt.
		if cur, err := m.nft.ListCounters(context.Background()); err == nil {
			for _, c := range cur {
				b := m.base[c.Name]
				if c.Packets != nil && c.Bytes != nil {
					b.Packets += *c.Packets
					b.Bytes += *c.Bytes
				}
				m.base[c.Name] = b
			}
		}
		tx := m.nft.NewTransaction()
		tx.Add(&knftables.Table{})
		tx.Delete(&knftables.Table{})
		if gwDev == "" || len(labels) == 0 {
			if err := m.nft.Run(context.Background(), tx); err != nil {
				return err
			}
			m.conf, m.base = conf, map[string]hostapi.MeterCount{}
			return nil
		}
		names := map[string]bool{}
		tx.Add(&knftables.Table{})
		tx.Add(&knftables.Chain{Name: "forward", Type: knftables.PtrTo(knftables.FilterType),
			Hook: knftables.PtrTo(knftables.ForwardHook), Priority: knftables.PtrTo(knftables.FilterPriority)})
		tx.Add(&knftables.Chain{Name: "ingress"})
		tx.Add(&knftables.Chain{Name: "egress"})
		tx.Add(&knftables.Rule{Chain: "forward", Rule: knftables.Concat("iifname", quoteName(gwDev), "jump ingress")})
		tx.Add(&knftables.Rule{Chain: "forward", Rule: knftables.Concat("oifname", quoteName(gwDev), "jump egress")})
		sorted := append([]map[string]any(nil), labels...)
		sort.Slice(sorted, func(i, j int) bool { return str(sorted[i], "id") < str(sorted[j], "id") })
		for _, l := range sorted {
			id := str(l, "id")
			for _, dir := range []string{"ingress", "egress"} {
				name := counterName(id, dir)
				names[name] = true
				chain := "l" + name[1:]
				tx.Add(&knftables.Counter{Name: name})
				tx.Add(&knftables.Chain{Name: chain})
				tx.Add(&knftables.Rule{Chain: dir, Rule: knftables.Concat("jump", chain)})
				rules, _ := l["rules"].([]any)
				// Excluded prefixes first: they are not counted.
				for _, excluded := range []bool{true, false} {
					for _, e := range rules {
						rule, _ := e.(map[string]any)
						if str(rule, "direction") != dir || (rule["excluded"] == true) != excluded {
							continue
						}
						match := ruleMatch(rule)
						if match == "" {
							continue
						}
						if excluded {
							tx.Add(&knftables.Rule{Chain: chain, Rule: knftables.Concat(match, "return")})
						} else {
							tx.Add(&knftables.Rule{Chain: chain, Rule: knftables.Concat(match, "counter name", quoteName(name), "return")})
						}
					}
				}
			}
		}
		if err := m.nft.Run(context.Background(), tx); err != nil {
			return err
		}
		for name := range m.base {
			if !names[name] {
				delete(m.base, name) // a label that no longer applies
			}
		}
		m.conf = conf
		return nil
	})
}

// dropMeter forgets a router namespace no longer here.
func (a *Agent) dropMeter(ns string) {
	a.mmu.Lock()
	delete(a.meters, ns)
	a.mmu.Unlock()
}

// MeterCounts reads every hosted router's metering counters (totals
// since this agent started).
func (a *Agent) MeterCounts() []hostapi.MeterCount {
	a.mmu.Lock()
	defer a.mmu.Unlock()
	var out []hostapi.MeterCount
	for ns, m := range a.meters {
		totals := map[string]hostapi.MeterCount{}
		for name, b := range m.base {
			totals[name] = b
		}
		if m.nft != nil {
			inNamespace(ns, func() error {
				cur, err := m.nft.ListCounters(context.Background())
				if err != nil {
					return err
				}
				for _, c := range cur {
					t := totals[c.Name]
					if c.Packets != nil && c.Bytes != nil {
						t.Packets += *c.Packets
						t.Bytes += *c.Bytes
					}
					totals[c.Name] = t
				}
				return nil
			})
		}
		for name, t := range totals {
			i := strings.LastIndex(name, "-")
			if i < 2 || !strings.HasPrefix(name, "m-") {
				continue
			}
			out = append(out, hostapi.MeterCount{RouterID: m.routerID, LabelID: name[2:i], Direction: name[i+1:], Packets: t.Packets, Bytes: t.Bytes})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].RouterID != out[j].RouterID {
			return out[i].RouterID < out[j].RouterID
		}
		return counterName(out[i].LabelID, out[i].Direction) < counterName(out[j].LabelID, out[j].Direction)
	})
	return out
}

// ReportMetering sends the counts to the server (the heartbeat does it at
// each interval).
func (a *Agent) ReportMetering(ctx context.Context) error {
	return a.call(ctx, http.MethodPut, "/neutrino/v1/hosts/"+a.cfg.Host+"/metering", map[string]any{"counters": a.MeterCounts()}, nil)
}

// inNamespace runs fn with the calling thread in namespace ns.
func inNamespace(ns string, fn func() error) error {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	return dataplane.InNamespace(h, fn)
}
