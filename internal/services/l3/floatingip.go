package l3

import (
	"net/http"
	"net/netip"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/hostapi"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/services/ml2"
	"neutrino/internal/store"
)

// Floating IPs: an address on an external network (held by a port with
// device_owner network:floatingip) mapped one to one onto a fixed IP of a
// port behind a router whose gateway is on that network.

func badFIP(format string, args ...any) error {
	return fault.BadRequest("Bad floatingip request: "+format, args...)
}

func createFloatingIP(c *plugin.Ctx, in plugin.Object) (plugin.Object, error) {
	netID := attr.Str(in, "floating_network_id")
	net, err := c.Get(schema.Network, netID) // one the caller may see
	if err != nil {
		return nil, err
	}
	if !attr.Bool(net, "router:external") {
		return nil, badFIP("Network %s is not a valid external network.", netID)
	}
	if a, ok := in["floating_ip_address"].(string); ok && !schema.IsUnset(in["floating_ip_address"]) && a != "" && !c.Admin {
		return nil, fault.Forbidden("(rule:create_floatingip and rule:create_floatingip:floating_ip_address) is disallowed by policy")
	}
	if in["fixed_ip_address"] != nil && !schema.IsUnset(in["fixed_ip_address"]) && attr.Str(in, "port_id") == "" {
		return nil, badFIP("fixed_ip_address cannot be specified without a port_id")
	}
	id := attr.Str(in, "id")
	// The address: the one asked for, or one from the subnet asked for, or
	// one from the network's first IPv4 subnet.
	subnets, err := c.Tx.List(schema.Subnet.Kind, store.Filter{Parent: netID})
	if err != nil {
		return nil, err
	}
	fixed := map[string]any{}
	if a, ok := in["floating_ip_address"].(string); ok && a != "" {
		fixed["ip_address"] = a
	}
	if sid, ok := in["subnet_id"].(string); ok && sid != "" {
		fixed["subnet_id"] = sid
		found := false
		for _, sn := range subnets {
			if attr.Str(sn, "id") == sid {
				found = true
				if attr.Num(sn["ip_version"], 0) != 4 {
					return nil, badFIP("Subnet %s is not an IPv4 subnet.", sid)
				}
			}
		}
		if !found {
			return nil, badFIP("Subnet %s is not on external network %s.", sid, netID)
		}
	}
	if len(fixed) == 0 {
		for _, sn := range subnets {
			if attr.Num(sn["ip_version"], 0) == 4 {
				fixed["subnet_id"] = attr.Str(sn, "id")
				break
			}
		}
		if len(fixed) == 0 {
			return nil, badFIP("Network %s does not contain any IPv4 subnet", netID)
		}
	}
	port, err := ml2.ServicePort(c, netID, "", ownerFloatingIP, id, []any{fixed})
	if err != nil {
		return nil, err
	}
	var addr string
	for _, e := range attr.List(port, "fixed_ips") {
		m, _ := e.(map[string]any)
		if a, err := netip.ParseAddr(attr.Str(m, "ip_address")); err == nil && a.Is4() {
			addr = a.String()
		}
	}
	if addr == "" {
		return nil, badFIP("The floating IP address must be IPv4.")
	}
	o := plugin.Object{"id": id, "project_id": in["project_id"], "description": in["description"], "floating_network_id": netID,
		"floating_ip_address": addr, "port_id": nil, "fixed_ip_address": nil, "router_id": nil, "status": "DOWN"}
	c.Stamp(o)
	if pid, ok := in["port_id"].(string); ok && pid != "" {
		if err := associate(c, o, pid, in["fixed_ip_address"]); err != nil {
			return nil, err
		}
	}
	if err := c.Put(FloatingIP, o); err != nil {
		return nil, err
	}
	return o, nil
}

func updateFloatingIP(c *plugin.Ctx, cur, in plugin.Object) (plugin.Object, error) {
	if d, ok := in["description"]; ok {
		cur["description"] = d
	}
	pv, portGiven := in["port_id"]
	if !portGiven {
		if v, ok := in["fixed_ip_address"]; ok {
			pid := attr.Str(cur, "port_id")
			if pid == "" && v != nil {
				return nil, badFIP("fixed_ip_address cannot be specified without a port_id")
			}
			if pid != "" {
				if err := associate(c, cur, pid, v); err != nil {
					return nil, err
				}
			}
		}
		return cur, nil
	}
	pid, _ := pv.(string)
	if pid == "" {
		cur["port_id"], cur["fixed_ip_address"], cur["router_id"] = nil, nil, nil
		cur["status"] = "DOWN"
		return cur, nil
	}
	if err := associate(c, cur, pid, in["fixed_ip_address"]); err != nil {
		return nil, err
	}
	return cur, nil
}

func deleteFloatingIP(c *plugin.Ctx, cur plugin.Object) error {
	id := attr.Str(cur, "id")
	ports, err := c.Tx.List(schema.Port.Kind, store.Filter{Parent: attr.Str(cur, "floating_network_id")})
	if err != nil {
		return err
	}
	for _, p := range ports {
		if attr.Str(p, "device_owner") == ownerFloatingIP && attr.Str(p, "device_id") == id {
			if err := ml2.RemovePort(c, p); err != nil {
				return err
			}
		}
	}
	return c.Tx.Delete(FloatingIP.Kind, id)
}

