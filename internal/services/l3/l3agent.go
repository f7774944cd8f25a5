package l3

import (
	"maps"
	"slices"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/hostapi"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/services/agents"
	"neutrino/internal/services/ml2"
	"neutrino/internal/store"
)

// L3 agent scheduling: a router with ports is hosted by the least loaded
// live L3 agent (one agent: routers are legacy ones); its ports are bound
// to that agent's host, and move with the router when the agent dies.

// routerHost is the host the router's ports are bound to ("" if
// unscheduled): its L3 agent's, or for an HA router its active instance's
// (until one reports active: the host they are bound to if it still hosts
// the router, else its first agent's).
func (s *Service) routerHost(c *plugin.Ctx, routerID string) (string, error) {
	hosts, err := s.sched.Hosts(c, routerID)
	if err != nil || len(hosts) == 0 {
		return "", err
	}
	if len(hosts) == 1 {
		return hosts[0], nil
	}
	if h, err := s.activeHost(c, routerID); err != nil || h != "" {
		return h, err
	}
	r, err := c.Tx.Get(Router.Kind, routerID)
	if err != nil {
		return "", err
	}
	ports, err := centralPorts(c, r)
	if err != nil {
		return "", err
	}
	for _, p := range ports {
		if h := attr.Str(p, "binding:host_id"); slices.Contains(hosts, h) {
			return h, nil
		}
	}
	return hosts[0], nil
}

// scheduleRouter hosts a router that has ports on its L3 agents (one, or
// for an HA router several, each with its HA port), and binds its ports
// to the host of the one that serves it.
func (s *Service) scheduleRouter(c *plugin.Ctx, routerID string) error {
	r, err := c.Tx.Get(Router.Kind, routerID)
	if err != nil {
		return err
	}
	return s.scheduleRouterObj(c, r)
}

// scheduleRouterObj is scheduleRouter for the router as r has it (an
// update not stored yet).
func (s *Service) scheduleRouterObj(c *plugin.Ctx, r plugin.Object) error {
	id := attr.Str(r, "id")
	ports, err := routerPorts(c, id)
	if err != nil {
		return err
	}
	want := s.agentsFor(r)
	bound, err := s.sched.Bindings(c, id)
	if err != nil {
		return err
	}
	for _, b := range bound { // agents of a mode that may no longer host it (migrated)
		if a, err := c.Tx.Get(agents.Agent.Kind, attr.Str(b, "agent_id")); err == nil && !acceptsRouter(r, a) {
			if err := s.sched.Unbind(c, b); err != nil {
				return err
			}
		}
	}
	if len(ports) > 0 && want > 0 {
		if _, err := s.sched.Schedule(c, id, want); err != nil {
			return err
		}
	}
	// A router no longer HA keeps one agent (a distributed one without a
	// gateway none).
	bound, err = s.sched.Bindings(c, id)
	if err != nil {
		return err
	}
	for _, b := range bound[min(len(bound), want):] {
		if err := s.sched.Unbind(c, b); err != nil {
			return err
		}
	}
	if err := s.syncHA(c, r); err != nil {
		return err
	}
	if err := syncCSNAT(c, r); err != nil {
		return err
	}
	if err := syncInterfaceOwners(c, r); err != nil {
		return err
	}
	return s.bindRouterPorts(c, id)
}

// routerMoved follows a router whose agent died to its new one: an HA
// instance starts as a standby there, with an HA port of its own.
func (s *Service) routerMoved(c *plugin.Ctx, routerID string, _, to plugin.Object) error {
	r, err := c.Tx.Get(Router.Kind, routerID)
	if err != nil {
		return err
	}
	if isHA(r) && to != nil {
		b, err := s.sched.Binding(c, routerID, attr.Str(to, "id"))
		if err != nil {
			return err
		}
		if b != nil && attr.Str(b, "ha_state") != haStandby {
			nb := schema.CloneObject(b)
			nb["ha_state"] = haStandby
			if err := c.Tx.Put(s.sched.Kind, routerID, nb); err != nil {
				return err
			}
		}
		if err := s.syncHA(c, r); err != nil {
			return err
		}
	}
	return s.bindRouterPorts(c, routerID)
}

// bindRouterPorts binds a router's ports to its L3 agent's host (or
// unbinds them when it has none).
func (s *Service) bindRouterPorts(c *plugin.Ctx, routerID string) error {
	host, err := s.routerHost(c, routerID)
	if err != nil {
		return err
	}
	r, err := c.Tx.Get(Router.Kind, routerID)
	if err != nil {
		return err
	}
	ports, err := centralPorts(c, r)
	if err != nil {
		return err
	}
	if isDVR(r) {
		ifaces, err := routerPorts(c, routerID)
		if err != nil {
			return err
		}
		for _, p := range ifaces {
			if isInterface(p) {
				if err := bindDistributed(c, p); err != nil {
					return err
				}
			}
		}
	}
	for _, p := range ports {
		if attr.Str(p, "binding:host_id") == host {
			continue
		}
		if err := ml2.Rebind(c, p, host); err != nil {
			return err
		}
	}
	return nil
}

