// Package secgroup is the host agent's security-group concern: each
// filtered port's anti-spoofing and its groups' rules, as nftables sets,
// maps and chains in the host's namespace (dataplane.SetFilters), changed
// incrementally.
package secgroup

import (
	"context"
	"fmt"
	"strings"

	"neutrino/internal/agent/concern"
	"neutrino/internal/attr"
	"neutrino/internal/dataplane"
	"neutrino/internal/hostapi"
)

// Filters is the security-group reconciler.
type Filters struct{}

func (*Filters) Name() string    { return "secgroup" }
func (*Filters) Kinds() []string { return []string{"port", "security_group"} }
func (*Filters) Close()          {}

// Apply implements concern.Reconciler: if the filters cannot be installed,
// the filtered ports are marked unsafe and are not wired at all.
func (*Filters) Apply(ctx context.Context, env *concern.Env, span *hostapi.Span) error {
	pf, groups := Derive(span)
	env.Unsafe = map[string]bool{}
	if err := env.Host.SetFilters(pf, groups, span.GroupMembers); err != nil {
		for _, f := range pf {
			env.Unsafe[f.PortID] = true
		}
		return err
	}
	return nil
}

// Derive computes each port's security state: ports with port security and
// not owned by the network (DHCP, routers) are filtered by their groups'
// ingress and egress rules.
func Derive(st *hostapi.Span) ([]dataplane.PortFilter, []dataplane.SecurityGroup) {
	num := func(v any) int {
		if f, ok := v.(float64); ok {
			return int(f)
		}
		return -1
	}
	var groups []dataplane.SecurityGroup
	for _, g := range st.SecurityGroups {
		sg := dataplane.SecurityGroup{ID: attr.Str(g, "id")}
		for _, r := range attr.Objects(g, "security_group_rules") {
			proto := ""
			if v := r["protocol"]; v != nil {
				proto = fmt.Sprint(v)
			}
			fr := dataplane.FilterRule{EtherType: attr.Str(r, "ethertype"), Protocol: proto,
				PortMin: num(r["port_range_min"]), PortMax: num(r["port_range_max"]),
				RemoteCIDR: attr.Str(r, "normalized_cidr"), RemoteGroup: attr.Str(r, "remote_group_id")}
			if attr.Str(r, "direction") == "ingress" {
				sg.Ingress = append(sg.Ingress, fr)
			} else {
				sg.Egress = append(sg.Egress, fr)
			}
		}
		groups = append(groups, sg)
	}
	var out []dataplane.PortFilter
	for _, p := range st.Ports {
		if p["port_security_enabled"] != true || strings.HasPrefix(attr.Str(p, "device_owner"), "network:") {
			continue
		}
		f := dataplane.PortFilter{PortID: attr.Str(p, "id"), Network: attr.Str(p, "network_id"), MAC: attr.Str(p, "mac_address")}
		for _, ip := range attr.Objects(p, "fixed_ips") {
			f.Addrs = append(f.Addrs, attr.Str(ip, "ip_address"))
		}
		for _, pair := range attr.Objects(p, "allowed_address_pairs") {
			f.Addrs = append(f.Addrs, attr.Str(pair, "ip_address"))
			if m := attr.Str(pair, "mac_address"); m != "" && m != f.MAC {
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