// associate points fip at a fixed IP of port portID, through the router
// that joins that address's subnet to the floating network.
func associate(c *plugin.Ctx, fip plugin.Object, portID string, fixedIP any) error {
	port, err := c.Get(schema.Port, portID)
	if err != nil {
		return err
	}
	if !c.Admin && attr.Str(port, "project_id") != attr.Str(fip, "project_id") {
		return badFIP("Cannot create floating IP and bind it to Port %s, since that port is owned by a different tenant.", portID)
	}
	if owner := attr.Str(port, "device_owner"); owner == ownerRouterGateway || hostapi.IsRouterInterface(owner) || owner == ownerFloatingIP {
		return badFIP("Port %s has owner %s and cannot be associated with a floating IP.", portID, attr.Str(port, "device_owner"))
	}
	var v4 []map[string]any
	for _, e := range attr.List(port, "fixed_ips") {
		m, _ := e.(map[string]any)
		if a, err := netip.ParseAddr(attr.Str(m, "ip_address")); err == nil && a.Is4() {
			v4 = append(v4, m)
		}
	}
	var chosen map[string]any
	if want, ok := fixedIP.(string); ok && want != "" {
		for _, m := range v4 {
			if attr.Str(m, "ip_address") == want {
				chosen = m
			}
		}
		if chosen == nil {
			return badFIP("Port %s does not have fixed ip %s", portID, want)
		}
	} else {
		switch len(v4) {
		case 0:
			return badFIP("Port %s does not have any IPv4 address", portID)
		case 1:
			chosen = v4[0]
		default:
			return badFIP("Port %s has multiple fixed IPv4 addresses.  Must provide a specific IPv4 address when assigning a floating IP", portID)
		}
	}
	ip, subnetID, netID := attr.Str(chosen, "ip_address"), attr.Str(chosen, "subnet_id"), attr.Str(fip, "floating_network_id")
	// Already mapped by another floating IP on this external network?
	fips, err := c.Tx.List(FloatingIP.Kind, store.Filter{})
	if err != nil {
		return err
	}
	for _, f := range fips {
		if attr.Str(f, "id") != attr.Str(fip, "id") && attr.Str(f, "port_id") == portID && attr.Str(f, "fixed_ip_address") == ip && attr.Str(f, "floating_network_id") == netID {
			return fault.New(http.StatusConflict, "FloatingIPPortAlreadyAssociated",
				"Cannot associate floating IP %s (%s) with port %s using fixed IP %s, as that fixed IP already has a floating IP on external network %s.",
				attr.Str(fip, "floating_ip_address"), attr.Str(fip, "id"), portID, ip, netID)
		}
	}
	routerID, err := routerFor(c, subnetID, netID)
	if err != nil {
		return err
	}
	if routerID == "" {
		return fault.New(http.StatusNotFound, "ExternalGatewayForFloatingIPNotFound",
			"External network %s is not reachable from subnet %s.  Therefore, cannot associate Port %s with a Floating IP.", netID, subnetID, portID)
	}
	fip["port_id"], fip["fixed_ip_address"], fip["router_id"] = portID, ip, routerID
	return nil
}

// routerFor finds a router with an interface on subnet and its gateway on
// the external network.
func routerFor(c *plugin.Ctx, subnetID, extNetID string) (string, error) {
	ports, err := c.Tx.List(schema.Port.Kind, store.Filter{Attr: "device_owner", Values: append([]string{ownerRouterGateway}, interfaceOwners...)})
	if err != nil {
		return "", err
	}
	candidates := map[string]bool{}
	for _, p := range ports {
		if !isInterface(p) {
			continue
		}
		for _, sid := range portSubnets(p) {
			if sid == subnetID {
				candidates[attr.Str(p, "device_id")] = true
			}
		}
	}
	for _, p := range ports {
		if attr.Str(p, "device_owner") == ownerRouterGateway && attr.Str(p, "network_id") == extNetID && candidates[attr.Str(p, "device_id")] {
			return attr.Str(p, "device_id"), nil
		}
	}
	return "", nil
}

// disassociatePort unmaps the floating IPs of a port being deleted.
func disassociatePort(c *plugin.Ctx, portID string) error { return disassociateAddress(c, portID, "") }

// disassociateAddress unmaps the floating IPs of a port's fixed IP (any,
// when ip is empty).
func disassociateAddress(c *plugin.Ctx, portID, ip string) error {
	fips, err := c.Tx.List(FloatingIP.Kind, store.Filter{})
	if err != nil {
		return err
	}
	for _, f := range fips {
		if attr.Str(f, "port_id") == portID && (ip == "" || attr.Str(f, "fixed_ip_address") == ip) {
			f["port_id"], f["fixed_ip_address"], f["router_id"], f["status"] = nil, nil, nil, "DOWN"
			if err := c.Touch(FloatingIP, f); err != nil {
				return err
			}
		}
	}
	return nil
}

// fipPortDetails is fip-port-details' view of the mapped port.
func fipPortDetails(c *plugin.Ctx, o plugin.Object) any {
	pid := attr.Str(o, "port_id")
	if pid == "" {
		return nil
	}
	p, err := c.Tx.Get(schema.Port.Kind, pid)
	if err != nil {
		return nil
	}
	return map[string]any{"name": p["name"], "network_id": p["network_id"], "mac_address": p["mac_address"],
		"admin_state_up": p["admin_state_up"], "status": p["status"], "device_id": p["device_id"], "device_owner": p["device_owner"]}
}
