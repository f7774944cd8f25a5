package core

import (
	"sort"

	"neutrino/internal/hostapi"

	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// HostState is a host's span of desired state (see hostapi.Span).
type HostState = hostapi.Span

// Peer is a port of one of the host's networks on another host.
type Peer = hostapi.Peer

// HostState lists host's desired state; the agent then watches the change
// log after Revision.
func (s *Service) HostState(c *Ctx, host string, dhcp bool) (*HostState, error) {
	rev, err := c.Tx.ViewRevision()
	if err != nil {
		return nil, err
	}
	st := &HostState{Revision: rev, GroupMembers: map[string][]string{}}
	ports, err := c.Tx.List(schema.Port.Kind, store.Filter{})
	if err != nil {
		return nil, err
	}
	nets, groups := map[string]bool{}, map[string]bool{}
	for _, p := range ports {
		if str(p, "binding:host_id") != host || str(p, "binding:vif_type") == "binding_failed" {
			continue
		}
		st.Ports = append(st.Ports, p)
		nets[str(p, "network_id")] = true
		for _, g := range list(p, "security_groups") {
			groups[schema.Render(g)] = true
		}
	}
	if dhcp {
		// The networks scheduled to this host's DHCP agent.
		agents, err := c.Tx.List(schema.Agent.Kind, store.Filter{})
		if err != nil {
			return nil, err
		}
		mine := map[string]bool{}
		for _, a := range agents {
			if str(a, "host") == host && str(a, "agent_type") == DHCPAgentType {
				mine[str(a, "id")] = true
			}
		}
		bindings, err := c.dhcpBindings(store.Filter{})
		if err != nil {
			return nil, err
		}
		served := map[string]bool{}
		for _, b := range bindings {
			if mine[str(b, "agent_id")] {
				served[str(b, "network_id")] = true
			}
		}
		for id := range served {
			nets[id] = true
			st.DHCPNetworks = append(st.DHCPNetworks, id)
		}
		sort.Strings(st.DHCPNetworks)
		for _, p := range ports {
			if served[str(p, "network_id")] {
				st.DHCPPorts = append(st.DHCPPorts, p)
			}
		}
	}
	if err := s.routerState(c, host, st); err != nil {
		return nil, err
	}
	vteps := map[string]string{}
	agents, err := c.Tx.List(schema.Agent.Kind, store.Filter{})
	if err != nil {
		return nil, err
	}
	for _, a := range agents {
		if cfg, _ := a["configurations"].(map[string]any); cfg != nil {
			if ip := str(cfg, "tunneling_ip"); ip != "" {
				vteps[str(a, "host")] = ip
			}
		}
	}
	for _, p := range ports {
		h := str(p, "binding:host_id")
		if h == "" || h == host || !nets[str(p, "network_id")] || str(p, "binding:vif_type") == "binding_failed" {
			continue
		}
		peer := Peer{NetworkID: str(p, "network_id"), PortID: str(p, "id"), MACAddress: str(p, "mac_address"), Host: h, VTEP: vteps[h],
			IPs: []string{}}
		for _, e := range list(p, "fixed_ips") {
			if m, _ := e.(map[string]any); m != nil {
				peer.IPs = append(peer.IPs, str(m, "ip_address"))
			}
		}
		var pairs []Peer
		for _, e := range list(p, "allowed_address_pairs") {
			m, _ := e.(map[string]any)
			if mac := str(m, "mac_address"); mac != "" && mac != peer.MACAddress {
				pairs = append(pairs, Peer{NetworkID: peer.NetworkID, PortID: peer.PortID, MACAddress: mac, Host: h, VTEP: peer.VTEP,
					IPs: []string{str(m, "ip_address")}})
			} else {
				peer.IPs = append(peer.IPs, str(m, "ip_address"))
			}
		}
		st.Peers = append(append(st.Peers, peer), pairs...)
	}
	if st.Peers == nil {
		st.Peers = []Peer{}
	}
	for id := range nets {
		n, err := c.Tx.Get(schema.Network.Kind, id)
		if err != nil {
			continue
		}
		st.Networks = append(st.Networks, n)
		subnets, err := c.Tx.List(schema.Subnet.Kind, store.Filter{Parent: id})
		if err != nil {
			return nil, err
		}
		st.Subnets = append(st.Subnets, subnets...)
	}
	// Groups the host's ports use, and the groups their rules admit.
	remote := map[string]bool{}
	for id := range groups {
		g, err := c.Tx.Get(schema.SecurityGroup.Kind, id)
		if err != nil {
			continue
		}
		st.SecurityGroups = append(st.SecurityGroups, g)
		for _, r := range list(g, "security_group_rules") {
			if m, _ := r.(map[string]any); str(m, "remote_group_id") != "" {
				remote[str(m, "remote_group_id")] = true
			}
		}
	}
	for _, p := range ports {
		for _, g := range list(p, "security_groups") {
			gid := schema.Render(g)
			if !remote[gid] {
				continue
			}
			st.GroupMembers[gid] = append(st.GroupMembers[gid], portAddresses(p)...)
			if n := len(st.MemberPorts); n == 0 || st.MemberPorts[n-1] != str(p, "id") {
				st.MemberPorts = append(st.MemberPorts, str(p, "id"))
			}
		}
	}
	for gid := range remote {
		sort.Strings(st.GroupMembers[gid])
		if st.GroupMembers[gid] == nil {
			st.GroupMembers[gid] = []string{}
		}
	}
	byID := func(l []Object) {
		sort.Slice(l, func(i, j int) bool { return str(l[i], "id") < str(l[j], "id") })
	}
	byID(st.Networks)
	byID(st.Subnets)
	byID(st.SecurityGroups)
	if st.MemberPorts == nil {
		st.MemberPorts = []string{}
	}
	for _, l := range []*[]Object{&st.Ports, &st.Networks, &st.Subnets, &st.SecurityGroups} {
		if *l == nil {
			*l = []Object{}
		}
	}
	return st, nil
}

// portAddresses are a port's fixed IPs and allowed address pairs.
func portAddresses(p Object) []string {
	var out []string
	for _, e := range list(p, "fixed_ips") {
		if m, _ := e.(map[string]any); m != nil {
			out = append(out, str(m, "ip_address"))
		}
	}
	for _, e := range list(p, "allowed_address_pairs") {
		if m, _ := e.(map[string]any); m != nil {
			out = append(out, str(m, "ip_address"))
		}
	}
	return out
}

// routerState adds the routers scheduled to host's L3 agent and their
// floating IPs.
func (s *Service) routerState(c *Ctx, host string, st *HostState) error {
	agents, err := c.Tx.List(schema.Agent.Kind, store.Filter{})
	if err != nil {
		return err
	}
	mine := map[string]bool{}
	for _, a := range agents {
		if str(a, "host") == host && str(a, "agent_type") == L3AgentType {
			mine[str(a, "id")] = true
		}
	}
	if len(mine) == 0 {
		return nil
	}
	bound, err := c.l3Bindings(store.Filter{})
	if err != nil {
		return err
	}
	routers := map[string]bool{}
	for _, b := range bound {
		if mine[str(b, "agent_id")] {
			if r, err := c.Tx.Get(schema.Router.Kind, str(b, "router_id")); err == nil {
				st.Routers = append(st.Routers, r)
				routers[str(r, "id")] = true
			}
		}
	}
	sort.Slice(st.Routers, func(i, j int) bool { return str(st.Routers[i], "id") < str(st.Routers[j], "id") })
	fips, err := c.Tx.List(schema.FloatingIP.Kind, store.Filter{})
	if err != nil {
		return err
	}
	for _, f := range fips {
		if routers[str(f, "router_id")] {
			st.FloatingIPs = append(st.FloatingIPs, f)
		}
	}
	projects := map[string]bool{}
	for _, r := range st.Routers {
		projects[str(r, "project_id")] = true
	}
	labels, err := c.Tx.List(schema.MeteringLabel.Kind, store.Filter{})
	if err != nil {
		return err
	}
	for _, l := range labels {
		if l["shared"] != true && !projects[str(l, "project_id")] {
			continue
		}
		rules, err := c.Tx.List(schema.MeteringLabelRule.Kind, store.Filter{Parent: str(l, "id")})
		if err != nil {
			return err
		}
		withRules := schema.CloneObject(l)
		rl := make([]any, 0, len(rules))
		for _, r := range rules {
			rl = append(rl, r)
		}
		withRules["rules"] = rl
		st.MeteringLabels = append(st.MeteringLabels, withRules)
	}
	return nil
}
