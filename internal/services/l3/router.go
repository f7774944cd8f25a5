package l3

import (
	"maps"
	"net/http"
	"net/netip"
	"slices"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/hostapi"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/services/ml2"
	"neutrino/internal/store"
)

// Routers (the L3 API): a router owns its gateway port on an external
// network and one interface port per attached network; the ports are
// ordinary ports with device_owner network:router_gateway or
// network:router_interface and device_id the router, so the agents and
// IPAM see them like any other.

const (
	ownerRouterInterface = hostapi.OwnerRouterInterface
	ownerDVRInterface    = hostapi.OwnerRouterInterfaceDistributed
	ownerHAInterface     = hostapi.OwnerRouterInterfaceHA
	ownerRouterGateway   = hostapi.OwnerRouterGateway
	ownerFloatingIP      = hostapi.OwnerFloatingIP
	// maxRoutes is Neutron's max_routes default.
	maxRoutes = 30
)

func badRouter(format string, args ...any) error {
	return fault.BadRequest("Bad router request: "+format, args...)
}

func routerInUse(id, reason string) error {
	return fault.New(http.StatusConflict, "RouterInUse", "Router %s %s", id, reason)
}

func (s *Service) createRouter(c *plugin.Ctx, in plugin.Object) (plugin.Object, error) {
	o := plugin.Object{"id": in["id"], "project_id": in["project_id"], "name": in["name"], "description": in["description"],
		"admin_state_up": in["admin_state_up"], "status": "ACTIVE", "external_gateway_info": nil, "routes": []any{},
		"distributed": false, "ha": s.cfg.HA}
	for _, k := range []string{"distributed", "ha"} {
		if b, ok := in[k].(bool); ok {
			o[k] = b
		}
	}
	if isHA(o) {
		if err := allocateVRID(c, o); err != nil {
			return nil, err
		}
		// As Neutron, the project's HA network is there from its first
		// HA router on, agents or not.
		if _, _, err := haNetwork(c, attr.Str(o, "project_id")); err != nil {
			return nil, err
		}
	}
	c.Stamp(o)
	if gw, ok := in["external_gateway_info"].(map[string]any); ok && len(gw) > 0 {
		info, err := setGateway(c, o, nil, gw)
		if err != nil {
			return nil, err
		}
		o["external_gateway_info"] = info
	}
	if err := c.Put(Router, o); err != nil {
		return nil, err
	}
	if err := s.scheduleRouter(c, attr.Str(o, "id")); err != nil {
		return nil, err
	}
	return o, nil
}

func (s *Service) updateRouter(c *plugin.Ctx, cur, in plugin.Object) (plugin.Object, error) {
	for _, k := range []string{"distributed", "ha"} {
		v, ok := in[k]
		if !ok || schema.IsUnset(v) {
			delete(in, k)
			continue
		}
		if v != cur[k] && attr.Bool(cur, "admin_state_up") && (in["admin_state_up"] == nil || in["admin_state_up"] == true) {
			// Neutron's words (a BadRequest of its router's).
			msg := "Bad router request: Cannot change HA attribute of active routers. Please set router admin_state_up to False prior to upgrade."
			if k == "distributed" {
				msg = "Bad router request: Cannot change the 'distributed' attribute of active routers. Please set router admin_state_up to False prior to upgrade."
			}
			return nil, fault.New(http.StatusBadRequest, "BadRequest", "%s", msg)
		}
	}
	if v, ok := in["external_gateway_info"]; ok {
		gw, _ := v.(map[string]any)
		info, err := setGateway(c, cur, infoOf(cur), gw)
		if err != nil {
			return nil, err
		}
		in["external_gateway_info"] = info
	}
	if v, ok := in["routes"]; ok {
		routes, err := checkRoutes(c, cur, v)
		if err != nil {
			return nil, err
		}
		in["routes"] = routes
	}
	merged := attr.Merge(cur, in)
	if isHA(merged) {
		if err := allocateVRID(c, merged); err != nil {
			return nil, err
		}
	} else {
		delete(merged, "ha_vr_id")
	}
	// Stored now (again by the update after): scheduling reads it.
	if err := c.Put(Router, merged); err != nil {
		return nil, err
	}
	if err := s.scheduleRouterObj(c, merged); err != nil {
		return nil, err
	}
	return merged, nil
}

