package ml2

import (
	"net/http"
	"net/netip"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/hostapi"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/services/ipam"
	"neutrino/internal/services/rbac"
	"neutrino/internal/store"
)

const maxDNSNameservers, maxHostRoutes = 5, 20

func subnetVisible(c *plugin.Ctx, o plugin.Object) bool {
	// Subnets of shared networks are visible; those of external networks
	// that are not shared are not.
	n, err := c.Tx.Get(schema.Network.Kind, attr.Str(o, "network_id"))
	return err == nil && rbac.SharedWith(n, "access_as_shared", c.ProjectID)
}

// NetworkForChange loads a network the caller may attach things to: its
// own, a shared one, or any for admins. An external network that is not
// shared is visible but not attachable.
func NetworkForChange(c *plugin.Ctx, id string) (plugin.Object, error) {
	n, err := c.Tx.Get(schema.Network.Kind, id)
	if err != nil || !c.CanSee(schema.Network, n) {
		return nil, fault.NotFound("Network", "Network", id)
	}
	if !c.Owns(attr.Str(n, "project_id")) && !rbac.SharedWith(n, "access_as_shared", c.ProjectID) {
		return nil, fault.Forbidden("Tenant %s not allowed to create port on this network", c.ProjectID)
	}
	return n, nil
}

func (s *Service) createSubnet(c *plugin.Ctx, in plugin.Object) (plugin.Object, error) {
	net, err := NetworkForChange(c, attr.Str(in, "network_id"))
	if err != nil {
		return nil, err
	}
	if !c.Owns(attr.Str(net, "project_id")) {
		return nil, fault.Forbidden("(rule:create_subnet and rule:create_subnet:network_id) is disallowed by policy")
	}
	version := int(in["ip_version"].(float64))
	if version != 4 && version != 6 {
		return nil, fault.BadRequest("Invalid input for ip_version. Reason: %d is not in valid_values.", version)
	}
	ra, am := in["ipv6_ra_mode"], in["ipv6_address_mode"]
	if version == 4 {
		if ra != nil {
			return nil, fault.InvalidInput("ipv6_ra_mode is not valid when ip_version is 4")
		}
		if am != nil {
			return nil, fault.InvalidInput("ipv6_address_mode is not valid when ip_version is 4")
		}
	}
	if ra != nil && am != nil && ra != am {
		return nil, fault.InvalidInput("ipv6_ra_mode set to '%s' with ipv6_address_mode set to '%s' is not valid. If both attributes are set, they must be the same value", ra, am)
	}
	siblings, err := c.Tx.List(schema.Subnet.Kind, store.Filter{Parent: attr.Str(net, "id")})
	if err != nil {
		return nil, err
	}

	var prefix netip.Prefix
	poolID, _ := in["subnetpool_id"].(string)
	if attr.Bool(in, "use_default_subnetpool") && poolID == "" {
		p, err := ipam.DefaultSubnetPool(c, version)
		if err != nil {
			return nil, err
		}
		poolID = attr.Str(p, "id")
	}
	cidr, hasCIDR := in["cidr"].(string)
	if hasCIDR {
		p, err := netip.ParsePrefix(cidr)
		if err != nil {
			return nil, fault.InvalidInput("%s is not in a CIDR format", cidr)
		}
		prefix = p.Masked()
		if prefix.Addr().Is4() != (version == 4) {
			return nil, fault.InvalidInput("cidr '%s' does not match the ip_version '%d'", cidr, version)
		}
	}
	if poolID != "" {
		for _, s := range siblings {
			if attr.Str(s, "subnetpool_id") != poolID && int(s["ip_version"].(float64)) == version {
				return nil, fault.New(http.StatusBadRequest, "NetworkSubnetPoolAffinityError",
					"Subnets hosted on the same network must be allocated from the same subnet pool.")
			}
		}
		p, err := ipam.AllocateFromPool(c, poolID, version, prefix, in["prefixlen"])
		if err != nil {
			return nil, err
		}
		prefix = p
	} else if !hasCIDR {
		return nil, fault.New(http.StatusBadRequest, "BadRequest", "Bad subnets request: a subnetpool must be specified in the absence of a cidr.")
	}
	if version == 4 && prefix.Bits() == 32 && attr.Bool(in, "enable_dhcp") {
		return nil, fault.InvalidInput("Subnet has a prefix length that is incompatible with DHCP service enabled")
	}
	autoMode := func(m any) bool { return m == "slaac" || m == "dhcpv6-stateless" }
	if version == 6 && (autoMode(ra) || autoMode(am)) && prefix.Bits() != 64 {
		return nil, fault.InvalidInput("Invalid CIDR %s for IPv6 address mode. OpenStack uses the EUI-64 address format, which requires the prefix to be /64", prefix)
	}
	if version == 6 && !attr.Bool(in, "enable_dhcp") && (ra != nil || am != nil) {
		return nil, fault.InvalidInput("ipv6_ra_mode or ipv6_address_mode cannot be set when enable_dhcp is set to False")
	}
	for _, s := range siblings {
		if other, err := netip.ParsePrefix(attr.Str(s, "cidr")); err == nil && other.Overlaps(prefix) {
			return nil, fault.InvalidInput("Requested subnet with cidr: %s for network: %s overlaps with another subnet", prefix, attr.Str(net, "id"))
		}
	}

	var gw netip.Addr
	switch g := in["gateway_ip"].(type) {
	case string:
		gw, _ = netip.ParseAddr(g)
		if gw.Is4() != prefix.Addr().Is4() {
			return nil, fault.InvalidInput("gateway_ip %s does not match the ip_version %d", g, version)
		}
		if gw == prefix.Addr() && version == 4 || version == 4 && gw == ipam.LastAddr(prefix) && prefix.Bits() < 31 {
			return nil, fault.InvalidInput("Gateway is not valid on subnet")
		}
	case nil:
	default: // unset: the first address (IPv6: the subnet-router anycast address)
		if version == 6 {
			gw = prefix.Addr()
		} else if prefix.Bits() < 31 {
			gw = prefix.Addr().Next()
		}
	}
	var pools []ipam.Pool
	if v, ok := in["allocation_pools"]; ok && !schema.IsUnset(v) && v != nil {
		pools, err = ipam.ParsePools(v, prefix, gw)
		if err != nil {
			return nil, err
		}
	} else {
		pools = ipam.DefaultPools(prefix, gw)
	}
	if err := validateDNS(in["dns_nameservers"], version); err != nil {
		return nil, err
	}
	routes, err := validateRoutes(in["host_routes"], version)
	if err != nil {
		return nil, err
	}
	o := plugin.Object{
		"id": in["id"], "project_id": in["project_id"], "name": in["name"], "description": in["description"],
		"network_id": attr.Str(net, "id"), "ip_version": float64(version), "cidr": prefix.String(),
		"subnetpool_id": nilIfEmpty(poolID), "enable_dhcp": in["enable_dhcp"],
		"ipv6_ra_mode": ra, "ipv6_address_mode": am, "gateway_ip": nil,
		"allocation_pools": ipam.PoolsToList(pools), "host_routes": routes, "dns_nameservers": in["dns_nameservers"],
		"service_types": in["service_types"],
	}
	if gw.IsValid() {
		o["gateway_ip"] = gw.String()
	}
	c.Stamp(o)
	o["revision_number"] = float64(0)
	if err := s.commit(c, "subnet", plugin.Create, nil, o, in); err != nil {
		return nil, err
	}
	if err := c.Put(schema.Subnet, o); err != nil {
		return nil, err
	}
	net["subnets"] = append(attr.List(net, "subnets"), o["id"])
	if err := c.Touch(schema.Network, net); err != nil {
		return nil, err
	}
	if version == 6 && ipam.IsAutoAddress(o) {
		if err := addAutoAddresses(c, o); err != nil {
			return nil, err
		}
	}
	return o, nil
}

