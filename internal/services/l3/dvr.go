package l3

import (
	"crypto/rand"
	"fmt"
	"maps"
	"slices"
	"strings"

	"neutrino/internal/attr"
	"neutrino/internal/hostapi"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/services/agents"
	"neutrino/internal/services/ml2"
	"neutrino/internal/store"
)

// Distributed routers (dvr), as Neutron makes them. A distributed router
// has two parts:
//
//   - a distributed one on every host whose L3 agent runs in dvr or
//     dvr_snat mode and that has a VM on one of the router's networks: the
//     router's interfaces (the same ports, addresses and MACs on every such
//     host, bound to no host: binding:vif_type "distributed") route east-west
//     traffic on the sending VM's host, and the floating IPs of the VMs
//     there go out through the host's own port on the external network
//     (network:floatingip_agent_gateway, one per host and external network,
//     device_id its L3 agent);
//   - a centralized one, SNAT for VMs without a floating IP, scheduled like
//     a legacy router but to dvr_snat agents only (to several with ha): the
//     gateway port and one port per interface
//     (network:router_centralized_snat), which the distributed parts use as
//     next hop out of each subnet.
//
// Each dvr host has a MAC of its own (dvr_host_mac): routed frames leave
// it with that MAC instead of the router's, which every host shares.

const (
	ownerCSNAT      = hostapi.OwnerRouterSNAT
	ownerFIPGateway = hostapi.OwnerFIPGateway
	dvrMACKind      = "dvr_host_mac"
	// The agent modes (configurations.agent_mode of L3 agents).
	modeLegacy  = "legacy"
	modeDVR     = "dvr"
	modeDVRSNAT = "dvr_snat"
)

func isDVR(r plugin.Object) bool { return r["distributed"] == true }

// agentMode is an L3 agent's mode.
func agentMode(a plugin.Object) string {
	cfg, _ := a["configurations"].(map[string]any)
	if m := attr.Str(cfg, "agent_mode"); m != "" {
		return m
	}
	return modeLegacy
}

// hostMode is the mode of host's L3 agent ("" when it has none).
func hostMode(c *plugin.Ctx, host string) (string, error) {
	if host == "" {
		return "", nil
	}
	l, err := agents.OfType(c, hostapi.L3AgentType, host)
	if err != nil || len(l) == 0 {
		return "", err
	}
	return agentMode(l[0]), nil
}

func distributedMode(mode string) bool { return mode == modeDVR || mode == modeDVRSNAT }

// accepts is the scheduler's test of an agent for a router: a distributed
// router's centralized part goes to dvr_snat agents, any other router to
// legacy or dvr_snat ones (as Neutron's scheduler).
func accepts(c *plugin.Ctx, routerID string, a plugin.Object) bool {
	r, err := c.Tx.Get(Router.Kind, routerID)
	if err != nil {
		return false
	}
	return acceptsRouter(r, a)
}

func acceptsRouter(r, a plugin.Object) bool {
	if isDVR(r) {
		return agentMode(a) == modeDVRSNAT
	}
	return agentMode(a) != modeDVR
}

// centralPorts are the ports of a router's centralized part, bound to the
// host that runs it: all of a router's ports, or for a distributed router
// its gateway and SNAT ports.
func centralPorts(c *plugin.Ctx, r plugin.Object) ([]plugin.Object, error) {
	id := attr.Str(r, "id")
	if !isDVR(r) {
		return routerPorts(c, id)
	}
	ports, err := c.Tx.List(schema.Port.Kind, store.Filter{Attr: "device_id", Values: []string{id}})
	var out []plugin.Object
	for _, p := range ports {
		if o := attr.Str(p, "device_owner"); o == ownerRouterGateway || o == ownerCSNAT {
			out = append(out, p)
		}
	}
	return out, err
}

// hasGateway reports whether the router has a gateway.
func hasGateway(r plugin.Object) bool { return attr.Str(infoOf(r), "network_id") != "" }

// bindDistributed makes a distributed router's interface port the
// distributed port Neutron shows: bound to no host, vif_type distributed.
func bindDistributed(c *plugin.Ctx, p plugin.Object) error {
	if attr.Str(p, "binding:host_id") == "" && attr.Str(p, "binding:vif_type") == "distributed" {
		return nil
	}
	// DOWN until a host wires it (ml2.SetHostPorts), as Neutron.
	p["binding:host_id"], p["binding:vif_type"], p["binding:vif_details"] = "", "distributed", map[string]any{}
	p["status"] = "DOWN"
	return c.Touch(schema.Port, p)
}