func infoOf(r plugin.Object) map[string]any {
	m, _ := r["external_gateway_info"].(map[string]any)
	return m
}

func (s *Service) deleteRouter(c *plugin.Ctx, cur plugin.Object) error {
	id := attr.Str(cur, "id")
	ports, err := routerPorts(c, id)
	if err != nil {
		return err
	}
	for _, p := range ports {
		if isInterface(p) {
			return routerInUse(id, "still has ports")
		}
	}
	if _, err := setGateway(c, cur, infoOf(cur), nil); err != nil {
		return err
	}
	gone := schema.CloneObject(cur)
	gone["ha"], gone["external_gateway_info"] = false, nil
	if err := syncCSNAT(c, gone); err != nil {
		return err
	}
	if err := s.syncHA(c, gone); err != nil { // its HA ports, and the HA network with the last
		return err
	}
	if err := s.sched.UnbindAll(c, id); err != nil {
		return err
	}
	return c.Tx.Delete(Router.Kind, id)
}

// interfaceOwner is the device owner of a router's interfaces, by its
// kind (Neutron's).
func interfaceOwner(r plugin.Object) string {
	switch {
	case isDVR(r):
		return ownerDVRInterface
	case isHA(r):
		return ownerHAInterface
	}
	return ownerRouterInterface
}

// interfaceOwners are the device owners of every kind of interface.
var interfaceOwners = []string{ownerRouterInterface, ownerDVRInterface, ownerHAInterface}

func isInterface(p plugin.Object) bool { return hostapi.IsRouterInterface(attr.Str(p, "device_owner")) }