func validateDNS(v any, version int) error {
	l, _ := v.([]any)
	if len(l) > maxDNSNameservers {
		return fault.New(http.StatusBadRequest, "DNSNameServersExhausted",
			"Unable to complete operation for new subnet. The number of DNS nameservers exceeds the limit %d.", maxDNSNameservers)
	}
	return nil
}

func validateRoutes(v any, version int) ([]any, error) {
	l, _ := v.([]any)
	if len(l) > maxHostRoutes {
		return nil, fault.New(http.StatusBadRequest, "HostRoutesExhausted",
			"Unable to complete operation for new subnet. The number of host routes exceeds the limit %d.", maxHostRoutes)
	}
	out := make([]any, 0, len(l))
	seen := map[string]bool{}
	for _, e := range l {
		m, ok := e.(map[string]any)
		if !ok || len(m) != 2 {
			return nil, fault.BadRequest("Invalid input for host_routes. Reason: Invalid data format for hostroute: '%v'.", e)
		}
		d, err := netip.ParsePrefix(attr.Str(m, "destination"))
		if err != nil {
			return nil, fault.BadRequest("Invalid input for host_routes. Reason: '%s' is not a valid IP subnet.", schema.Render(m["destination"]))
		}
		nh, err := netip.ParseAddr(attr.Str(m, "nexthop"))
		if err != nil {
			return nil, fault.BadRequest("Invalid input for host_routes. Reason: '%s' is not a valid IP address.", schema.Render(m["nexthop"]))
		}
		if d.Addr().Is4() != (version == 4) || nh.Is4() != (version == 4) {
			return nil, fault.InvalidInput("Invalid route %v for subnet of IP version %d", m, version)
		}
		r := map[string]any{"destination": d.Masked().String(), "nexthop": nh.String()}
		k := schema.Render(r["destination"]) + ">" + schema.Render(r["nexthop"])
		if seen[k] {
			return nil, fault.BadRequest("Invalid input for host_routes. Reason: Duplicate hostroute '%s'.", k)
		}
		seen[k] = true
		out = append(out, r)
	}
	return out, nil
}

