package router

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"sigs.k8s.io/knftables"

	"neutrino/internal/dataplane"
)

// Metering: in a router namespace a table counts, per metering label and
// direction, the traffic forwarded through the gateway device (ingress: in
// from it; egress: out of it). A label's excluded prefixes return first;
// its other rules count and return, so a packet counts at most once per
// label. The table is rewritten whole when the labels, the rules or the
// gateway change; what its counters held is kept as a base, so totals
// never go back.

// MeterRule is one metering rule: a direction, and a remote prefix or
// source and destination prefixes.
type MeterRule struct {
	Direction                   string // ingress or egress
	Excluded                    bool
	Remote, Source, Destination string // prefixes, "" for none
}

// MeterLabel is a label with its rules.
type MeterLabel struct {
	ID    string
	Rules []MeterRule
}

// MeterCount is one label's count in one direction.
type MeterCount struct {
	LabelID, Direction string
	Packets, Bytes     uint64
}

// Meter is the metering table of one router namespace.
type Meter struct {
	ns   string
	nft  knftables.Interface
	base map[string]MeterCount // counts carried over rewrites, by counter name
	conf string                // what the table was written from
}

// NewMeter returns the metering table of router namespace ns.
func NewMeter(ns string) *Meter { return &Meter{ns: ns, base: map[string]MeterCount{}} }

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

// match is the nft match of one metering rule (empty: none possible).
func (r MeterRule) match() string {
	var parts []string
	if r.Remote != "" {
		side := "saddr" // ingress: from the remote side
		if r.Direction == "egress" {
			side = "daddr"
		}
		m, ok := prefixMatch(r.Remote, side)
		if !ok {
			return ""
		}
		parts = append(parts, m)
	}
	for _, f := range []struct{ prefix, side string }{{r.Source, "saddr"}, {r.Destination, "daddr"}} {
		if f.prefix != "" {
			m, ok := prefixMatch(f.prefix, f.side)
			if !ok {
				return ""
			}
			parts = append(parts, m)
		}
	}
	return strings.Join(parts, " ")
}

// Set makes the table count labels at gateway device gwDev ("" or no
// label: no table).
func (m *Meter) Set(gwDev string, labels []MeterLabel) error {
	conf := fmt.Sprint(gwDev, labels)
	if m.conf == conf {
		return nil
	}
	return dataplane.InNamespaceNamed(m.ns, func() error {
		if err := openNFT(&m.nft, knftables.InetFamily, "neutrino-metering"); err != nil {
			return err
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
			m.conf, m.base = conf, map[string]MeterCount{}
			return nil
		}
		names := map[string]bool{}
		tx.Add(&knftables.Table{})
		tx.Add(&knftables.Chain{Name: "forward", Type: knftables.PtrTo(knftables.FilterType),
			Hook: knftables.PtrTo(knftables.ForwardHook), Priority: knftables.PtrTo(knftables.FilterPriority)})
		tx.Add(&knftables.Chain{Name: "ingress"})
		tx.Add(&knftables.Chain{Name: "egress"})
		tx.Add(&knftables.Rule{Chain: "forward", Rule: knftables.Concat("iifname", quote(gwDev), "jump ingress")})
		tx.Add(&knftables.Rule{Chain: "forward", Rule: knftables.Concat("oifname", quote(gwDev), "jump egress")})
		sorted := append([]MeterLabel(nil), labels...)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })
		for _, l := range sorted {
			for _, dir := range []string{"ingress", "egress"} {
				name := counterName(l.ID, dir)
				names[name] = true
				chain := "l" + name[1:]
				tx.Add(&knftables.Counter{Name: name})
				tx.Add(&knftables.Chain{Name: chain})
				tx.Add(&knftables.Rule{Chain: dir, Rule: knftables.Concat("jump", chain)})
				// Excluded prefixes first: they are not counted.
				for _, excluded := range []bool{true, false} {
					for _, rule := range l.Rules {
						if rule.Direction != dir || rule.Excluded != excluded {
							continue
						}
						match := rule.match()
						if match == "" {
							continue
						}
						if excluded {
							tx.Add(&knftables.Rule{Chain: chain, Rule: knftables.Concat(match, "return")})
						} else {
							tx.Add(&knftables.Rule{Chain: chain, Rule: knftables.Concat(match, "counter name", quote(name), "return")})
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

// Counts reads the counters: totals since this Meter was made.
func (m *Meter) Counts() []MeterCount {
	totals := map[string]MeterCount{}
	for name, b := range m.base {
		totals[name] = b
	}
	if m.nft != nil {
		dataplane.InNamespaceNamed(m.ns, func() error {
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
	var out []MeterCount
	for name, t := range totals {
		i := strings.LastIndex(name, "-")
		if i < 2 || !strings.HasPrefix(name, "m-") {
			continue
		}
		out = append(out, MeterCount{LabelID: name[2:i], Direction: name[i+1:], Packets: t.Packets, Bytes: t.Bytes})
	}
	sort.Slice(out, func(i, j int) bool {
		return counterName(out[i].LabelID, out[i].Direction) < counterName(out[j].LabelID, out[j].Direction)
	})
	return out
}
