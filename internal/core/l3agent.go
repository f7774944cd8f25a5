package core

import (
	"net/http"
	"sort"

	"neutrino/internal/fault"
	"neutrino/internal/hostapi"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// L3 scheduling: each router is hosted by one live L3 agent, the least
// loaded, recorded as an "l3_binding" (parent: the router). The router's
// ports are bound to that agent's host, so the host agent there wires them
// into their networks like any port; routers on a dead agent move to a
// live one.

// L3AgentType is the agent_type of agents that host routers.
const L3AgentType = hostapi.L3AgentType

const l3BindingKind = "l3_binding"

func (c *Ctx) l3Bindings(f store.Filter) ([]Object, error) { return c.Tx.List(l3BindingKind, f) }

// routerHost is the host of the router's L3 agent ("" if unscheduled).
func (c *Ctx) routerHost(routerID string) (string, error) {
	bound, err := c.l3Bindings(store.Filter{Parent: routerID})
	if err != nil || len(bound) == 0 {
		return "", err
	}
	a, err := c.Tx.Get(schema.Agent.Kind, str(bound[0], "agent_id"))
	if err != nil {
		return "", nil
	}
	return str(a, "host"), nil
}

// scheduleRouter gives an unscheduled router with ports (a gateway or an
// interface: a router without them has nothing to host, and may still be
// placed by hand) to the least loaded live L3 agent, then binds its ports
// to that agent's host.
func (c *Ctx) scheduleRouter(routerID string) error {
	bound, err := c.l3Bindings(store.Filter{Parent: routerID})
	if err != nil {
		return err
	}
	ports, err := c.routerPorts(routerID)
	if err != nil {
		return err
	}
	if len(bound) == 0 && len(ports) > 0 {
		agents, err := c.Tx.List(schema.Agent.Kind, store.Filter{})
		if err != nil {
			return err
		}
		all, err := c.l3Bindings(store.Filter{})
		if err != nil {
			return err
		}
		load := map[string]int{}
		for _, b := range all {
			load[str(b, "agent_id")]++
		}
		var best Object
		for _, a := range agents {
			if str(a, "agent_type") != L3AgentType || !boolean(a, "admin_state_up") || !c.S.agentAlive(a) {
				continue
			}
			if best == nil || load[str(a, "id")] < load[str(best, "id")] ||
				load[str(a, "id")] == load[str(best, "id")] && str(a, "id") < str(best, "id") {
				best = a
			}
		}
		if best == nil {
			return nil
		}
		if err := c.bindL3(routerID, str(best, "id")); err != nil {
			return err
		}
	}
	return c.bindRouterPorts(routerID)
}

func (c *Ctx) bindL3(routerID, agentID string) error {
	return c.Tx.Put(l3BindingKind, routerID, Object{"id": newID(), "router_id": routerID, "agent_id": agentID})
}

// bindRouterPorts binds a router's ports to its L3 agent's host (or
// unbinds them when it has none).
func (c *Ctx) bindRouterPorts(routerID string) error {
	host, err := c.routerHost(routerID)
	if err != nil {
		return err
	}
	ports, err := c.routerPorts(routerID)
	if err != nil {
		return err
	}
	for _, p := range ports {
		if str(p, "binding:host_id") == host {
			continue
		}
		net, err := c.load(schema.Network, str(p, "network_id"))
		if err != nil {
			return err
		}
		p["binding:host_id"] = host
		if err := c.S.bind(c, p, net); err != nil {
			return err
		}
		if err := c.touch(schema.Port, p); err != nil {
			return err
		}
	}
	return nil
}

// unscheduleRouter drops a router's L3 bindings.
func (c *Ctx) unscheduleRouter(routerID string) error {
	bound, err := c.l3Bindings(store.Filter{Parent: routerID})
	if err != nil {
		return err
	}
	for _, b := range bound {
		if err := c.Tx.Delete(l3BindingKind, str(b, "id")); err != nil {
			return err
		}
	}
	return nil
}

// autoScheduleRouters moves routers off dead L3 agents and schedules every
// router without a live one; run when an L3 agent reports.
func (c *Ctx) autoScheduleRouters() error {
	agents, err := c.Tx.List(schema.Agent.Kind, store.Filter{})
	if err != nil {
		return err
	}
	byID := map[string]Object{}
	for _, a := range agents {
		byID[str(a, "id")] = a
	}
	bound, err := c.l3Bindings(store.Filter{})
	if err != nil {
		return err
	}
	hosted := map[string]bool{}
	for _, b := range bound {
		a := byID[str(b, "agent_id")]
		if a == nil || !c.S.agentAlive(a) {
			if err := c.Tx.Delete(l3BindingKind, str(b, "id")); err != nil {
				return err
			}
			continue
		}
		hosted[str(b, "router_id")] = true
	}
	// Only routers with ports and no live agent need work (this runs at
	// every L3 agent heartbeat: one pass over the ports, not one per router).
	ports, err := c.Tx.List(schema.Port.Kind, store.Filter{})
	if err != nil {
		return err
	}
	pending := map[string]bool{}
	for _, p := range ports {
		if owner := str(p, "device_owner"); (owner == ownerRouterInterface || owner == ownerRouterGateway) && !hosted[str(p, "device_id")] {
			pending[str(p, "device_id")] = true
		}
	}
	ids := make([]string, 0, len(pending))
	for id := range pending {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if err := c.scheduleRouter(id); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) l3Agent(c *Ctx, agentID string) (Object, error) {
	if !c.Admin {
		return nil, fault.Forbidden("rule:get_l3-routers is disallowed by policy")
	}
	a, err := c.Tx.Get(schema.Agent.Kind, agentID)
	if err != nil {
		return nil, fault.New(http.StatusNotFound, "AgentNotFound", "Agent %s could not be found.", agentID)
	}
	return a, nil
}

// L3AgentRouters lists the routers an L3 agent hosts.
func (s *Service) L3AgentRouters(c *Ctx, agentID string) ([]Object, error) {
	if _, err := s.l3Agent(c, agentID); err != nil {
		return nil, err
	}
	return c.agentObjects(l3BindingKind, agentID, schema.Router.Kind, "router_id")
}

// RouterL3Agents lists the agents hosting a router.
func (s *Service) RouterL3Agents(c *Ctx, routerID string) ([]Object, error) {
	if !c.Admin {
		return nil, fault.Forbidden("rule:get_l3-agents is disallowed by policy")
	}
	if _, err := s.Get(c, schema.Router, routerID); err != nil {
		return nil, err
	}
	return c.bindingAgents(l3BindingKind, routerID)
}

// AddL3Router hosts a router on an L3 agent.
func (s *Service) AddL3Router(c *Ctx, agentID, routerID string) error {
	a, err := s.l3Agent(c, agentID)
	if err != nil {
		return err
	}
	if str(a, "agent_type") != L3AgentType || !boolean(a, "admin_state_up") {
		return fault.Conflict("InvalidL3Agent", "Agent %s is not a L3 Agent or has been disabled", agentID)
	}
	if _, err := s.Get(c, schema.Router, routerID); err != nil {
		return err
	}
	bound, err := c.l3Bindings(store.Filter{Parent: routerID})
	if err != nil {
		return err
	}
	for _, b := range bound {
		if str(b, "agent_id") == agentID {
			return fault.Conflict("RouterHostedByL3Agent", "The router %s has been already hosted by the L3 Agent %s.", routerID, agentID)
		}
		return fault.Conflict("RouterReschedulingFailed", "Failed rescheduling router %s: it is hosted by L3 agent %s; remove it there first.", routerID, str(b, "agent_id"))
	}
	if err := c.bindL3(routerID, agentID); err != nil {
		return err
	}
	return c.bindRouterPorts(routerID)
}

// RemoveL3Router stops hosting a router on an L3 agent.
func (s *Service) RemoveL3Router(c *Ctx, agentID, routerID string) error {
	if _, err := s.l3Agent(c, agentID); err != nil {
		return err
	}
	bound, err := c.l3Bindings(store.Filter{Parent: routerID})
	if err != nil {
		return err
	}
	for _, b := range bound {
		if str(b, "agent_id") == agentID {
			if err := c.Tx.Delete(l3BindingKind, str(b, "id")); err != nil {
				return err
			}
			return c.bindRouterPorts(routerID)
		}
	}
	return fault.Conflict("RouterNotHostedByL3Agent", "The router %s is not hosted by L3 agent %s.", routerID, agentID)
}