// syncCSNAT makes a router's SNAT ports match its interfaces: one per
// interface port, on the same network with an address on each of its
// subnets, while the router is distributed and has a gateway; none
// otherwise.
func syncCSNAT(c *plugin.Ctx, r plugin.Object) error {
	id := attr.Str(r, "id")
	ports, err := c.Tx.List(schema.Port.Kind, store.Filter{Attr: "device_id", Values: []string{id}})
	if err != nil {
		return err
	}
	want := map[string][]string{} // network -> the interface's subnets
	if isDVR(r) && hasGateway(r) {
		for _, p := range ports {
			if isInterface(p) {
				want[attr.Str(p, "network_id")] = append(want[attr.Str(p, "network_id")], portSubnets(p)...)
			}
		}
	}
	for _, p := range ports {
		if attr.Str(p, "device_owner") != ownerCSNAT {
			continue
		}
		net := attr.Str(p, "network_id")
		if subs, ok := want[net]; ok && slices.Equal(sortedCopy(portSubnets(p)), sortedCopy(subs)) {
			delete(want, net)
			continue
		}
		if err := ml2.RemovePort(c, p); err != nil {
			return err
		}
	}
	for _, net := range slices.Sorted(maps.Keys(want)) {
		var fixed []any
		for _, sid := range want[net] {
			fixed = append(fixed, map[string]any{"subnet_id": sid})
		}
		if _, err := ml2.ServicePort(c, net, "", ownerCSNAT, id, fixed); err != nil {
			return err
		}
	}
	return nil
}

func sortedCopy(l []string) []string { return slices.Sorted(slices.Values(l)) }

// syncFIPGateways makes the external network's floating IP agent gateway
// ports match the dvr hosts that serve its floating IPs: one per host
// with a VM whose floating IP is on a distributed router.
func syncFIPGateways(c *plugin.Ctx, netID string) error {
	if netID == "" {
		return nil
	}
	fips, err := c.Tx.List(FloatingIP.Kind, store.Filter{Parent: netID})
	if err != nil {
		return err
	}
	need := map[string]bool{}
	modes := map[string]string{}
	for _, f := range fips {
		host, err := fipHost(c, f, modes)
		if err != nil {
			return err
		}
		if host != "" {
			need[host] = true
		}
	}
	ports, err := c.Tx.List(schema.Port.Kind, store.Filter{Parent: netID})
	if err != nil {
		return err
	}
	for _, p := range ports {
		if attr.Str(p, "device_owner") != ownerFIPGateway {
			continue
		}
		if h := attr.Str(p, "binding:host_id"); need[h] {
			delete(need, h)
			continue
		}
		if err := ml2.RemovePort(c, p); err != nil {
			return err
		}
	}
	for _, host := range slices.Sorted(maps.Keys(need)) {
		l, err := agents.OfType(c, hostapi.L3AgentType, host)
		if err != nil || len(l) == 0 {
			return err
		}
		p, err := ml2.ServicePort(c, netID, "", ownerFIPGateway, attr.Str(l[0], "id"), nil)
		if err != nil {
			return err
		}
		if err := ml2.Rebind(c, p, host); err != nil {
			return err
		}
	}
	return nil
}

// fipHost is the dvr host that serves a floating IP ("" when it is served
// centrally, or not at all): its port's host, when that host's L3 agent
// runs distributed routers and the floating IP's router is one. modes
// caches the hosts' modes.
func fipHost(c *plugin.Ctx, f plugin.Object, modes map[string]string) (string, error) {
	rid, pid := attr.Str(f, "router_id"), attr.Str(f, "port_id")
	if rid == "" || pid == "" {
		return "", nil
	}
	r, err := c.Tx.Get(Router.Kind, rid)
	if err != nil || !isDVR(r) {
		return "", nil
	}
	p, err := c.Tx.Get(schema.Port.Kind, pid)
	if err != nil {
		return "", nil
	}
	host := attr.Str(p, "binding:host_id")
	mode, ok := modes[host]
	if !ok {
		if mode, err = hostMode(c, host); err != nil {
			return "", err
		}
		modes[host] = mode
	}
	if !distributedMode(mode) {
		return "", nil
	}
	return host, nil
}

// fipGatewaysOfPort syncs the agent gateway ports of the external
// networks of a port's floating IPs (the port moved to another host).
func fipGatewaysOfPort(c *plugin.Ctx, portID string) error {
	fips, err := c.Tx.List(FloatingIP.Kind, store.Filter{Attr: "port_id", Values: []string{portID}})
	if err != nil {
		return err
	}
	nets := map[string]bool{}
	for _, f := range fips {
		nets[attr.Str(f, "floating_network_id")] = true
	}
	for _, n := range slices.Sorted(maps.Keys(nets)) {
		if err := syncFIPGateways(c, n); err != nil {
			return err
		}
	}
	return nil
}