// autoSchedule moves routers off dead L3 agents and schedules every router
// with ports and no agent; run when an L3 agent reports.
func (s *Service) autoSchedule(c *plugin.Ctx) error {
	if err := s.sched.Failover(c); err != nil {
		return err
	}
	bound, err := s.sched.Bindings(c, "")
	if err != nil {
		return err
	}
	hosted := map[string]bool{}
	count := map[string]int{}
	for _, b := range bound {
		hosted[attr.Str(b, "router_id")] = true
		count[attr.Str(b, "router_id")]++
	}
	// HA routers short of instances (fewer agents were alive when they
	// were scheduled) get more as agents come.
	for id, n := range count {
		if n >= s.maxAgents() {
			continue
		}
		if r, err := c.Tx.Get(Router.Kind, id); err == nil && isHA(r) {
			hosted[id] = false
		}
	}
	// Only routers with ports and no agent need work (this runs at every
	// L3 agent heartbeat: one pass over the ports, not one per router).
	ports, err := c.Tx.List(schema.Port.Kind, store.Filter{Attr: "device_owner", Values: append([]string{ownerRouterGateway}, interfaceOwners...)})
	if err != nil {
		return err
	}
	pending := map[string]bool{}
	for _, p := range ports {
		if (isInterface(p) || attr.Str(p, "device_owner") == ownerRouterGateway) && !hosted[attr.Str(p, "device_id")] {
			pending[attr.Str(p, "device_id")] = true
		}
	}
	ids := slices.Sorted(maps.Keys(pending))
	for _, id := range ids {
		if r, err := c.Tx.Get(Router.Kind, id); err == nil && s.agentsFor(r) == 0 {
			continue // a distributed router without a gateway: nothing central
		}
		if err := s.scheduleRouter(c, id); err != nil {
			return err
		}
	}
	return nil
}

// l3RoutersNest serves /agents/{id}/l3-routers: list, add, remove.
func (s *Service) l3RoutersNest() *plugin.Nested {
	return &plugin.Nested{
		List: s.sched.ListHosted(Router, "get_l3-routers"),
		Add: func(c *plugin.Ctx, agentID string, body map[string]any) error {
			routerID, a, err := s.sched.Adding(c, agentID, body, "create_l3-router")
			if err != nil {
				return err
			}
			if attr.Str(a, "agent_type") != hostapi.L3AgentType || a["admin_state_up"] != true {
				return fault.Conflict("InvalidL3Agent", "Agent %s is not a L3 Agent or has been disabled", agentID)
			}
			r, err := c.Get(Router, routerID)
			if err != nil {
				return err
			}
			// Neutron's words.
			if agentMode(a) == modeDVR {
				return fault.Conflict("DVRL3CannotAssignToDvrAgent", "Not allowed to manually assign a router to an agent in 'dvr' mode.")
			}
			if !acceptsRouter(r, a) {
				return fault.Conflict("RouterL3AgentMismatch", "Cannot host distributed router %s on legacy L3 agent %s.", routerID, agentID)
			}
			bound, err := s.sched.Bindings(c, routerID)
			if err != nil {
				return err
			}
			for _, b := range bound {
				if attr.Str(b, "agent_id") == agentID {
					return fault.Conflict("RouterHostedByL3Agent", "The router %s has been already hosted by the L3 Agent %s.", routerID, agentID)
				}
				if !isHA(r) { // an HA router takes one more instance
					return fault.Conflict("RouterReschedulingFailed", "Failed rescheduling router %s: it is hosted by L3 agent %s; remove it there first.", routerID, attr.Str(b, "agent_id"))
				}
			}
			if err := s.sched.Bind(c, routerID, agentID); err != nil {
				return err
			}
			if err := s.syncHA(c, r); err != nil {
				return err
			}
			return s.bindRouterPorts(c, routerID)
		},
		Remove: func(c *plugin.Ctx, agentID, routerID string) error {
			if _, err := s.sched.Unhost(c, agentID, routerID, "delete_l3-router",
				fault.Conflict("RouterNotHostedByL3Agent", "The router %s is not hosted by L3 agent %s.", routerID, agentID)); err != nil {
				return err
			}
			if r, err := c.Tx.Get(Router.Kind, routerID); err == nil {
				if err := s.syncHA(c, r); err != nil { // its HA port there goes
					return err
				}
			}
			return s.bindRouterPorts(c, routerID)
		},
	}
}
