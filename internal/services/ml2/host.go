package ml2

import (
	"maps"
	"net/http"
	"slices"
	"sort"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/hostapi"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

const ownerDHCP = hostapi.OwnerDHCP

// OnHost selects the ports bound to host (an indexed attribute).
func OnHost(host string) store.Filter {
	return store.Filter{Attr: "binding:host_id", Values: []string{host}}
}

// hostPorts is ML2's part of a host's span: the ports bound there whose
// binding did not fail.
func (s *Service) hostPorts(c *plugin.Ctx, host string, span *hostapi.Span, _ plugin.SpanOptions) error {
	v, ok := c.Tx.Version(schema.Port.Kind, OnHost(host))
	ports, err := s.bound.Get(host, [2]int64{v}, ok, func() ([]plugin.Object, error) {
		ports, err := c.Tx.List(schema.Port.Kind, OnHost(host))
		if err != nil {
			return nil, err
		}
		out := make([]plugin.Object, 0, len(ports))
		for _, p := range ports {
			if attr.Str(p, "binding:host_id") == host && attr.Str(p, "binding:vif_type") != "binding_failed" {
				out = append(out, p)
			}
		}
		return out, nil
	})
	span.Ports = append(span.Ports, ports...)
	return err
}

// hostNetworks completes a span once every part is in: the networks of
// its ports and of the networks the host serves DHCP on, their subnets,
// and the peers (same-network ports on other hosts, with their host's
// tunnel endpoint).
func (s *Service) hostNetworks(c *plugin.Ctx, host string, span *hostapi.Span, _ plugin.SpanOptions) error {
	nets := map[string]bool{}
	for _, p := range span.Ports {
		nets[attr.Str(p, "network_id")] = true
	}
	for _, id := range span.DHCPNetworks {
		nets[id] = true
	}
	span.PeerSources = make([][]hostapi.Peer, 0, len(nets))
	ids := slices.Sorted(maps.Keys(nets))
	for _, id := range ids {
		peers, err := s.peers.of(c, id)
		if err != nil {
			return err
		}
		span.PeerSources = append(span.PeerSources, peers)
	}
	n := 0
	for _, peers := range span.PeerSources {
		n += len(peers)
	}
	span.Peers = slices.Grow(span.Peers, n)
	for i, id := range ids {
		for _, p := range span.PeerSources[i] {
			if p.Host != host {
				span.Peers = append(span.Peers, p)
			}
		}
		n, err := c.Tx.Get(schema.Network.Kind, id)
		if err != nil {
			continue
		}
		span.Networks = append(span.Networks, n)
		subnets, err := c.Tx.List(schema.Subnet.Kind, store.Filter{Parent: id})
		if err != nil {
			return err
		}
		span.Subnets = append(span.Subnets, subnets...)
	}
	sort.Slice(span.Subnets, func(i, j int) bool { return attr.Str(span.Subnets[i], "id") < attr.Str(span.Subnets[j], "id") })
	return nil
}

// peerCache holds each network's peers as of the last change of its
// ports or of any agent: when a change makes the hosts of a network
// compute their state, its peers are gathered once, not once per host,
// and a change elsewhere does not gather them again.
type peerCache struct{ plugin.Cache[[]hostapi.Peer] }

// of returns the bound ports of network id as peers (every host's: each
// host leaves out its own), with their hosts' tunnel endpoints.
func (pc *peerCache) of(c *plugin.Ctx, id string) ([]hostapi.Peer, error) {
	pv, ok1 := c.Tx.Version(schema.Port.Kind, store.Filter{Parent: id})
	av, ok2 := c.Tx.Version("agent", store.Filter{})
	return pc.Get(id, [2]int64{pv, av}, ok1 && ok2, func() ([]hostapi.Peer, error) { return gatherPeers(c, id) })
}

func gatherPeers(c *plugin.Ctx, id string) ([]hostapi.Peer, error) {
	ports, err := c.Tx.List(schema.Port.Kind, store.Filter{Parent: id})
	if err != nil {
		return nil, err
	}
	hosts := map[string]bool{}
	for _, p := range ports {
		if h := attr.Str(p, "binding:host_id"); h != "" {
			hosts[h] = true
		}
	}
	vteps := map[string]string{}
	if len(hosts) > 0 {
		agents, err := c.Tx.List("agent", store.Filter{Attr: "host", Values: slices.Sorted(maps.Keys(hosts))})
		if err != nil {
			return nil, err
		}
		for _, a := range agents {
			if cfg, _ := a["configurations"].(map[string]any); cfg != nil {
				if ip := attr.Str(cfg, "tunneling_ip"); ip != "" {
					vteps[attr.Str(a, "host")] = ip
				}
			}
		}
	}
	list := []hostapi.Peer{}
	for _, p := range ports {
		h := attr.Str(p, "binding:host_id")
		if h == "" || attr.Str(p, "binding:vif_type") == "binding_failed" {
			continue
		}
		peer := hostapi.Peer{NetworkID: id, PortID: attr.Str(p, "id"), MACAddress: attr.Str(p, "mac_address"), Host: h,
			VTEP: vteps[h], IPs: []string{}}
		for _, e := range attr.List(p, "fixed_ips") {
			if m, _ := e.(map[string]any); m != nil {
				peer.IPs = append(peer.IPs, attr.Str(m, "ip_address"))
			}
		}
		var pairs []hostapi.Peer
		for _, e := range attr.List(p, "allowed_address_pairs") {
			m, _ := e.(map[string]any)
			if mac := attr.Str(m, "mac_address"); mac != "" && mac != peer.MACAddress {
				pairs = append(pairs, hostapi.Peer{NetworkID: id, PortID: peer.PortID, MACAddress: mac, Host: h,
					VTEP: peer.VTEP, IPs: []string{attr.Str(m, "ip_address")}})
			} else {
				peer.IPs = append(peer.IPs, attr.Str(m, "ip_address"))
			}
		}
		list = append(append(list, peer), pairs...)
	}
	return list, nil
}

// serveHostPorts takes an agent's report of the ports it wired:
// PUT /neutrino/v1/hosts/{host}/ports {"active": [ids]}.
func (s *Service) serveHostPorts(req *plugin.Request) (int, any, error) {
	var doc struct {
		Active []string `json:"active"`
	}
	if err := req.Decode(&doc); err != nil {
		return 0, nil, err
	}
	var changed int
	_, err := req.Reg.Write(req.Context(), func(c *plugin.Ctx) error {
		var err error
		changed, err = SetHostPorts(c, req.Args[0], doc.Active)
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"changed": changed}, nil
}

// SetHostPorts reconciles the status of the ports bound to host with what
// its agent reports as wired: those are ACTIVE, every other port bound
// there is DOWN. Agents send the whole set at each report, so a lost
// message cannot leave a port in the wrong state for longer than one period.
func SetHostPorts(c *plugin.Ctx, host string, active []string) (changed int, err error) {
	if !c.Admin && !c.Service {
		return 0, fault.Forbidden("rule:update_port_status is disallowed by policy")
	}
	up := make(map[string]bool, len(active))
	for _, id := range active {
		up[id] = true
	}
	ports, err := c.Tx.List(schema.Port.Kind, OnHost(host))
	if err != nil {
		return 0, err
	}
	for _, p := range ports {
		want := "DOWN"
		if up[attr.Str(p, "id")] && attr.Bool(p, "admin_state_up") {
			want = "ACTIVE"
		}
		delete(up, attr.Str(p, "id"))
		if attr.Str(p, "status") == want {
			continue
		}
		p["status"] = want
		if err := c.Touch(schema.Port, p); err != nil {
			return changed, err
		}
		changed++
	}
	// A distributed port (a distributed router's interface, bound to no
	// host) is ACTIVE once a host has wired it.
	for _, id := range slices.Sorted(maps.Keys(up)) {
		p, err := c.Tx.Get(schema.Port.Kind, id)
		if err != nil || attr.Str(p, "binding:vif_type") != "distributed" || attr.Str(p, "status") == "ACTIVE" || !attr.Bool(p, "admin_state_up") {
			continue
		}
		p = schema.CloneObject(p)
		p["status"] = "ACTIVE"
		if err := c.Touch(schema.Port, p); err != nil {
			return changed, err
		}
		changed++
	}
	return changed, nil
}

// agentReported binds again the ports of a host whose binding failed when
// its host agent (re)appears: registered, restarted, or alive again.
func (s *Service) agentReported(c *plugin.Ctx, p *plugin.Payload) error {
	if attr.Str(p.New, "agent_type") != hostapi.HostAgentType {
		return nil
	}
	if p.Old != nil && p.Request["start_flag"] != true && p.Request["old_alive"] == true {
		return nil
	}
	host := attr.Str(p.New, "host")
	ports, err := c.Tx.List(schema.Port.Kind, OnHost(host))
	if err != nil {
		return err
	}
	for _, port := range ports {
		if attr.Str(port, "binding:host_id") != host || attr.Str(port, "binding:vif_type") != "binding_failed" {
			continue
		}
		net, err := c.Load(schema.Network, attr.Str(port, "network_id"))
		if err != nil {
			return err
		}
		if err := Bind(c, port, net); err != nil {
			return err
		}
		if attr.Str(port, "binding:vif_type") != "binding_failed" {
			if err := c.Touch(schema.Port, port); err != nil {
				return err
			}
		}
	}
	return nil
}

// Rebind moves a port to host (a router's or DHCP server's port following
// its agent) and binds it there.
func Rebind(c *plugin.Ctx, port plugin.Object, host string) error {
	net, err := c.Load(schema.Network, attr.Str(port, "network_id"))
	if err != nil {
		return err
	}
	port["binding:host_id"] = host
	if err := Bind(c, port, net); err != nil {
		return err
	}
	return c.Touch(schema.Port, port)
}
