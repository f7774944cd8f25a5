// Package l3 is the router service plugin (router, ext-gw-mode,
// extraroute, l3_agent_scheduler, fip-port-details and friends): routers
// with a gateway on an external network and interfaces on tenant
// subnets, floating IPs mapped onto ports behind them, the scheduling of
// routers to L3 agents, and the routers part of an L3 host's span.
package l3

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
	"neutrino/internal/services/agents"
	"neutrino/internal/store"
)

// The L3 API's resources.
var (
	Router = schema.Define("router", "routers", "", true,
		schema.Sorted(schema.RW("admin_state_up", schema.Bool, true)),
		schema.Sorted(schema.RO("status")),
		schema.NoFilter(schema.RW("external_gateway_info", schema.DictOrNull, nil)),
		schema.NoFilter(&schema.Attr{Name: "routes", Put: true, Convert: schema.NullAsEmpty(schema.ListOf(schema.Dict))}),
		// Not filters (Neutron: "['ha'] is invalid attribute for filtering").
		schema.NoFilter(schema.Sorted(schema.AdminOnly(schema.Computed("distributed", true, schema.Bool)))),
		schema.NoFilter(schema.Sorted(schema.AdminOnly(schema.Computed("ha", true, schema.Bool)))),
	)

	FloatingIP = schema.DefineUnnamed("floatingip", "floatingips", "floating_network_id",
		schema.Sorted(schema.Req("floating_network_id", schema.UUID)),
		schema.Sorted(schema.Computed("floating_ip_address", false, schema.IP)),
		schema.Hidden(schema.Post("subnet_id", schema.UUIDOrNull, nil)),
		schema.Sorted(schema.RW("port_id", schema.UUIDOrNull, nil)),
		schema.Sorted(schema.RW("fixed_ip_address", schema.IPOrNull, nil)),
		schema.Sorted(schema.RO("router_id")),
		schema.Sorted(schema.RO("status")),
		schema.NoFilter(schema.RO("port_details")),
	)
)

func init() {
	Router.NotFound = func(id string) error {
		return fault.New(http.StatusNotFound, "RouterNotFound", "Router %s could not be found", id)
	}
	FloatingIP.NotFound = func(id string) error {
		return fault.New(http.StatusNotFound, "FloatingIPNotFound", "Floating IP %s could not be found", id)
	}
}

// Service is the router service plugin.
type Service struct {
	cfg   Config
	sched *agents.Scheduler
}

// New returns the router service plugin.
func New(cfg Config) *Service { return &Service{cfg: cfg} }

// Name implements plugin.Service: "router", as in Neutron's service_plugins.
func (s *Service) Name() string { return "router" }

// Register implements plugin.Service.
func (s *Service) Register(r *plugin.Registry) error {
	ag, ok := plugin.Find[*agents.Service](r)
	if !ok {
		return fault.New(http.StatusInternalServerError, "", "the router service needs the agents service before it")
	}
	s.sched = ag.Scheduler("l3_binding", hostapi.L3AgentType, "router_id")
	s.sched.Moved = s.routerMoved
	s.sched.Accepts = accepts
	if r.DB != nil {
		r.DB.IndexAttr(FloatingIP.Kind, "port_id") // a port's floating IPs
	}
	r.Extension(extensions...)
	if err := r.Resource(&plugin.Handler{Res: Router, Create: s.createRouter, Update: s.updateRouter, Delete: s.deleteRouter,
		Quota: "router", Actions: map[string]plugin.Action{
			"add_router_interface":    s.interfaceAction(true),
			"remove_router_interface": s.interfaceAction(false),
			"add_extraroutes":         s.routesAction(true),
			"remove_extraroutes":      s.routesAction(false),
		}}); err != nil {
		return err
	}
	if err := r.Resource(&plugin.Handler{Res: FloatingIP, Create: createFloatingIP, Update: updateFloatingIP,
		Delete: deleteFloatingIP, Quota: "floatingip", Present: presentFIP}); err != nil {
		return err
	}
	r.Nest(agents.Agent, "l3-routers", s.l3RoutersNest())
	r.Nest(Router, "l3-agents", s.hostingAgents())
	r.ExtendResource(agents.Agent, schema.RO("ha_state"))
	r.Route(&plugin.Route{Method: "PUT", Path: "hosts/{}/ha-routers", Internal: true, Serve: s.serveHAStates})
	r.Subscribe(schema.Port.Kind, plugin.Create, plugin.Before, func(c *plugin.Ctx, p *plugin.Payload) error {
		return checkDeviceOwned(c, p.Request)
	})
	r.Subscribe(schema.Port.Kind, plugin.Update, plugin.Before, func(c *plugin.Ctx, p *plugin.Payload) error {
		merged := schema.CloneObject(p.Old)
		for k, v := range p.Request {
			merged[k] = v
		}
		return checkDeviceOwned(c, merged)
	})
	r.Subscribe(schema.Port.Kind, plugin.Update, plugin.After, portAddressesChanged)
	r.Subscribe(schema.Port.Kind, plugin.Update, plugin.After, func(c *plugin.Ctx, p *plugin.Payload) error {
		if attr.Str(p.Old, "binding:host_id") == attr.Str(p.New, "binding:host_id") || !servedByDVR(p.New) {
			return nil
		}
		return fipGatewaysOfPort(c, attr.Str(p.New, "id")) // a VM moved: its floating IPs' host with it
	})
	r.Subscribe(schema.Port.Kind, plugin.Delete, plugin.Before, portDeleted)
	r.Subscribe(schema.Network.Kind, plugin.Delete, plugin.Before, networkDeleted)
	// A floating IP's dvr host has its port on the external network.
	for _, ev := range []plugin.Op{plugin.Create, plugin.Update, plugin.Delete} {
		r.Subscribe(FloatingIP.Kind, ev, plugin.After, func(c *plugin.Ctx, p *plugin.Payload) error {
			o := p.New
			if o == nil {
				o = p.Old
			}
			return syncFIPGateways(c, attr.Str(o, "floating_network_id"))
		})
	}
	r.Subscribe(agents.Agent.Kind, plugin.Report, plugin.After, func(c *plugin.Ctx, p *plugin.Payload) error {
		if attr.Str(p.New, "agent_type") != hostapi.L3AgentType {
			return nil
		}
		if distributedMode(agentMode(p.New)) {
			if err := ensureDVRMAC(c, attr.Str(p.New, "host")); err != nil {
				return err
			}
		}
		return s.autoSchedule(c)
	})
	r.HostSpan(s.hostPart)
	return nil
}