// addAutoAddresses gives every existing port of the network (router ports
// excepted) its EUI-64 address on a new SLAAC or stateless subnet.
func addAutoAddresses(c *plugin.Ctx, sn plugin.Object) error {
	prefix, _ := netip.ParsePrefix(attr.Str(sn, "cidr"))
	ports, err := c.Tx.List(schema.Port.Kind, store.Filter{Parent: attr.Str(sn, "network_id")})
	if err != nil {
		return err
	}
	for _, p := range ports {
		if hostapi.IsRouterPort(attr.Str(p, "device_owner")) {
			continue
		}
		ip, err := ipam.EUI64(prefix, attr.Str(p, "mac_address"))
		if err != nil {
			continue
		}
		if err := ipam.Allocate(c, sn, ip, attr.Str(p, "id")); err != nil {
			return err
		}
		p = schema.CloneObject(p)
		p["fixed_ips"] = append(attr.List(p, "fixed_ips"), map[string]any{"subnet_id": sn["id"], "ip_address": ip.String()})
		if err := c.Touch(schema.Port, p); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) updateSubnet(c *plugin.Ctx, cur, in plugin.Object) (plugin.Object, error) {
	prefix, _ := netip.ParsePrefix(attr.Str(cur, "cidr"))
	version := int(cur["ip_version"].(float64))
	gw, _ := netip.ParseAddr(attr.Str(cur, "gateway_ip"))
	if v, ok := in["gateway_ip"]; ok {
		gw = netip.Addr{}
		if s, ok := v.(string); ok {
			gw, _ = netip.ParseAddr(s)
			if gw.Is4() != prefix.Addr().Is4() {
				return nil, fault.InvalidInput("gateway_ip %s does not match the ip_version %d", s, version)
			}
		}
	}
	pools := ipam.Ranges(cur)
	if v, ok := in["allocation_pools"]; ok {
		p, err := ipam.ParsePools(v, prefix, gw)
		if err != nil {
			return nil, err
		}
		pools = p
		in["allocation_pools"] = ipam.PoolsToList(pools)
	} else if gw.IsValid() {
		for _, pl := range pools {
			if pl.Contains(gw) {
				return nil, fault.New(http.StatusConflict, "GatewayConflictWithAllocationPools",
					"Gateway ip %s conflicts with allocation pool %s.", gw, pl)
			}
		}
	}
	if _, ok := in["gateway_ip"]; ok {
		if gw.IsValid() {
			in["gateway_ip"] = gw.String()
		} else {
			in["gateway_ip"] = nil
		}
	}
	if v, ok := in["dns_nameservers"]; ok {
		if err := validateDNS(v, version); err != nil {
			return nil, err
		}
	}
	if v, ok := in["host_routes"]; ok {
		r, err := validateRoutes(v, version)
		if err != nil {
			return nil, err
		}
		in["host_routes"] = r
	}
	if v, ok := in["enable_dhcp"].(bool); ok && !v && version == 6 && (cur["ipv6_ra_mode"] != nil || cur["ipv6_address_mode"] != nil) {
		return nil, fault.InvalidInput("Cannot disable enable_dhcp with ipv6 attributes set")
	}
	old := schema.CloneObject(cur)
	merged := attr.Merge(cur, in)
	return merged, s.commit(c, "subnet", plugin.Update, old, merged, in)
}

func (s *Service) deleteSubnet(c *plugin.Ctx, cur plugin.Object) error {
	id := attr.Str(cur, "id")
	rows, err := c.Tx.SubnetPorts(id)
	if err != nil {
		return err
	}
	for _, pid := range rows {
		p, err := c.Tx.Get(schema.Port.Kind, pid)
		if err != nil {
			continue
		}
		owner := attr.Str(p, "device_owner")
		// DHCP ports and addresses given automatically (SLAAC) go with the subnet.
		if owner != ownerDHCP && !(ipam.IsAutoAddress(cur) && !hostapi.IsRouterPort(owner)) {
			return fault.New(http.StatusConflict, "SubnetInUse",
				"Unable to complete operation on subnet %s: One or more ports have an IP allocation from this subnet.", id)
		}
	}
	for _, pid := range rows {
		p, err := c.Tx.Get(schema.Port.Kind, pid)
		if err != nil {
			continue
		}
		var keep []any
		for _, e := range attr.List(p, "fixed_ips") {
			if m, _ := e.(map[string]any); attr.Str(m, "subnet_id") != id {
				keep = append(keep, e)
			}
		}
		p["fixed_ips"] = attr.OrEmpty(keep)
		if err := c.Touch(schema.Port, p); err != nil {
			return err
		}
	}
	if err := c.Tx.ReleaseSubnetIPs(id); err != nil {
		return err
	}
	if err := s.commit(c, "subnet", plugin.Delete, cur, nil, nil); err != nil {
		return err
	}
	if err := c.Tx.Delete(schema.Subnet.Kind, id); err != nil {
		return err
	}
	if n, err := c.Tx.Get(schema.Network.Kind, attr.Str(cur, "network_id")); err == nil {
		var keep []any
		for _, s := range attr.List(n, "subnets") {
			if s != id {
				keep = append(keep, s)
			}
		}
		n["subnets"] = attr.OrEmpty(keep)
		return c.Touch(schema.Network, n)
	}
	return nil
}