// syncInterfaceOwners gives a router's interfaces the device owner of its
// kind (after a migration).
func syncInterfaceOwners(c *plugin.Ctx, r plugin.Object) error {
	ports, err := routerPorts(c, attr.Str(r, "id"))
	if err != nil {
		return err
	}
	for _, p := range ports {
		if isInterface(p) && attr.Str(p, "device_owner") != interfaceOwner(r) {
			p["device_owner"] = interfaceOwner(r)
			if err := c.Touch(schema.Port, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// routerPorts lists the ports a router owns.
func routerPorts(c *plugin.Ctx, routerID string) ([]plugin.Object, error) {
	ports, err := c.Tx.List(schema.Port.Kind, store.Filter{Attr: "device_id", Values: []string{routerID}})
	var out []plugin.Object
	for _, p := range ports {
		if isInterface(p) || attr.Str(p, "device_owner") == ownerRouterGateway {
			out = append(out, p)
		}
	}
	return out, err
}

// setGateway makes the router's gateway what gw asks (nil or empty: none)
// and returns the new external_gateway_info.
func setGateway(c *plugin.Ctx, router plugin.Object, cur, gw map[string]any) (any, error) {
	id := attr.Str(router, "id")
	for k := range gw {
		switch k {
		case "network_id", "enable_snat", "external_fixed_ips":
		default:
			return nil, fault.BadRequest("Invalid input for external_gateway_info. Reason: Unexpected keys supplied: %s.", k)
		}
	}
	netID, _ := gw["network_id"].(string)
	if len(gw) > 0 && netID == "" {
		return nil, fault.BadRequest("Invalid input for external_gateway_info. Reason: Validation of dictionary's keys failed. Expected keys: {'network_id'} Provided keys: set().")
	}
	if _, ok := gw["enable_snat"]; ok && !c.Admin {
		return nil, fault.Forbidden("(rule:update_router and rule:update_router:external_gateway_info and rule:update_router:external_gateway_info:enable_snat) is disallowed by policy")
	}
	if _, ok := gw["external_fixed_ips"]; ok && !c.Admin {
		return nil, fault.Forbidden("(rule:update_router and rule:update_router:external_gateway_info and rule:update_router:external_gateway_info:external_fixed_ips) is disallowed by policy")
	}
	var gwPort plugin.Object
	ports, err := routerPorts(c, id)
	if err != nil {
		return nil, err
	}
	for _, p := range ports {
		if attr.Str(p, "device_owner") == ownerRouterGateway {
			gwPort = p
		}
	}
	// Removing or moving the gateway: not while floating IPs use it.
	if gwPort != nil && (netID == "" || netID != attr.Str(gwPort, "network_id")) {
		fips, err := c.Tx.List(FloatingIP.Kind, store.Filter{})
		if err != nil {
			return nil, err
		}
		for _, f := range fips {
			if attr.Str(f, "router_id") == id {
				return nil, fault.New(http.StatusConflict, "RouterExternalGatewayInUseByFloatingIp",
					"Gateway cannot be updated for router %s, since a gateway to external network %s is required by one or more floating IPs.", id, attr.Str(gwPort, "network_id"))
			}
		}
		if err := ml2.RemovePort(c, gwPort); err != nil {
			return nil, err
		}
		gwPort = nil
	}
	if netID == "" {
		return nil, nil
	}
	if !schema.IsUUID(netID) {
		return nil, fault.BadRequest("Invalid input for external_gateway_info. Reason: '%s' is not a valid UUID.", netID)
	}
	net, err := c.Get(schema.Network, netID) // one the caller may see
	if err != nil {
		return nil, err
	}
	if !attr.Bool(net, "router:external") {
		return nil, badRouter("Network %s is not an external network", netID)
	}
	snat := true
	if cur != nil {
		if b, ok := cur["enable_snat"].(bool); ok {
			snat = b
		}
	}
	if v, ok := gw["enable_snat"]; ok {
		b, isBool := v.(bool)
		if !isBool {
			return nil, fault.BadRequest("Invalid input for external_gateway_info. Reason: '%s' is not a valid boolean value.", schema.Render(v))
		}
		snat = b
	}
	reqIPs, ipsGiven := gw["external_fixed_ips"].([]any)
	if v, ok := gw["external_fixed_ips"]; ok && !ipsGiven && v != nil {
		return nil, fault.BadRequest("Invalid input for external_fixed_ips. Reason: Invalid data format for fixed IP: '%s'.", schema.Render(v))
	}
	if gwPort == nil {
		var fixed []any
		if ipsGiven && len(reqIPs) > 0 {
			fixed = reqIPs
		}
		p, err := ml2.ServicePort(c, netID, "", ownerRouterGateway, id, fixed)
		if err != nil {
			return nil, err
		}
		gwPort = p
	} else if ipsGiven {
		ac := c.AsAdmin()
		p, err := ac.Update(schema.Port, attr.Str(gwPort, "id"), plugin.Object{"fixed_ips": reqIPs}, -1)
		if err != nil {
			return nil, err
		}
		gwPort = p
	}
	ext := []any{}
	for _, e := range attr.List(gwPort, "fixed_ips") {
		m, _ := e.(map[string]any)
		ext = append(ext, map[string]any{"subnet_id": m["subnet_id"], "ip_address": m["ip_address"]})
	}
	return map[string]any{"network_id": netID, "enable_snat": snat, "external_fixed_ips": ext}, nil
}

// RouterInterface is the answer to add/remove_router_interface.
type RouterInterface struct {
	Router plugin.Object
	Port   plugin.Object
	Subnet string
	All    []string
}

// Render is Neutron's shape of the answer.
func (ri *RouterInterface) Render() map[string]any {
	ids := make([]any, 0, len(ri.All))
	for _, s := range ri.All {
		ids = append(ids, s)
	}
	return map[string]any{"id": ri.Router["id"], "tenant_id": ri.Router["project_id"], "project_id": ri.Router["project_id"],
		"port_id": ri.Port["id"], "network_id": ri.Port["network_id"], "subnet_id": ri.Subnet, "subnet_ids": ids}
}

func portSubnets(p plugin.Object) []string {
	var out []string
	for _, e := range attr.List(p, "fixed_ips") {
		m, _ := e.(map[string]any)
		out = append(out, attr.Str(m, "subnet_id"))
	}
	return out
}

// routerSubnets maps each subnet the router has an interface on to the
// interface port.
func routerSubnets(c *plugin.Ctx, routerID string) (map[string]plugin.Object, error) {
	return routerPortSubnets(c, routerID, false)
}

// routerPortSubnets is routerSubnets, with the gateway's subnets too when
// withGateway (next hops and overlaps count those, as in Neutron).
func routerPortSubnets(c *plugin.Ctx, routerID string, withGateway bool) (map[string]plugin.Object, error) {
	ports, err := routerPorts(c, routerID)
	if err != nil {
		return nil, err
	}
	out := map[string]plugin.Object{}
	for _, p := range ports {
		if !isInterface(p) && !(withGateway && attr.Str(p, "device_owner") == ownerRouterGateway) {
			continue
		}
		for _, sid := range portSubnets(p) {
			out[sid] = p
		}
	}
	return out, nil
}

// checkOverlap refuses a subnet whose CIDR overlaps one the router already
// routes.
func checkOverlap(c *plugin.Ctx, routerID string, sn plugin.Object) error {
	have, err := routerPortSubnets(c, routerID, true)
	if err != nil {
		return err
	}
	if _, ok := have[attr.Str(sn, "id")]; ok {
		return badRouter("Router already has a port on subnet %s", attr.Str(sn, "id"))
	}
	newP, err := netip.ParsePrefix(attr.Str(sn, "cidr"))
	if err != nil {
		return err
	}
	ids := slices.Sorted(maps.Keys(have))
	for _, id := range ids {
		other, err := c.Tx.Get(schema.Subnet.Kind, id)
		if err != nil {
			continue
		}
		p, err := netip.ParsePrefix(attr.Str(other, "cidr"))
		if err == nil && p.Overlaps(newP) {
			return badRouter("Cidr %s of subnet %s overlaps with cidr %s of subnet %s", attr.Str(sn, "cidr"), attr.Str(sn, "id"), attr.Str(other, "cidr"), id)
		}
	}
	return nil
}

// loadOwnRouter is the router id for a change by the caller.
func loadOwnRouter(c *plugin.Ctx, id string) (plugin.Object, error) {
	r, err := c.Get(Router, id)
	if err != nil {
		return nil, err
	}
	if err := c.OwnerOnly(Router, r, "update"); err != nil {
		return nil, err
	}
	return schema.CloneObject(r), nil
}

// AddRouterInterface attaches a subnet (a new port at its gateway address)
// or an existing port to a router.
func (s *Service) addRouterInterface(c *plugin.Ctx, routerID string, body map[string]any) (*RouterInterface, error) {
	router, subnetID, portID, err := interfaceRequest(c, routerID, body)
	if err != nil {
		return nil, err
	}
	if subnetID != "" && portID != "" {
		return nil, badRouter("Cannot specify both subnet-id and port-id")
	}
	var port plugin.Object
	var subnet string
	if portID != "" {
		p, err := c.Get(schema.Port, portID)
		if err != nil {
			return nil, err
		}
		if err := c.OwnerOnly(schema.Port, p, "update"); err != nil {
			return nil, err
		}
		if attr.Str(p, "device_id") != "" || attr.Str(p, "device_owner") != "" {
			return nil, fault.New(http.StatusConflict, "PortInUse",
				"Unable to complete operation on port %s for network %s. Port already has an attached device %s.", portID, attr.Str(p, "network_id"), attr.Str(p, "device_id"))
		}
		subs := portSubnets(p)
		if len(subs) == 0 {
			return nil, badRouter("Router port must have at least one fixed IP")
		}
		v4 := 0
		for _, sid := range subs {
			sn, err := c.Tx.Get(schema.Subnet.Kind, sid)
			if err != nil {
				return nil, err
			}
			if attr.Num(sn["ip_version"], 0) == 4 {
				v4++
			}
			if err := checkOverlap(c, routerID, sn); err != nil {
				return nil, err
			}
		}
		if v4 > 1 {
			return nil, badRouter("Cannot have multiple IPv4 subnets on router port")
		}
		p = schema.CloneObject(p)
		p["device_id"], p["device_owner"] = routerID, interfaceOwner(router)
		p["security_groups"] = []any{}
		if err := c.Touch(schema.Port, p); err != nil {
			return nil, err
		}
		port, subnet = p, subs[0]
	} else {
		sn, err := c.Get(schema.Subnet, subnetID)
		if err != nil {
			return nil, err
		}
		// Only the subnet's owner may put a router at its gateway address:
		// on a network shared with everyone, another project's router must
		// not answer for everyone's gateway.
		if !c.Owns(attr.Str(sn, "project_id")) {
			return nil, fault.Forbidden("(rule:add_router_interface) is disallowed by policy: subnet %s is not owned by project %s", subnetID, c.ProjectID)
		}
		if sn["gateway_ip"] == nil {
			return nil, badRouter("Subnet for router interface must have a gateway IP")
		}
		if err := checkOverlap(c, routerID, sn); err != nil {
			return nil, err
		}
		fixed := map[string]any{"subnet_id": subnetID, "ip_address": sn["gateway_ip"]}
		// IPv6 subnets of one network share the router's port there.
		if attr.Num(sn["ip_version"], 0) == 6 {
			have, err := routerSubnets(c, routerID)
			if err != nil {
				return nil, err
			}
			for sid, p := range have {
				other, err := c.Tx.Get(schema.Subnet.Kind, sid)
				if err == nil && attr.Str(p, "network_id") == attr.Str(sn, "network_id") && attr.Num(other["ip_version"], 0) == 6 && port == nil {
					port = p
				}
			}
		}
		if port != nil {
			ips := append(append([]any{}, attr.List(port, "fixed_ips")...), fixed)
			ac := c.AsAdmin()
			p, err := ac.Update(schema.Port, attr.Str(port, "id"), plugin.Object{"fixed_ips": ips}, -1)
			if err != nil {
				return nil, err
			}
			port = p
		} else {
			p, err := ml2.ServicePort(c, attr.Str(sn, "network_id"), attr.Str(router, "project_id"), interfaceOwner(router), routerID, []any{fixed})
			if err != nil {
				return nil, err
			}
			port = p
		}
		subnet = subnetID
	}
	if err := s.scheduleRouter(c, routerID); err != nil {
		return nil, err
	}
	if p, err := c.Tx.Get(schema.Port.Kind, attr.Str(port, "id")); err == nil {
		port = p
	}
	if err := c.Touch(Router, router); err != nil {
		return nil, err
	}
	return &RouterInterface{Router: router, Port: port, Subnet: subnet, All: portSubnets(port)}, nil
}

// interfaceRequest is the caller's router and the subnet or port an
// add/remove_router_interface body names.
func interfaceRequest(c *plugin.Ctx, routerID string, body map[string]any) (router plugin.Object, subnetID, portID string, err error) {
	if router, err = loadOwnRouter(c, routerID); err != nil {
		return nil, "", "", err
	}
	subnetID, portID, err = interfaceArgs(body)
	return router, subnetID, portID, err
}

func interfaceArgs(body map[string]any) (subnetID, portID string, err error) {
	for k := range body {
		if k != "subnet_id" && k != "port_id" {
			return "", "", badRouter("Unrecognized attribute(s) '%s'", k)
		}
	}
	subnetID, _ = body["subnet_id"].(string)
	portID, _ = body["port_id"].(string)
	for k, v := range map[string]string{"subnet_id": subnetID, "port_id": portID} {
		if v != "" && !schema.IsUUID(v) {
			return "", "", fault.BadRequest("Invalid input for %s. Reason: '%s' is not a valid UUID.", k, v)
		}
	}
	if subnetID == "" && portID == "" {
		return "", "", badRouter("Either subnet_id or port_id must be specified")
	}
	return subnetID, portID, nil
}

// RemoveRouterInterface detaches a subnet or port from a router.
func (s *Service) removeRouterInterface(c *plugin.Ctx, routerID string, body map[string]any) (*RouterInterface, error) {
	router, subnetID, portID, err := interfaceRequest(c, routerID, body)
	if err != nil {
		return nil, err
	}
	have, err := routerSubnets(c, routerID)
	if err != nil {
		return nil, err
	}
	var port plugin.Object
	var subs []string
	if portID != "" {
		for _, p := range have {
			if attr.Str(p, "id") == portID {
				port = p
			}
		}
		if port == nil {
			return nil, fault.New(http.StatusNotFound, "RouterInterfaceNotFound", "Router %s does not have an interface with id %s", routerID, portID)
		}
		subs = portSubnets(port)
		if subnetID != "" {
			found := false
			for _, s := range subs {
				found = found || s == subnetID
			}
			if !found {
				return nil, fault.New(http.StatusConflict, "SubnetMismatchForPort", "Subnet on port %s does not match the requested subnet %s.", portID, subnetID)
			}
		}
	} else {
		port = have[subnetID]
		if port == nil {
			return nil, fault.New(http.StatusNotFound, "RouterInterfaceNotFoundForSubnet", "Router %s has no interface on subnet %s", routerID, subnetID)
		}
		subs = []string{subnetID}
	}
	for _, sid := range subs {
		if err := interfaceFree(c, router, sid); err != nil {
			return nil, err
		}
	}
	all := portSubnets(port)
	if len(subs) < len(all) {
		// One IPv6 subnet of a shared port goes; the port stays.
		var keep []any
		for _, e := range attr.List(port, "fixed_ips") {
			if m, _ := e.(map[string]any); attr.Str(m, "subnet_id") != subnetID {
				keep = append(keep, e)
			}
		}
		if _, err := c.AsAdmin().Update(schema.Port, attr.Str(port, "id"), plugin.Object{"fixed_ips": keep}, -1); err != nil {
			return nil, err
		}
	} else if err := ml2.RemovePort(c, port); err != nil {
		return nil, err
	}
	if err := syncCSNAT(c, router); err != nil {
		return nil, err
	}
	if err := c.Touch(Router, router); err != nil {
		return nil, err
	}
	subnet := subnetID
	if subnet == "" && len(subs) > 0 {
		subnet = subs[0]
	}
	return &RouterInterface{Router: router, Port: port, Subnet: subnet, All: all}, nil
}

// interfaceFree refuses to detach a subnet that floating IPs or routes
// need.
func interfaceFree(c *plugin.Ctx, router plugin.Object, subnetID string) error {
	id := attr.Str(router, "id")
	sn, err := c.Tx.Get(schema.Subnet.Kind, subnetID)
	if err != nil {
		return nil
	}
	prefix, err := netip.ParsePrefix(attr.Str(sn, "cidr"))
	if err != nil {
		return nil
	}
	fips, err := c.Tx.List(FloatingIP.Kind, store.Filter{})
	if err != nil {
		return err
	}
	for _, f := range fips {
		if a, err := netip.ParseAddr(attr.Str(f, "fixed_ip_address")); err == nil && attr.Str(f, "router_id") == id && prefix.Contains(a) {
			return fault.New(http.StatusConflict, "RouterInterfaceInUseByFloatingIP",
				"Router interface for subnet %s on router %s cannot be deleted, as it is required by one or more floating IPs.", subnetID, id)
		}
	}
	for _, r := range attr.List(router, "routes") {
		m, _ := r.(map[string]any)
		if a, err := netip.ParseAddr(attr.Str(m, "nexthop")); err == nil && prefix.Contains(a) {
			return fault.New(http.StatusConflict, "RouterInterfaceInUseByRoute",
				"Router interface for subnet %s on router %s cannot be deleted, as it is required by one or more routes.", subnetID, id)
		}
	}
	return nil
}

// checkRoutes validates a router's routes: each destination a CIDR, each
// next hop an address on one of its interface subnets (not its own).
func checkRoutes(c *plugin.Ctx, router plugin.Object, v any) ([]any, error) {
	l, ok := v.([]any)
	if v == nil {
		return []any{}, nil
	}
	if !ok {
		return nil, fault.BadRequest("Invalid input for routes. Reason: Invalid data format for hostroute: '%s'.", schema.Render(v))
	}
	id := attr.Str(router, "id")
	if len(l) > maxRoutes {
		return nil, fault.BadRequest("Unable to complete operation for %s. The number of routes exceeds the maximum %d.", id, maxRoutes)
	}
	have, err := routerPortSubnets(c, id, true)
	if err != nil {
		return nil, err
	}
	var prefixes []netip.Prefix
	own := map[netip.Addr]bool{}
	for sid, p := range have {
		if sn, err := c.Tx.Get(schema.Subnet.Kind, sid); err == nil {
			if pf, err := netip.ParsePrefix(attr.Str(sn, "cidr")); err == nil {
				prefixes = append(prefixes, pf)
			}
		}
		for _, e := range attr.List(p, "fixed_ips") {
			m, _ := e.(map[string]any)
			if a, err := netip.ParseAddr(attr.Str(m, "ip_address")); err == nil {
				own[a] = true
			}
		}
	}
	out := make([]any, 0, len(l))
	seen := map[string]bool{}
	for _, e := range l {
		m, ok := e.(map[string]any)
		if !ok || len(m) != 2 {
			return nil, fault.BadRequest("Invalid input for routes. Reason: Invalid data format for hostroute: '%s'.", schema.Render(e))
		}
		dst, err1 := netip.ParsePrefix(attr.Str(m, "destination"))
		hop, err2 := netip.ParseAddr(attr.Str(m, "nexthop"))
		if err1 != nil || err2 != nil {
			return nil, fault.BadRequest("Invalid input for routes. Reason: Invalid data format for hostroute: '%s'.", schema.Render(e))
		}
		if dst.Masked() != dst {
			return nil, fault.BadRequest("Invalid input for routes. Reason: '%s' isn't a recognized IP subnet cidr, '%s' is recommended.", dst, dst.Masked())
		}
		if dst.Addr().Is4() != hop.Is4() {
			return nil, fault.New(http.StatusBadRequest, "InvalidRoutes", "Invalid format for routes: %s, the nexthop and destination are of different IP versions", schema.Render(l))
		}
		if own[hop] {
			return nil, fault.New(http.StatusBadRequest, "InvalidRoutes", "Invalid format for routes: %s, the nexthop is used by router", schema.Render(l))
		}
		connected := false
		for _, p := range prefixes {
			connected = connected || p.Contains(hop)
		}
		if !connected {
			return nil, fault.New(http.StatusBadRequest, "InvalidRoutes", "Invalid format for routes: %s, the nexthop is not connected with router", schema.Render(l))
		}
		key := dst.String() + " " + hop.String()
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, map[string]any{"destination": dst.String(), "nexthop": hop.String()})
	}
	return out, nil
}

// ExtraRoutes adds (add=true) or removes routes atomically, as
// extraroute-atomic's add_extraroutes and remove_extraroutes do.
func (s *Service) extraRoutes(c *plugin.Ctx, routerID string, body map[string]any, add bool) (plugin.Object, error) {
	router, err := loadOwnRouter(c, routerID)
	if err != nil {
		return nil, err
	}
	r, _ := body["router"].(map[string]any)
	routes, ok := r["routes"].([]any)
	if r == nil || !ok || len(r) != 1 {
		return nil, fault.BadRequest("Invalid input: a body {\"router\": {\"routes\": [...]}} is required")
	}
	given, err := checkRoutes(c, router, routes)
	if err != nil && add {
		return nil, err
	}
	key := func(m map[string]any) string { return attr.Str(m, "destination") + " " + attr.Str(m, "nexthop") }
	drop := map[string]bool{}
	if !add {
		for _, e := range routes {
			if m, ok := e.(map[string]any); ok {
				if d, err := netip.ParsePrefix(attr.Str(m, "destination")); err == nil {
					m = map[string]any{"destination": d.String(), "nexthop": attr.Str(m, "nexthop")}
				}
				drop[key(m)] = true
			}
		}
	}
	var next []any
	seen := map[string]bool{}
	for _, e := range attr.List(router, "routes") {
		m, _ := e.(map[string]any)
		if !drop[key(m)] {
			next = append(next, m)
			seen[key(m)] = true
		}
	}
	if add {
		for _, e := range given {
			if m := e.(map[string]any); !seen[key(m)] {
				next = append(next, m)
			}
		}
	}
	checked, err := checkRoutes(c, router, attr.OrEmpty(next))
	if err != nil {
		return nil, err
	}
	router["routes"] = checked
	if err := c.Touch(Router, router); err != nil {
		return nil, err
	}
	return router, nil
}