var extensions = []plugin.Extension{
	{Alias: "router", Name: "Neutron L3 Router", Description: "Router abstraction for basic L3 forwarding between L2 Neutron networks and access to external networks via a NAT gateway.", Updated: "2012-07-20T10:00:00-00:00"},
	{Alias: "ext-gw-mode", Name: "Neutron L3 Configurable external gateway mode", Description: "Extension of the router abstraction for specifying whether SNAT should occur on the external gateway", Updated: "2013-03-28T10:00:00-00:00"},
	{Alias: "extraroute", Name: "Neutron Extra Route", Description: "Extra routes configuration for L3 router", Updated: "2013-02-01T10:00:00-00:00"},
	{Alias: "extraroute-atomic", Name: "Atomically add/remove extra routes", Description: "Edit extra routes of a router on server side by atomically adding/removing extra routes", Updated: "2019-07-10T10:00:00-00:00"},
	{Alias: "fip-port-details", Name: "Floating IP Port Details Extension", Description: "Add port_details attribute to Floating IP resource", Updated: "2018-04-09T10:00:00-00:00"},
	{Alias: "l3_agent_scheduler", Name: "L3 Agent Scheduler", Description: "Schedule routers among l3 agents", Updated: "2013-02-07T10:00:00-00:00"},
	{Alias: "l3-ha", Name: "HA Router extension", Description: "Adds HA capability to routers.", Updated: "2014-04-26T00:00:00-00:00"},
	{Alias: "dvr", Name: "Distributed Virtual Router", Description: "Enables configuration of Distributed Virtual Routers.", Updated: "2014-06-1T10:00:00-00:00"},
}

// From returns the router service of c's server.
func From(c *plugin.Ctx) *Service {
	s, _ := plugin.Find[*Service](c.Reg)
	return s
}

func (s *Service) interfaceAction(add bool) plugin.Action {
	return func(c *plugin.Ctx, id string, body map[string]any) (any, error) {
		var ri *RouterInterface
		var err error
		if add {
			ri, err = s.addRouterInterface(c, id, body)
		} else {
			ri, err = s.removeRouterInterface(c, id, body)
		}
		if err != nil {
			return nil, err
		}
		return ri.Render(), nil
	}
}

func (s *Service) routesAction(add bool) plugin.Action {
	return func(c *plugin.Ctx, id string, body map[string]any) (any, error) {
		o, err := s.extraRoutes(c, id, body, add)
		if err != nil {
			return nil, err
		}
		return map[string]any{"router": Router.Render(c.Caller, c.Present(Router, o), nil)}, nil
	}
}