// ensureDVRMAC gives a host whose L3 agent runs in a dvr mode its own
// MAC (Neutron's dvr_base_mac fa:16:3f and three random bytes), once.
func ensureDVRMAC(c *plugin.Ctx, host string) error {
	macs, err := c.Tx.List(dvrMACKind, store.Filter{})
	if err != nil {
		return err
	}
	used := map[string]bool{}
	for _, m := range macs {
		if attr.Str(m, "host") == host {
			return nil
		}
		used[attr.Str(m, "mac_address")] = true
	}
	for {
		b := make([]byte, 3)
		rand.Read(b)
		mac := fmt.Sprintf("fa:16:3f:%02x:%02x:%02x", b[0], b[1], b[2])
		if !used[mac] {
			return c.Tx.Put(dvrMACKind, "", plugin.Object{"id": plugin.NewID(), "host": host, "mac_address": mac})
		}
	}
}

// servedByDVR reports whether a port bound to a dvr host brings the
// distributed routers of its network there: a VM's (any port no network
// service owns).
func servedByDVR(p plugin.Object) bool {
	return !strings.HasPrefix(attr.Str(p, "device_owner"), "network:")
}

// dvrHostPart adds to a dvr host's span the distributed routers of its
// VMs' networks (with every interface port, and with snat_hops: each
// internal subnet's next hop out, the SNAT port's address), the floating
// IPs of its VMs on them, and the host's DVR MAC; routers holds the
// routers already in the span (by id), have its ports.
func (s *Service) dvrHostPart(c *plugin.Ctx, host string, span *hostapi.Span, have map[string]bool, routers map[string]plugin.Object) error {
	mode, err := hostMode(c, host)
	if err != nil || !distributedMode(mode) {
		return err
	}
	macs, err := c.Tx.List(dvrMACKind, store.Filter{})
	if err != nil {
		return err
	}
	for _, m := range macs {
		if attr.Str(m, "host") == host {
			span.DVRMACs = append(span.DVRMACs, m)
		}
	}
	nets, local := map[string]bool{}, map[string]bool{}
	for _, p := range span.Ports {
		if attr.Str(p, "binding:host_id") == host && servedByDVR(p) {
			nets[attr.Str(p, "network_id")] = true
			local[attr.Str(p, "id")] = true
		}
	}
	if len(nets) == 0 {
		return nil
	}
	ifaces, err := c.Tx.List(schema.Port.Kind, store.Filter{Attr: "device_owner", Values: []string{ownerDVRInterface}})
	if err != nil {
		return err
	}
	dvr := map[string]plugin.Object{}
	for _, p := range ifaces {
		id := attr.Str(p, "device_id")
		if !nets[attr.Str(p, "network_id")] || dvr[id] != nil {
			continue
		}
		if r, err := c.Tx.Get(Router.Kind, id); err == nil && isDVR(r) {
			dvr[id] = r
		}
	}
	for _, id := range slices.Sorted(maps.Keys(dvr)) {
		r := schema.CloneObject(dvr[id])
		ports, err := c.Tx.List(schema.Port.Kind, store.Filter{Attr: "device_id", Values: []string{id}})
		if err != nil {
			return err
		}
		var hops []any
		for _, p := range ports {
			switch attr.Str(p, "device_owner") {
			case ownerDVRInterface:
				if !have[attr.Str(p, "id")] {
					span.Ports = append(span.Ports, p)
					have[attr.Str(p, "id")] = true
				}
			case ownerCSNAT:
				for _, e := range attr.Objects(p, "fixed_ips") {
					hops = append(hops, map[string]any{"subnet_id": e["subnet_id"], "ip_address": e["ip_address"]})
				}
			}
		}
		r["snat_hops"] = attr.OrEmpty(hops)
		routers[id] = r
	}
	seen := map[string]bool{}
	for _, f := range span.FloatingIPs {
		seen[attr.Str(f, "id")] = true
	}
	for _, pid := range slices.Sorted(maps.Keys(local)) {
		fips, err := c.Tx.List(FloatingIP.Kind, store.Filter{Attr: "port_id", Values: []string{pid}})
		if err != nil {
			return err
		}
		for _, f := range fips {
			if dvr[attr.Str(f, "router_id")] != nil && !seen[attr.Str(f, "id")] {
				span.FloatingIPs = append(span.FloatingIPs, f)
				seen[attr.Str(f, "id")] = true
			}
		}
	}
	return nil
}
