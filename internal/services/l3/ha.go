package l3

import (
	"maps"
	"net/http"
	"slices"
	"time"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/hostapi"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/services/agents"
	"neutrino/internal/services/ml2"
	"neutrino/internal/store"
)

// Highly available routers (l3-ha), as Neutron makes them: an HA router
// is scheduled to several L3 agents (up to MaxAgents), each running one
// instance; the instances elect the active one with VRRP over the
// project's HA network, a VXLAN network owned by no project ("HA network
// tenant <project>", made with the project's first HA router and deleted
// with its last), through one HA port each ("HA port tenant <project>",
// bound to the instance's host). Each router has a virtual router id of
// its own on that network (ha_vr_id, not shown by the API).
//
// Agents report each instance's state (active, standby, fault); the
// router's ports are bound to the active instance's host, so that the
// other hosts send the router's traffic there, and follow it on failover.

const (
	ownerHAPort = hostapi.OwnerRouterHA
	haCIDR      = "169.254.192.0/18"
	// maxVRID: virtual router ids 1-254 per HA network, as Neutron.
	maxVRID = 254
)

// HA states, as agents report them and the l3-agents listing shows them.
const (
	haActive  = "active"
	haStandby = "standby"
)

// Config is the router service's configuration.
type Config struct {
	// HA makes new routers highly available unless asked otherwise
	// (Neutron's l3_ha).
	HA bool
	// MaxAgents is how many L3 agents an HA router is scheduled to
	// (max_l3_agents_per_router; 0: 3).
	MaxAgents int
}

func isHA(r plugin.Object) bool { return r["ha"] == true }

// agentsFor is how many L3 agents the router is scheduled to.
func (s *Service) agentsFor(r plugin.Object) int {
	if isDVR(r) && !hasGateway(r) {
		return 0 // only distributed parts
	}
	if !isHA(r) {
		return 1
	}
	return s.maxAgents()
}

// maxAgents is how many L3 agents an HA router goes to.
func (s *Service) maxAgents() int {
	if s.cfg.MaxAgents > 0 {
		return s.cfg.MaxAgents
	}
	return 3
}

// haNetwork finds the project's HA network and subnet, or makes them.
func haNetwork(c *plugin.Ctx, project string) (netID, subnetID string, err error) {
	nets, err := c.Tx.List(schema.Network.Kind, store.Filter{Projects: []string{""}})
	if err != nil {
		return "", "", err
	}
	for _, n := range nets {
		if attr.Str(n, "name") == "HA network tenant "+project {
			netID = attr.Str(n, "id")
			break
		}
	}
	if netID == "" {
		n, err := createUnowned(c, schema.Network, map[string]any{"name": "HA network tenant " + project})
		if err != nil {
			return "", "", err
		}
		netID = attr.Str(n, "id")
	}
	subnets, err := c.Tx.List(schema.Subnet.Kind, store.Filter{Parent: netID})
	if err != nil {
		return "", "", err
	}
	if len(subnets) > 0 {
		return netID, attr.Str(subnets[0], "id"), nil
	}
	sn, err := createUnowned(c, schema.Subnet, map[string]any{"name": "HA subnet tenant " + project, "network_id": netID,
		"ip_version": float64(4), "cidr": haCIDR, "enable_dhcp": false, "gateway_ip": nil})
	if err != nil {
		return "", "", err
	}
	return netID, attr.Str(sn, "id"), nil
}

// createUnowned creates a resource of res owned by no project, as the
// service itself (HA networks and their subnets).
func createUnowned(c *plugin.Ctx, res *schema.Resource, body map[string]any) (plugin.Object, error) {
	ac := c.AsAdmin()
	in, err := res.ParseCreate(ac.Caller, body)
	if err != nil {
		return nil, err
	}
	in["project_id"] = ""
	return ac.Create(res, in)
}

