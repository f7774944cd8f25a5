package secgroup

import (
	"sort"

	"neutrino/internal/attr"
	"neutrino/internal/hostapi"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// hostGroups is the security-group part of a host's span: the groups its
// ports use, the groups their rules admit (remote groups), and the
// addresses of every member of those.
func hostGroups(c *plugin.Ctx, host string, span *hostapi.Span, _ plugin.SpanOptions) error {
	groups := map[string]bool{}
	for _, p := range span.Ports {
		for _, g := range attr.List(p, "security_groups") {
			groups[schema.Render(g)] = true
		}
	}
	remote := map[string]bool{}
	for id := range groups {
		g, err := c.Tx.Get(schema.SecurityGroup.Kind, id)
		if err != nil {
			continue
		}
		span.SecurityGroups = append(span.SecurityGroups, g)
		for _, r := range attr.List(g, "security_group_rules") {
			if m, _ := r.(map[string]any); attr.Str(m, "remote_group_id") != "" {
				remote[attr.Str(m, "remote_group_id")] = true
			}
		}
	}
	if len(remote) > 0 {
		ports, err := c.Tx.List(schema.Port.Kind, store.Filter{})
		if err != nil {
			return err
		}
		for _, p := range ports {
			for _, g := range attr.List(p, "security_groups") {
				gid := schema.Render(g)
				if !remote[gid] {
					continue
				}
				span.GroupMembers[gid] = append(span.GroupMembers[gid], portAddresses(p)...)
				if n := len(span.MemberPorts); n == 0 || span.MemberPorts[n-1] != attr.Str(p, "id") {
					span.MemberPorts = append(span.MemberPorts, attr.Str(p, "id"))
				}
			}
		}
	}
	for gid := range remote {
		sort.Strings(span.GroupMembers[gid])
		if span.GroupMembers[gid] == nil {
			span.GroupMembers[gid] = []string{}
		}
	}
	sort.Slice(span.SecurityGroups, func(i, j int) bool {
		return attr.Str(span.SecurityGroups[i], "id") < attr.Str(span.SecurityGroups[j], "id")
	})
	return nil
}

// portAddresses are a port's fixed IPs and allowed address pairs.
func portAddresses(p plugin.Object) []string {
	var out []string
	for _, key := range []string{"fixed_ips", "allowed_address_pairs"} {
		for _, e := range attr.List(p, key) {
			if m, _ := e.(map[string]any); m != nil {
				out = append(out, attr.Str(m, "ip_address"))
			}
		}
	}
	return out
}
