package core

import (
	"net/http"
	"sort"
	"time"

	"neutrino/internal/fault"
	"neutrino/internal/hostapi"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

const agentTimeFormat = "2006-01-02 15:04:05"

// Agents are visible to admins only; others list an empty collection.
func agentVisible(c *Ctx, o Object) bool { return false }

func createAgent(c *Ctx, in Object) (Object, error) {
	return nil, fault.New(http.StatusBadRequest, "HTTPBadRequest", "Agents register themselves; they cannot be created through the API")
}

func updateAgent(c *Ctx, cur, in Object) (Object, error) {
	if !c.Admin {
		return nil, fault.Forbidden("rule:update_agent is disallowed by policy")
	}
	return merge(cur, in), nil
}

func deleteAgent(c *Ctx, cur Object) error {
	if !c.Admin {
		return fault.Forbidden("rule:delete_agent is disallowed by policy")
	}
	if err := c.dropDHCPBindings("", str(cur, "id")); err != nil {
		return err
	}
	l3, err := c.l3Bindings(store.Filter{})
	if err != nil {
		return err
	}
	for _, b := range l3 {
		if str(b, "agent_id") == str(cur, "id") {
			if err := c.Tx.Delete(l3BindingKind, str(b, "id")); err != nil {
				return err
			}
		}
	}
	return c.Tx.Delete(schema.Agent.Kind, str(cur, "id"))
}

// AgentReport is what an agent sends (see hostapi.AgentReport).
type AgentReport = hostapi.AgentReport

// ReportAgent records a report: the agent of that type on that host is
// created on its first report and its heartbeat refreshed on every one.
func (s *Service) ReportAgent(c *Ctx, r AgentReport) (Object, error) {
	if !c.Admin && !c.Service {
		return nil, fault.Forbidden("rule:report_agent is disallowed by policy")
	}
	if r.AgentType == "" || r.Host == "" || r.Binary == "" {
		return nil, fault.BadRequest("An agent report needs agent_type, binary and host")
	}
	now := time.Now().UTC().Format(agentTimeFormat)
	agents, err := c.Tx.List(schema.Agent.Kind, store.Filter{})
	if err != nil {
		return nil, err
	}
	var cur Object
	for _, a := range agents {
		if str(a, "agent_type") == r.AgentType && str(a, "host") == r.Host {
			cur = a
		}
	}
	if r.Configurations == nil {
		r.Configurations = map[string]any{}
	}
	// A host agent that (re)appears may bind ports that failed to bind
	// while it was away.
	rebind := r.AgentType == HostAgentType && (cur == nil || r.StartFlag || !c.S.agentAlive(cur))
	if cur == nil {
		cur = Object{"id": newID(), "agent_type": r.AgentType, "host": r.Host, "admin_state_up": true,
			"description": nil, "created_at": now, "started_at": now, "resources_synced": nil}
	}
	cur["binary"], cur["topic"], cur["configurations"] = r.Binary, r.Topic, r.Configurations
	cur["availability_zone"] = nilIfEmpty(r.AvailabilityZone)
	cur["heartbeat_timestamp"] = now
	if r.StartFlag {
		cur["started_at"] = now
	}
	if err := c.Tx.Put(schema.Agent.Kind, "", cur); err != nil {
		return nil, err
	}
	if r.AgentType == DHCPAgentType {
		if err := c.failoverDHCP(); err != nil {
			return nil, err
		}
		if err := c.autoScheduleDHCP(); err != nil {
			return nil, err
		}
	}
	if r.AgentType == L3AgentType {
		if err := c.autoScheduleRouters(); err != nil {
			return nil, err
		}
	}
	if rebind {
		if err := c.rebindHost(r.Host); err != nil {
			return nil, err
		}
	}
	return cur, nil
}

// rebindHost binds again the ports at host whose binding failed.
func (c *Ctx) rebindHost(host string) error {
	ports, err := c.Tx.List(schema.Port.Kind, store.Filter{})
	if err != nil {
		return err
	}
	for _, p := range ports {
		if str(p, "binding:host_id") != host || str(p, "binding:vif_type") != "binding_failed" {
			continue
		}
		net, err := c.load(schema.Network, str(p, "network_id"))
		if err != nil {
			return err
		}
		if err := c.S.bind(c, p, net); err != nil {
			return err
		}
		if str(p, "binding:vif_type") != "binding_failed" {
			if err := c.touch(schema.Port, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// agentAlive reports whether the agent's last heartbeat is recent.
func (s *Service) agentAlive(o Object) bool {
	t, err := time.Parse(agentTimeFormat, str(o, "heartbeat_timestamp"))
	return err == nil && time.Since(t) < s.Config.AgentDownTime
}

// SetHostPorts reconciles the status of the ports bound to host with what
// its agent reports as wired: those are ACTIVE, every other port bound
// there is DOWN. Agents send the whole set at each report, so a lost
// message cannot leave a port in the wrong state for longer than one period.
func (s *Service) SetHostPorts(c *Ctx, host string, active []string) (changed int, err error) {
	if !c.Admin && !c.Service {
		return 0, fault.Forbidden("rule:update_port_status is disallowed by policy")
	}
	up := make(map[string]bool, len(active))
	for _, id := range active {
		up[id] = true
	}
	ports, err := c.Tx.List(schema.Port.Kind, store.Filter{})
	if err != nil {
		return 0, err
	}
	for _, p := range ports {
		if str(p, "binding:host_id") != host {
			continue
		}
		want := "DOWN"
		if up[str(p, "id")] && boolean(p, "admin_state_up") {
			want = "ACTIVE"
		}
		if str(p, "status") == want {
			continue
		}
		p["status"] = want
		if err := c.touch(schema.Port, p); err != nil {
			return changed, err
		}
		changed++
	}
	return changed, nil
}

// DHCP scheduling: a network with a subnet served by DHCP is hosted by
// up to DHCPAgentsPerNetwork live DHCP agents, the least loaded first; a
// binding is a "dhcp_binding" object (parent: the network).

const dhcpBindingKind = "dhcp_binding"

// DHCPAgentType is the agent_type of agents that serve DHCP.
const DHCPAgentType = hostapi.DHCPAgentType

func (c *Ctx) dhcpBindings(f store.Filter) ([]Object, error) {
	return c.Tx.List(dhcpBindingKind, f)
}

// needsDHCP reports whether a network has a DHCP-enabled IPv4 subnet, or an
// IPv6 one whose addresses or options come by DHCPv6.
func (c *Ctx) needsDHCP(networkID string) (bool, error) {
	subnets, err := c.Tx.List(schema.Subnet.Kind, store.Filter{Parent: networkID})
	if err != nil {
		return false, err
	}
	for _, sn := range subnets {
		if !boolean(sn, "enable_dhcp") {
			continue
		}
		if m := str(sn, "ipv6_address_mode"); num(sn["ip_version"], 0) == 4 || m == "dhcpv6-stateful" || m == "dhcpv6-stateless" {
			return true, nil
		}
	}
	return false, nil
}

// scheduleDHCP binds a network that needs DHCP to live DHCP agents.
func (c *Ctx) scheduleDHCP(networkID string) error {
	need, err := c.needsDHCP(networkID)
	if err != nil || !need {
		return err
	}
	bound, err := c.dhcpBindings(store.Filter{Parent: networkID})
	if err != nil || len(bound) >= c.S.Config.DHCPAgentsPerNetwork {
		return err
	}
	agents, err := c.Tx.List(schema.Agent.Kind, store.Filter{})
	if err != nil {
		return err
	}
	all, err := c.dhcpBindings(store.Filter{})
	if err != nil {
		return err
	}
	load := map[string]int{}
	for _, b := range all {
		load[str(b, "agent_id")]++
	}
	has := map[string]bool{}
	for _, b := range bound {
		has[str(b, "agent_id")] = true
	}
	var candidates []Object
	for _, a := range agents {
		if str(a, "agent_type") == DHCPAgentType && boolean(a, "admin_state_up") && c.S.agentAlive(a) && !has[str(a, "id")] {
			candidates = append(candidates, a)
		}
	}
	sort.Slice(candidates, func(i, j int) bool {
		li, lj := load[str(candidates[i], "id")], load[str(candidates[j], "id")]
		return li < lj || li == lj && str(candidates[i], "id") < str(candidates[j], "id")
	})
	for _, a := range candidates {
		if len(bound) >= c.S.Config.DHCPAgentsPerNetwork {
			break
		}
		if err := c.bindDHCP(networkID, str(a, "id")); err != nil {
			return err
		}
		bound = append(bound, Object{"agent_id": a["id"]})
	}
	return nil
}

func (c *Ctx) bindDHCP(networkID, agentID string) error {
	return c.Tx.Put(dhcpBindingKind, networkID, Object{"id": newID(), "network_id": networkID, "agent_id": agentID})
}

// autoScheduleDHCP gives a (newly alive) DHCP agent the networks that need
// one and have none.
func (c *Ctx) autoScheduleDHCP() error {
	subnets, err := c.Tx.List(schema.Subnet.Kind, store.Filter{})
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, sn := range subnets {
		id := str(sn, "network_id")
		if seen[id] || !boolean(sn, "enable_dhcp") {
			continue
		}
		seen[id] = true
		if err := c.scheduleDHCP(id); err != nil {
			return err
		}
	}
	return nil
}

// DHCPAgentNetworks lists the networks an agent hosts.
func (s *Service) DHCPAgentNetworks(c *Ctx, agentID string) ([]Object, error) {
	if _, err := s.dhcpAgent(c, agentID); err != nil {
		return nil, err
	}
	return c.agentObjects(dhcpBindingKind, agentID, schema.Network.Kind, "network_id")
}

// NetworkDHCPAgents lists the agents hosting a network.
func (s *Service) NetworkDHCPAgents(c *Ctx, networkID string) ([]Object, error) {
	if _, err := s.Get(c, schema.Network, networkID); err != nil {
		return nil, err
	}
	return c.bindingAgents(dhcpBindingKind, networkID)
}

// agentObjects lists the objects (of objKind, named by field) that an
// agent's bindings of kind hold, by id.
func (c *Ctx) agentObjects(kind, agentID, objKind, field string) ([]Object, error) {
	bound, err := c.Tx.List(kind, store.Filter{})
	if err != nil {
		return nil, err
	}
	var out []Object
	for _, b := range bound {
		if str(b, "agent_id") == agentID {
			if o, err := c.Tx.Get(objKind, str(b, field)); err == nil {
				out = append(out, o)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return str(out[i], "id") < str(out[j], "id") })
	return out, nil
}

// bindingAgents lists the agents of the bindings of kind under parent.
func (c *Ctx) bindingAgents(kind, parent string) ([]Object, error) {
	bound, err := c.Tx.List(kind, store.Filter{Parent: parent})
	if err != nil {
		return nil, err
	}
	var out []Object
	for _, b := range bound {
		if a, err := c.Tx.Get(schema.Agent.Kind, str(b, "agent_id")); err == nil {
			out = append(out, a)
		}
	}
	return out, nil
}

func (s *Service) dhcpAgent(c *Ctx, agentID string) (Object, error) {
	if !c.Admin {
		return nil, fault.Forbidden("rule:get_dhcp-networks is disallowed by policy")
	}
	a, err := c.Tx.Get(schema.Agent.Kind, agentID)
	if err != nil {
		return nil, fault.New(http.StatusNotFound, "AgentNotFound", "Agent %s could not be found.", agentID)
	}
	return a, nil
}

// AddDHCPNetwork binds a network to a DHCP agent.
func (s *Service) AddDHCPNetwork(c *Ctx, agentID, networkID string) error {
	a, err := s.dhcpAgent(c, agentID)
	if err != nil {
		return err
	}
	if str(a, "agent_type") != DHCPAgentType {
		return fault.Conflict("InvalidDHCPAgent", "Agent %s is not a valid DHCP Agent or has been disabled.", agentID)
	}
	if _, err := s.Get(c, schema.Network, networkID); err != nil {
		return err
	}
	bound, err := c.dhcpBindings(store.Filter{Parent: networkID})
	if err != nil {
		return err
	}
	for _, b := range bound {
		if str(b, "agent_id") == agentID {
			return fault.Conflict("NetworkHostedByDHCPAgent", "The network %s has been already hosted by the DHCP Agent %s.", networkID, agentID)
		}
	}
	return c.bindDHCP(networkID, agentID)
}

// RemoveDHCPNetwork unbinds a network from a DHCP agent and removes the
// DHCP port that agent's host had on it.
func (s *Service) RemoveDHCPNetwork(c *Ctx, agentID, networkID string) error {
	a, err := s.dhcpAgent(c, agentID)
	if err != nil {
		return err
	}
	bound, err := c.dhcpBindings(store.Filter{Parent: networkID})
	if err != nil {
		return err
	}
	for _, b := range bound {
		if str(b, "agent_id") == agentID {
			return c.unbindDHCP(b, a)
		}
	}
	return fault.Conflict("NetworkNotHostedByDhcpAgent", "The network %s is not hosted by the DHCP agent %s.", networkID, agentID)
}

// unbindDHCP removes a DHCP binding and the DHCP port the agent's host had
// on the network.
func (c *Ctx) unbindDHCP(binding, agent Object) error {
	if err := c.Tx.Delete(dhcpBindingKind, str(binding, "id")); err != nil {
		return err
	}
	ports, err := c.Tx.List(schema.Port.Kind, store.Filter{Parent: str(binding, "network_id")})
	if err != nil {
		return err
	}
	for _, p := range ports {
		if str(p, "device_owner") == "network:dhcp" && str(p, "binding:host_id") == str(agent, "host") {
			if err := removePort(c, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// failoverDHCP moves networks off DHCP agents that are dead (or gone) when
// a live one can take them, as Neutron's allow_automatic_dhcp_failover
// does; their DHCP ports go with them.
func (c *Ctx) failoverDHCP() error {
	agents, err := c.Tx.List(schema.Agent.Kind, store.Filter{})
	if err != nil {
		return err
	}
	byID, live := map[string]Object{}, false
	for _, a := range agents {
		if str(a, "agent_type") == DHCPAgentType {
			byID[str(a, "id")] = a
			live = live || c.S.agentAlive(a) && boolean(a, "admin_state_up")
		}
	}
	if !live {
		return nil
	}
	bound, err := c.dhcpBindings(store.Filter{})
	if err != nil {
		return err
	}
	for _, b := range bound {
		a := byID[str(b, "agent_id")]
		if a != nil && c.S.agentAlive(a) {
			continue
		}
		if a == nil {
			a = Object{"host": "\x00"} // gone: no port is bound to it
		}
		if err := c.unbindDHCP(b, a); err != nil {
			return err
		}
	}
	return nil
}

// dropDHCPBindings removes the bindings of a network or of an agent.
func (c *Ctx) dropDHCPBindings(networkID, agentID string) error {
	bound, err := c.dhcpBindings(store.Filter{})
	if err != nil {
		return err
	}
	for _, b := range bound {
		if networkID != "" && str(b, "network_id") == networkID || agentID != "" && str(b, "agent_id") == agentID {
			if err := c.Tx.Delete(dhcpBindingKind, str(b, "id")); err != nil {
				return err
			}
		}
	}
	return nil
}
