// Package metering is the metering service plugin (metering,
// metering_source_and_destination_fields): admins define labels and their
// rules; a label applies to the routers of its project (a shared one to
// every router), the L3 agents count its traffic through the routers'
// gateways and report the counts, which the server exports on /metrics
// (where Neutron sends them to Ceilometer).
package metering

import (
	"net/http"
	"net/netip"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/plugin"
	"neutrino/internal/store"
)

// Metering labels count the traffic that crosses routers' external
// gateways: a label applies to every router of its project (a shared
// label to every router), its rules choose the traffic by direction and
// prefix. The L3 agents count it (nftables counters in the router
// namespaces) and report the counts, which the server exports as metrics.

func createMeteringLabel(c *plugin.Ctx, in plugin.Object) (plugin.Object, error) {
	o := plugin.Object{"id": in["id"], "name": attr.Str(in, "name"), "description": attr.Str(in, "description"),
		"shared": in["shared"] == true, "project_id": in["project_id"]}
	if err := c.Tx.Put(Label.Kind, "", o); err != nil {
		return nil, err
	}
	return o, nil
}

// deleteMeteringLabel removes the label with its rules.
func deleteMeteringLabel(c *plugin.Ctx, cur plugin.Object) error {
	rules, err := c.Tx.List(LabelRule.Kind, store.Filter{Parent: attr.Str(cur, "id")})
	if err != nil {
		return err
	}
	for _, r := range rules {
		if err := c.Tx.Delete(LabelRule.Kind, attr.Str(r, "id")); err != nil {
			return err
		}
	}
	return c.Tx.Delete(Label.Kind, attr.Str(cur, "id"))
}

func createMeteringRule(c *plugin.Ctx, in plugin.Object) (plugin.Object, error) {
	label := attr.Str(in, "metering_label_id")
	if _, err := c.Load(Label, label); err != nil {
		return nil, err
	}
	remote, src, dst := in["remote_ip_prefix"], in["source_ip_prefix"], in["destination_ip_prefix"]
	if remote != nil && (src != nil || dst != nil) {
		return nil, fault.BadRequest("Cannot use 'remote-ip-prefix' in conjunction with 'source-ip-prefix' or 'destination-ip-prefix'.")
	}
	if remote == nil && src == nil && dst == nil {
		return nil, fault.BadRequest("You must define at least one of the following parameters 'remote_ip_prefix', or 'source_ip_prefix' or 'destination_ip_prefix'.")
	}
	if s, d := attr.Str(in, "source_ip_prefix"), attr.Str(in, "destination_ip_prefix"); s != "" && d != "" {
		ps, _ := netip.ParsePrefix(s)
		pd, _ := netip.ParsePrefix(d)
		if ps.Addr().Is4() != pd.Addr().Is4() {
			return nil, fault.BadRequest("The source_ip_prefix %s and destination_ip_prefix %s are of different IP versions.", s, d)
		}
	}
	if remote != nil {
		// A label's remote prefixes of one direction and kind may not
		// overlap: a packet would be counted (or excluded) twice.
		p, _ := netip.ParsePrefix(attr.Str(in, "remote_ip_prefix"))
		others, err := c.Tx.List(LabelRule.Kind, store.Filter{Parent: label})
		if err != nil {
			return nil, err
		}
		for _, r := range others {
			q, err := netip.ParsePrefix(attr.Str(r, "remote_ip_prefix"))
			if err != nil || attr.Str(r, "direction") != attr.Str(in, "direction") || r["excluded"] != (in["excluded"] == true) {
				continue
			}
			if p.Overlaps(q) {
				return nil, fault.New(http.StatusConflict, "MeteringLabelRuleOverlaps",
					"Metering label rule with remote_ip_prefix '%s' overlaps another.", attr.Str(in, "remote_ip_prefix"))
			}
		}
	}
	o := plugin.Object{"id": in["id"], "metering_label_id": label, "direction": attr.Str(in, "direction"),
		"remote_ip_prefix": remote, "source_ip_prefix": src, "destination_ip_prefix": dst, "excluded": in["excluded"] == true}
	if err := c.Tx.Put(LabelRule.Kind, label, o); err != nil {
		return nil, err
	}
	return o, nil
}

func deleteMeteringRule(c *plugin.Ctx, cur plugin.Object) error {
	return c.Tx.Delete(LabelRule.Kind, attr.Str(cur, "id"))
}