// allocateVRID gives an HA router the lowest virtual router id no other HA
// router of its project uses.
func allocateVRID(c *plugin.Ctx, r plugin.Object) error {
	if _, ok := r["ha_vr_id"].(float64); ok {
		return nil
	}
	routers, err := c.Tx.List(Router.Kind, store.Filter{Projects: []string{attr.Str(r, "project_id")}})
	if err != nil {
		return err
	}
	used := map[int]bool{}
	for _, o := range routers {
		if v, ok := o["ha_vr_id"].(float64); ok && attr.Str(o, "id") != attr.Str(r, "id") {
			used[int(v)] = true
		}
	}
	for v := 1; v <= maxVRID; v++ {
		if !used[v] {
			r["ha_vr_id"] = float64(v)
			return nil
		}
	}
	return fault.Conflict("MaxVRIDAllocationTriesReached", "Failed to allocate a VRID in the network for the router %s", attr.Str(r, "id"))
}

// haPorts lists a router's HA ports.
func haPorts(c *plugin.Ctx, routerID string) ([]plugin.Object, error) {
	ports, err := c.Tx.List(schema.Port.Kind, store.Filter{Attr: "device_id", Values: []string{routerID}})
	var out []plugin.Object
	for _, p := range ports {
		if attr.Str(p, "device_owner") == ownerHAPort {
			out = append(out, p)
		}
	}
	return out, err
}

// syncHA makes an HA router's HA ports match its L3 agents (one per host,
// on the project's HA network), and a router that is not HA (any longer)
// have none, its project's HA network going with the last HA router.
func (s *Service) syncHA(c *plugin.Ctx, r plugin.Object) error {
	id, project := attr.Str(r, "id"), attr.Str(r, "project_id")
	ports, err := haPorts(c, id)
	if err != nil {
		return err
	}
	hosts := map[string]bool{}
	if isHA(r) {
		hs, err := s.sched.Hosts(c, id)
		if err != nil {
			return err
		}
		for _, h := range hs {
			hosts[h] = true
		}
	}
	for _, p := range ports {
		h := attr.Str(p, "binding:host_id")
		if hosts[h] {
			delete(hosts, h)
			continue
		}
		if err := ml2.RemovePort(c, p); err != nil {
			return err
		}
	}
	if len(hosts) > 0 {
		netID, _, err := haNetwork(c, project)
		if err != nil {
			return err
		}
		for _, h := range slices.Sorted(maps.Keys(hosts)) {
			p, err := ml2.ServicePort(c, netID, "", ownerHAPort, id, nil)
			if err != nil {
				return err
			}
			p["name"] = "HA port tenant " + project
			if err := ml2.Rebind(c, p, h); err != nil {
				return err
			}
		}
	}
	if !isHA(r) && len(ports) > 0 {
		return dropHANetwork(c, project, id)
	}
	return nil
}

// dropHANetwork deletes the project's HA network when no HA router of the
// project but except is left.
func dropHANetwork(c *plugin.Ctx, project, except string) error {
	routers, err := c.Tx.List(Router.Kind, store.Filter{Projects: []string{project}})
	if err != nil {
		return err
	}
	for _, o := range routers {
		if isHA(o) && attr.Str(o, "id") != except {
			return nil
		}
	}
	nets, err := c.Tx.List(schema.Network.Kind, store.Filter{Projects: []string{""}})
	if err != nil {
		return err
	}
	for _, n := range nets {
		if attr.Str(n, "name") != "HA network tenant "+project {
			continue
		}
		ports, err := c.Tx.List(schema.Port.Kind, store.Filter{Parent: attr.Str(n, "id")})
		if err != nil || len(ports) > 0 {
			return err // still used (another router's port not yet gone)
		}
		return c.AsAdmin().Delete(schema.Network, attr.Str(n, "id"), -1)
	}
	return nil
}