// checkDeviceOwned refuses, for non-admins, a port that claims to belong
// to a router or floating IP of another project (Neutron's
// DeviceIDNotOwnedByTenant): such a port would be plugged into that
// router.
func checkDeviceOwned(c *plugin.Ctx, p plugin.Object) error {
	owner, device := attr.Str(p, "device_owner"), attr.Str(p, "device_id")
	if c.Admin || device == "" {
		return nil
	}
	var kind string
	switch {
	case hostapi.IsRouterInterface(owner) || owner == ownerRouterGateway:
		kind = Router.Kind
	case owner == ownerFloatingIP:
		kind = FloatingIP.Kind
	default:
		return nil
	}
	if o, err := c.Tx.Get(kind, device); err == nil && c.Owns(attr.Str(o, "project_id")) {
		return nil
	}
	return fault.New(http.StatusConflict, "DeviceIDNotOwnedByTenant",
		"The following device_id %s is not owned by your tenant or matches another tenants router.", device)
}

// portDeleted refuses the direct delete of a router's or floating IP's
// port, and unmaps the floating IPs of any other port that goes.
func portDeleted(c *plugin.Ctx, p *plugin.Payload) error {
	switch owner := attr.Str(p.Old, "device_owner"); {
	case hostapi.IsRouterInterface(owner), owner == ownerRouterGateway, owner == ownerFloatingIP, owner == ownerCSNAT:
		return fault.New(http.StatusConflict, "L3PortInUse",
			"Port %s has owner %s and therefore cannot be deleted directly via the port API.", attr.Str(p.Old, "id"), owner)
	}
	return disassociatePort(c, attr.Str(p.Old, "id"))
}

// portAddressesChanged lets a floating IP go when the fixed IP it maps
// leaves its port.
func portAddressesChanged(c *plugin.Ctx, p *plugin.Payload) error {
	still := map[string]bool{}
	for _, e := range attr.List(p.New, "fixed_ips") {
		m, _ := e.(map[string]any)
		still[attr.Str(m, "ip_address")] = true
	}
	for _, e := range attr.List(p.Old, "fixed_ips") {
		m, _ := e.(map[string]any)
		if ip := attr.Str(m, "ip_address"); !still[ip] {
			if err := disassociateAddress(c, attr.Str(p.Old, "id"), ip); err != nil {
				return err
			}
		}
	}
	return nil
}

// networkDeleted removes the floating IPs of an external network going
// away (one that a router's gateway still uses keeps the network in use).
func networkDeleted(c *plugin.Ctx, p *plugin.Payload) error {
	id := attr.Str(p.Old, "id")
	fips, err := c.Tx.List(FloatingIP.Kind, store.Filter{Parent: id})
	if err != nil {
		return err
	}
	for _, f := range fips {
		if err := deleteFloatingIP(c, f); err != nil {
			return err
		}
	}
	return syncFIPGateways(c, id) // the dvr hosts' ports there go with them
}

// presentFIP adds fip-port-details' view of the mapped port.
func presentFIP(c *plugin.Ctx, o plugin.Object) plugin.Object {
	cp := make(plugin.Object, len(o)+1)
	for k, v := range o {
		cp[k] = v
	}
	cp["port_details"] = fipPortDetails(c, o)
	return cp
}

// hostPart is the L3 part of a span: the routers scheduled to the host's
// L3 agent (their ports are among the span's, bound here), the
// distributed routers of its VMs' networks, and their floating IPs.
func (s *Service) hostPart(c *plugin.Ctx, host string, span *hostapi.Span, _ plugin.SpanOptions) error {
	mine, err := s.sched.HostObjects(c, host)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, p := range span.Ports {
		have[attr.Str(p, "id")] = true
	}
	routers := map[string]plugin.Object{}
	for id := range mine {
		r, err := c.Tx.Get(Router.Kind, id)
		if err != nil {
			continue
		}
		routers[id] = r
		if !isHA(r) {
			continue
		}
		// Every instance of an HA router has its ports (bound to the
		// active instance's host) wired, to take over at once.
		ports, err := centralPorts(c, r)
		if err != nil {
			return err
		}
		for _, p := range ports {
			if !have[attr.Str(p, "id")] {
				span.Ports = append(span.Ports, p)
				have[attr.Str(p, "id")] = true
			}
		}
	}
	if len(mine) > 0 {
		// The floating IPs of the routers hosted here, but those a dvr
		// host serves.
		fips, err := c.Tx.List(FloatingIP.Kind, store.Filter{})
		if err != nil {
			return err
		}
		modes := map[string]string{}
		for _, f := range fips {
			if !mine[attr.Str(f, "router_id")] {
				continue
			}
			if h, err := fipHost(c, f, modes); err != nil || h != "" {
				if err != nil {
					return err
				}
				continue
			}
			span.FloatingIPs = append(span.FloatingIPs, f)
		}
	}
	if err := s.dvrHostPart(c, host, span, have, routers); err != nil {
		return err
	}
	for _, id := range slices.Sorted(maps.Keys(routers)) {
		span.Routers = append(span.Routers, routers[id])
	}
	sort.Slice(span.FloatingIPs, func(i, j int) bool {
		return attr.Str(span.FloatingIPs[i], "id") < attr.Str(span.FloatingIPs[j], "id")
	})
	return nil
}