// activeHost is the host of an HA router's active instance ("" when none
// reported active).
func (s *Service) activeHost(c *plugin.Ctx, routerID string) (string, error) {
	bound, err := s.sched.Bindings(c, routerID)
	if err != nil {
		return "", err
	}
	// The instance that became active last, of those whose agents are
	// alive (a dead agent's last word is not taken): a host cut off keeps
	// its "active" until its agent counts as dead.
	host, since := "", ""
	for _, b := range bound {
		if attr.Str(b, "ha_state") != haActive || attr.Str(b, "ha_active_at") < since {
			continue
		}
		if a, err := c.Tx.Get(agents.Agent.Kind, attr.Str(b, "agent_id")); err == nil && agents.From(c).Alive(a) {
			host, since = attr.Str(a, "host"), attr.Str(b, "ha_active_at")
		}
	}
	return host, nil
}

// serveHAStates takes an L3 agent's report of its HA router instances'
// states (PUT /neutrino/v1/hosts/{host}/ha-routers {"states": {router:
// state}}); a router reported active has its ports bound to that host.
func (s *Service) serveHAStates(req *plugin.Request) (int, any, error) {
	if !req.Caller.Admin && !req.Caller.Service {
		return 0, nil, fault.Forbidden("rule:update_ha_states is disallowed by policy")
	}
	var doc struct {
		States map[string]string `json:"states"`
	}
	if err := req.Decode(&doc); err != nil {
		return 0, nil, err
	}
	host := req.Args[0]
	_, err := req.Reg.Write(req.Context(), func(c *plugin.Ctx) error {
		for _, id := range slices.Sorted(maps.Keys(doc.States)) {
			state := doc.States[id]
			if state != haActive && state != haStandby && state != "fault" {
				return fault.BadRequest("Invalid HA state %q for router %s", state, id)
			}
			bound, err := s.sched.Bindings(c, id)
			if err != nil {
				return err
			}
			for _, b := range bound {
				a, err := c.Tx.Get(agents.Agent.Kind, attr.Str(b, "agent_id"))
				if err != nil || attr.Str(a, "host") != host || attr.Str(b, "ha_state") == state {
					continue
				}
				nb := schema.CloneObject(b)
				nb["ha_state"] = state
				if state == haActive {
					// When it became active (see activeHost).
					nb["ha_active_at"] = time.Now().UTC().Format("2006-01-02T15:04:05.000000000")
				}
				if err := c.Tx.Put(s.sched.Kind, id, nb); err != nil {
					return err
				}
				// The ports follow the active instance: to this one, or
				// away from it (two masters after a partition healed: the
				// one VRRP kept may be the one that became active first).
				if err := s.bindRouterPorts(c, id); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{}, nil
}

// hostingAgents serves /routers/{id}/l3-agents: the router's L3 agents,
// with each instance's ha_state for an HA router.
func (s *Service) hostingAgents() *plugin.Nested {
	base := s.sched.HostingAgents(Router, "get_l3-agents")
	return &plugin.Nested{List: func(c *plugin.Ctx, id string) (*schema.Resource, []plugin.Object, error) {
		res, list, err := base.List(c, id)
		if err != nil {
			return nil, nil, err
		}
		r, err := c.Tx.Get(Router.Kind, id)
		if err != nil || !isHA(r) {
			return res, list, err
		}
		bound, err := s.sched.Bindings(c, id)
		if err != nil {
			return nil, nil, err
		}
		state := map[string]string{}
		for _, b := range bound {
			state[attr.Str(b, "agent_id")] = attr.Str(b, "ha_state")
		}
		// The agents as the API sees them here: with ha_state.
		if v, _ := c.Reg.ByPath([]string{res.URLPath()}); v != nil {
			res = v
		}
		out := make([]plugin.Object, 0, len(list))
		for _, a := range list {
			cp := schema.CloneObject(a)
			switch st := state[attr.Str(a, "id")]; {
			case !agents.From(c).Alive(a):
				cp["ha_state"] = "unknown" // its agent is dead: what it last said may not hold
			case st == "":
				cp["ha_state"] = haStandby
			default:
				cp["ha_state"] = st
			}
			out = append(out, cp)
		}
		return res, out, nil
	}}
}
