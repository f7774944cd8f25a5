package ml2

import (
	"crypto/rand"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/hostapi"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/services/ipam"
	"neutrino/internal/store"
)

const maxAddressPairs = 10

// portVisible: the owner of a port's network sees (and may delete) the
// ports other projects put on it, as Neutron's network_owner rule allows.
func portVisible(c *plugin.Ctx, o plugin.Object) bool {
	n, err := c.Tx.Get(schema.Network.Kind, attr.Str(o, "network_id"))
	return err == nil && attr.Str(n, "project_id") == c.ProjectID
}

// listPorts is what a non-admin sees: its own ports and every port on its
// own networks, read by index rather than by scanning all projects.
func listPorts(c *plugin.Ctx, f store.Filter) ([]plugin.Object, error) {
	mine := f
	if len(f.Projects) > 0 {
		ok := false
		for _, p := range f.Projects {
			ok = ok || p == c.ProjectID
		}
		if !ok {
			mine.IDs = []string{"\x00none"}
		}
	}
	mine.Projects = []string{c.ProjectID}
	own, err := c.Tx.List(schema.Port.Kind, mine)
	if err != nil {
		return nil, err
	}
	nets, err := c.Tx.List(schema.Network.Kind, store.Filter{Projects: []string{c.ProjectID}})
	if err != nil || len(nets) == 0 {
		return own, err
	}
	onMine := f
	onMine.Parent, onMine.Parents = "", nil
	allowed := map[string]bool{}
	for _, p := range append(f.Parents, f.Parent) {
		if p != "" {
			allowed[p] = true
		}
	}
	for _, n := range nets {
		if len(allowed) == 0 || allowed[attr.Str(n, "id")] {
			onMine.Parents = append(onMine.Parents, attr.Str(n, "id"))
		}
	}
	if len(onMine.Parents) == 0 {
		return own, nil
	}
	theirs, err := c.Tx.List(schema.Port.Kind, onMine)
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(own))
	out := append([]plugin.Object{}, own...)
	for _, o := range own {
		seen[attr.Str(o, "id")] = true
	}
	for _, o := range theirs {
		if !seen[attr.Str(o, "id")] {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool { return attr.Str(out[i], "id") < attr.Str(out[j], "id") })
	return out, nil
}

// trustedOwner ports (network:*) get no default security group and
// network owners' privileges, as in Neutron.
func trustedOwner(owner string) bool { return strings.HasPrefix(owner, "network:") }

func (s *Service) createPort(c *plugin.Ctx, in plugin.Object) (plugin.Object, error) {
	net, err := NetworkForChange(c, attr.Str(in, "network_id"))
	if err != nil {
		return nil, err
	}
	netOwner := c.Owns(attr.Str(net, "project_id"))
	if err := networkOwnerAttrs(c, in, netOwner, "create"); err != nil {
		return nil, err
	}
	id := attr.Str(in, "id")
	o := plugin.Object{
		"id": id, "project_id": in["project_id"], "name": in["name"], "description": in["description"],
		"network_id": attr.Str(net, "id"), "admin_state_up": in["admin_state_up"], "status": "DOWN",
		"device_id": in["device_id"], "device_owner": in["device_owner"],
		"binding:host_id": in["binding:host_id"], "binding:vnic_type": in["binding:vnic_type"],
		"binding:profile": in["binding:profile"], "ip_allocation": "immediate",
	}
	// MAC address.
	if mac, ok := in["mac_address"].(string); ok {
		if !netOwner {
			return nil, fault.Forbidden("(rule:create_port and rule:create_port:mac_address) is disallowed by policy")
		}
		o["mac_address"] = mac
	} else {
		o["mac_address"] = s.randomMAC()
	}
	mac, err := reserveMAC(c, attr.Str(net, "id"), attr.Str(o, "mac_address"), id, !hasMAC(in))
	if err != nil {
		return nil, err
	}
	o["mac_address"] = mac
	// Addresses.
	var req []any
	if v, ok := in["fixed_ips"].([]any); ok {
		req = v
	}
	ips, err := allocatePortIPs(c, net, o, req, in["fixed_ips"] != nil && !schema.IsUnset(in["fixed_ips"]), nil)
	if err != nil {
		return nil, err
	}
	o["fixed_ips"] = ips
	// Port security, groups, pairs.
	ps, ok := in["port_security_enabled"].(bool)
	if !ok {
		ps = attr.Bool(net, "port_security_enabled")
	}
	o["port_security_enabled"] = ps
	// The security-group extension fills in security_groups (Precommit).
	o["security_groups"] = []any{}
	pairs, err := parsePairs(in["allowed_address_pairs"], attr.Str(o, "mac_address"))
	if err != nil {
		return nil, err
	}
	if len(pairs) > 0 && !ps {
		return nil, addressPairNeedsSecurity()
	}
	o["allowed_address_pairs"] = pairs
	opts, err := mergeDHCPOpts(nil, in["extra_dhcp_opts"])
	if err != nil {
		return nil, err
	}
	o["extra_dhcp_opts"] = opts
	if err := Bind(c, o, net); err != nil {
		return nil, err
	}
	c.Stamp(o)
	if err := s.commit(c, "port", plugin.Create, nil, o, in); err != nil {
		return nil, err
	}
	if err := c.Put(schema.Port, o); err != nil {
		return nil, err
	}
	return o, nil
}

// PortSecurityRequired is the 400 for security groups on a port without
// port security.
func PortSecurityRequired() error {
	return fault.New(http.StatusBadRequest, "PortSecurityAndIPRequiredForSecurityGroups",
		"Port security must be enabled and port must have an IP address in order to use security groups.")
}

func addressPairNeedsSecurity() error {
	return fault.New(http.StatusConflict, "AddressPairAndPortSecurityRequired",
		"Port Security must be enabled in order to have allowed address pairs on a port.")
}

// randomMAC makes a MAC under the configured base prefix.
func (s *Service) randomMAC() string {
	base, _ := net.ParseMAC(s.cfg.BaseMAC)
	b := make([]byte, 6)
	rand.Read(b)
	copy(b, base[:3])
	return net.HardwareAddr(b).String()
}

// reserveMAC records mac as used on network and returns the MAC reserved:
// a generated MAC that collides is replaced, a requested one is a conflict.
func reserveMAC(c *plugin.Ctx, networkID, mac, portID string, generated bool) (string, error) {
	for try := 0; ; try++ {
		ok, err := c.Tx.ClaimMAC(networkID, mac, portID)
		if err != nil || ok {
			return mac, err
		}
		if !generated || try > 16 {
			return "", fault.Conflict("MacAddressInUse", "Unable to complete operation for network %s. The mac address %s is in use.", networkID, mac)
		}
		mac = From(c).randomMAC()
	}
}

// allocatePortIPs turns a fixed_ips request into allocations. keep are the
// port's current addresses (on update) that remain allocated if requested.
func allocatePortIPs(c *plugin.Ctx, net, port plugin.Object, req []any, given bool, keep map[string]string) ([]any, error) {
	subnets, err := c.Tx.List(schema.Subnet.Kind, store.Filter{Parent: attr.Str(net, "id")})
	if err != nil {
		return nil, err
	}
	byID := map[string]plugin.Object{}
	for _, s := range subnets {
		byID[attr.Str(s, "id")] = s
	}
	portID, netID := attr.Str(port, "id"), attr.Str(net, "id")
	router := hostapi.IsRouterPort(attr.Str(port, "device_owner"))
	var out []any
	usedSubnet := map[string]bool{}
	add := func(sn plugin.Object, ip netip.Addr) {
		out = append(out, map[string]any{"subnet_id": attr.Str(sn, "id"), "ip_address": ip.String()})
		usedSubnet[attr.Str(sn, "id")] = true
	}
	exhausted := func() error {
		return fault.Conflict("IpAddressGenerationFailure", "No more IP addresses available on network %s.", netID)
	}
	// take allocates ip on sn to the port (unless the port keeps it
	// already) and adds it to the port's addresses.
	take := func(sn plugin.Object, ip netip.Addr) error {
		if keep[attr.Str(sn, "id")+"/"+ip.String()] == "" {
			if err := ipam.Allocate(c, sn, ip, portID); err != nil {
				return err
			}
		}
		add(sn, ip)
		return nil
	}
	// takeEUI64 takes the address a SLAAC or stateless subnet derives from
	// the port's MAC.
	takeEUI64 := func(sn plugin.Object) error {
		prefix, _ := netip.ParsePrefix(attr.Str(sn, "cidr"))
		a, err := ipam.EUI64(prefix, attr.Str(port, "mac_address"))
		if err != nil {
			return err
		}
		return take(sn, a)
	}
	// On update, an entry naming only a subnet keeps the address the port
	// already has there (Neutron does not renumber it).
	kept := map[string][]netip.Addr{}
	for k := range keep {
		sid, ip, _ := strings.Cut(k, "/")
		if a, err := netip.ParseAddr(ip); err == nil {
			kept[sid] = append(kept[sid], a)
		}
	}
	claimed := map[string]bool{}
	for _, e := range req {
		if m, _ := e.(map[string]any); m != nil {
			if ip, ok := m["ip_address"].(string); ok {
				claimed[ip] = true
			}
		}
	}
	reuse := func(sid string) (netip.Addr, bool) {
		for _, a := range kept[sid] {
			if !claimed[a.String()] {
				claimed[a.String()] = true
				return a, true
			}
		}
		return netip.Addr{}, false
	}
	if given {
		if len(req) > From(c).cfg.MaxFixedIPsPerPort {
			return nil, fault.BadRequest("Exceeded maximum amount of fixed ips per port.")
		}
		for _, e := range req {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, fault.BadRequest("Invalid input for fixed_ips. Reason: Invalid data format for fixed IP: '%v'.", e)
			}
			for k := range m {
				if k != "subnet_id" && k != "ip_address" {
					return nil, fault.BadRequest("Invalid input for fixed_ips. Reason: Unrecognized attribute(s) '%s'", k)
				}
			}
			var ip netip.Addr
			if v, ok := m["ip_address"]; ok {
				s, _ := v.(string)
				a, err := netip.ParseAddr(s)
				if err != nil {
					return nil, fault.BadRequest("Invalid input for fixed_ips. Reason: '%s' is not a valid IP address.", schema.Render(v))
				}
				ip = a.Unmap()
			}
			var sn plugin.Object
			if v, ok := m["subnet_id"]; ok {
				sid, _ := v.(string)
				if !schema.IsUUID(sid) {
					return nil, fault.BadRequest("Invalid input for fixed_ips. Reason: '%s' is not a valid UUID.", schema.Render(v))
				}
				sn = byID[sid]
				if sn == nil {
					if _, err := c.Tx.Get(schema.Subnet.Kind, sid); err == nil {
						return nil, fault.InvalidInput("Failed to create port on network %s, because fixed_ips included invalid subnet %s", netID, sid)
					}
					return nil, fault.NotFound("Subnet", "Subnet", sid)
				}
			} else if ip.IsValid() {
				for _, s := range subnets {
					if p, err := netip.ParsePrefix(attr.Str(s, "cidr")); err == nil && p.Contains(ip) {
						sn = s
						break
					}
				}
				if sn == nil {
					return nil, fault.New(http.StatusBadRequest, "InvalidIpForNetwork", "IP address %s is not a valid IP for any of the subnets on the specified network.", ip)
				}
			} else {
				return nil, fault.BadRequest("Invalid input for fixed_ips. Reason: Invalid data format for fixed IP: '%v'.", e)
			}
			prefix, _ := netip.ParsePrefix(attr.Str(sn, "cidr"))
			if ip.IsValid() {
				if !prefix.Contains(ip) || (prefix.Addr().Is4() && prefix.Bits() < 31 && (ip == prefix.Addr() || ip == ipam.LastAddr(prefix))) {
					return nil, fault.New(http.StatusBadRequest, "InvalidIpForSubnet", "IP address %s is not a valid IP for the specified subnet.", ip)
				}
				if ipam.IsAutoAddress(sn) && !router {
					return nil, fault.New(http.StatusBadRequest, "AllocationOnAutoAddressSubnet",
						"IPv6 address %s cannot be directly assigned to a port on subnet %s as the subnet is configured for automatic addresses", ip, attr.Str(sn, "id"))
				}
				if err := take(sn, ip); err != nil {
					return nil, err
				}
				continue
			}
			if ipam.IsAutoAddress(sn) && !router {
				if err := takeEUI64(sn); err != nil {
					return nil, err
				}
				continue
			}
			if a, ok := reuse(attr.Str(sn, "id")); ok {
				add(sn, a)
				continue
			}
			a, ok, err := ipam.AllocateNext(c, sn, portID)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, exhausted()
			}
			add(sn, a)
		}
	} else {
		// One address from the first IPv4 subnet with room, one from the
		// first stateful IPv6 subnet with room.
		for _, version := range []float64{4, 6} {
			tried, got := false, false
			for _, sn := range subnets {
				if sn["ip_version"] != version || ipam.IsAutoAddress(sn) || got {
					continue
				}
				tried = true
				a, ok, err := ipam.AllocateNext(c, sn, portID)
				if err != nil {
					return nil, err
				}
				if ok {
					add(sn, a)
					got = true
				}
			}
			if tried && !got {
				return nil, exhausted()
			}
		}
	}
	// Every SLAAC/stateless subnet gives its EUI-64 address automatically.
	if !router {
		for _, sn := range subnets {
			if !ipam.IsAutoAddress(sn) || usedSubnet[attr.Str(sn, "id")] {
				continue
			}
			if err := takeEUI64(sn); err != nil {
				return nil, err
			}
		}
	}
	if out == nil {
		out = []any{}
	}
	return out, nil
}

func parsePairs(v any, portMAC string) ([]any, error) {
	l, _ := v.([]any)
	if len(l) > maxAddressPairs {
		return nil, fault.New(http.StatusBadRequest, "AllowedAddressPairExhausted",
			"The number of allowed address pair exceeds the maximum %d.", maxAddressPairs)
	}
	out := make([]any, 0, len(l))
	seen := map[string]bool{}
	for _, e := range l {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, fault.BadRequest("Invalid input for allowed_address_pairs. Reason: Allowed address pairs must be a list of dictionaries.")
		}
		for k := range m {
			if k != "ip_address" && k != "mac_address" {
				return nil, fault.BadRequest("Unrecognized attribute(s) '%s'", k)
			}
		}
		ipv, ok := m["ip_address"]
		if !ok || ipv == nil {
			return nil, fault.New(http.StatusBadRequest, "AllowedAddressPairsMissingIP", "AllowedAddressPair must contain ip_address")
		}
		ip, err := schema.CIDRLoose("ip_address", ipv)
		if err != nil {
			return nil, fault.BadRequest("Invalid input for allowed_address_pairs. Reason: '%s' is not a valid IP address.", schema.Render(ipv))
		}
		ipStr := schema.Render(ipv)
		if p, err := netip.ParsePrefix(ip.(string)); err == nil && p.IsSingleIP() {
			ipStr = p.Addr().String()
		} else {
			ipStr = ip.(string)
		}
		macReq := "None"
		mac := portMAC
		if mv, ok := m["mac_address"]; ok && mv != nil {
			cm, err := schema.MAC("mac_address", mv)
			if err != nil {
				return nil, fault.BadRequest("Invalid input for allowed_address_pairs. Reason: '%s' is not a valid MAC address.", schema.Render(mv))
			}
			mac = cm.(string)
			macReq = mac
		}
		k := macReq + "/" + ipStr
		if seen[k] {
			return nil, fault.InvalidInput("Request contains duplicate address pair: mac_address %s ip_address %s", macReq, ipStr)
		}
		seen[k] = true
		out = append(out, map[string]any{"ip_address": ipStr, "mac_address": mac})
	}
	return out, nil
}

// mergeDHCPOpts applies requested extra_dhcp_opts to cur: an option is keyed
// by name and IP version, and a null opt_value removes it.
func mergeDHCPOpts(cur []any, v any) ([]any, error) {
	l, _ := v.([]any)
	type key struct {
		name string
		ver  float64
	}
	var order []key
	vals := map[key]any{}
	for _, e := range cur {
		m, _ := e.(map[string]any)
		k := key{attr.Str(m, "opt_name"), attr.Num(m["ip_version"], 4)}
		order = append(order, k)
		vals[k] = m["opt_value"]
	}
	for _, e := range l {
		m, ok := e.(map[string]any)
		bad := func() error {
			return fault.InvalidInput("No valid key specs matched for: %v", pyDict(m))
		}
		if !ok {
			return nil, fault.InvalidInput("No valid key specs matched for: %v", e)
		}
		for k := range m {
			if k != "opt_name" && k != "opt_value" && k != "ip_version" {
				return nil, bad()
			}
		}
		name, ok := m["opt_name"].(string)
		if !ok || name == "" {
			return nil, bad()
		}
		ver := 4.0
		if iv, ok := m["ip_version"]; ok {
			n, err := schema.Int("ip_version", iv)
			if err != nil || (n.(float64) != 4 && n.(float64) != 6) {
				return nil, bad()
			}
			ver = n.(float64)
		}
		val, hasVal := m["opt_value"]
		if !hasVal {
			return nil, bad()
		}
		k := key{name, ver}
		if val == nil {
			if _, exists := vals[k]; exists {
				delete(vals, k)
			}
			continue
		}
		sv, ok := val.(string)
		if !ok {
			sv = schema.Render(val)
		}
		if _, exists := vals[k]; !exists {
			order = append(order, k)
		}
		vals[k] = sv
	}
	out := []any{}
	for _, k := range order {
		v, ok := vals[k]
		if !ok {
			continue
		}
		delete(vals, k)
		out = append(out, map[string]any{"opt_name": k.name, "opt_value": v, "ip_version": k.ver})
	}
	return out, nil
}

// pyDict renders a request dict the way Neutron's messages print it.
func pyDict(m map[string]any) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		v := m[k]
		vs := schema.Render(v)
		if _, ok := v.(string); ok {
			vs = "'" + vs + "'"
		}
		parts = append(parts, "'"+k+"': "+vs)
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func (s *Service) updatePort(c *plugin.Ctx, cur, in plugin.Object) (plugin.Object, error) {
	net, err := c.Tx.Get(schema.Network.Kind, attr.Str(cur, "network_id"))
	if err != nil {
		return nil, err
	}
	id := attr.Str(cur, "id")
	if err := networkOwnerAttrs(c, in, c.Owns(attr.Str(net, "project_id")), "update"); err != nil {
		return nil, err
	}
	macChanged := false
	if mac, ok := in["mac_address"].(string); ok && mac != attr.Str(cur, "mac_address") {
		if !c.Admin {
			return nil, fault.Forbidden("(rule:update_port and rule:update_port:mac_address) is disallowed by policy")
		}
		if attr.Str(cur, "binding:vif_type") != "unbound" && attr.Str(cur, "binding:host_id") != "" {
			return nil, fault.Conflict("PortBound", "Unable to complete operation on port %s, port is already bound, port type: %s, old_mac %s, new_mac %s.", id, attr.Str(cur, "binding:vif_type"), attr.Str(cur, "mac_address"), mac)
		}
		if err := c.Tx.ReleaseMAC(attr.Str(net, "id"), attr.Str(cur, "mac_address"), id); err != nil {
			return nil, err
		}
		if _, err := reserveMAC(c, attr.Str(net, "id"), mac, id, false); err != nil {
			return nil, err
		}
		macChanged = true
	}
	merged := attr.Merge(schema.CloneObject(cur), in)
	if macChanged {
		// SLAAC and stateless addresses derive from the MAC: re-derive them.
		if err := rederiveAutoAddresses(c, merged); err != nil {
			return nil, err
		}
		cur = schema.CloneObject(cur)
		cur["fixed_ips"] = merged["fixed_ips"]
	}
	if v, ok := in["fixed_ips"]; ok {
		req, _ := v.([]any)
		keep := map[string]string{}
		for _, e := range attr.List(cur, "fixed_ips") {
			m, _ := e.(map[string]any)
			keep[attr.Str(m, "subnet_id")+"/"+attr.Str(m, "ip_address")] = "x"
		}
		ips, err := allocatePortIPs(c, net, merged, req, true, keep)
		if err != nil {
			return nil, err
		}
		still := map[string]bool{}
		for _, e := range ips {
			m, _ := e.(map[string]any)
			still[attr.Str(m, "subnet_id")+"/"+attr.Str(m, "ip_address")] = true
		}
		for _, e := range attr.List(cur, "fixed_ips") {
			m, _ := e.(map[string]any)
			if !still[attr.Str(m, "subnet_id")+"/"+attr.Str(m, "ip_address")] {
				if err := ipam.ReleaseIP(c, attr.Str(m, "subnet_id"), attr.Str(m, "ip_address")); err != nil {
					return nil, err
				}
			}
		}
		merged["fixed_ips"] = ips
	}
	ps := attr.Bool(merged, "port_security_enabled")
	if v, ok := in["allowed_address_pairs"]; ok {
		pairs, err := parsePairs(v, attr.Str(merged, "mac_address"))
		if err != nil {
			return nil, err
		}
		merged["allowed_address_pairs"] = pairs
	}
	if !ps && len(attr.List(merged, "allowed_address_pairs")) > 0 {
		return nil, addressPairNeedsSecurity()
	}
	if v, ok := in["extra_dhcp_opts"]; ok {
		opts, err := mergeDHCPOpts(attr.List(cur, "extra_dhcp_opts"), v)
		if err != nil {
			return nil, err
		}
		merged["extra_dhcp_opts"] = opts
	}
	_, hostChanged := in["binding:host_id"]
	_, vnicChanged := in["binding:vnic_type"]
	_, profChanged := in["binding:profile"]
	if hostChanged || vnicChanged || profChanged {
		if err := Bind(c, merged, net); err != nil {
			return nil, err
		}
	}
	// The security-group extension checks security_groups (Precommit).
	return merged, s.commit(c, "port", plugin.Update, cur, merged, in)
}

// rederiveAutoAddresses replaces a port's EUI-64 addresses with those of
// its (new) MAC.
func rederiveAutoAddresses(c *plugin.Ctx, p plugin.Object) error {
	out := make([]any, 0, len(attr.List(p, "fixed_ips")))
	for _, e := range attr.List(p, "fixed_ips") {
		m, _ := e.(map[string]any)
		sn, err := c.Tx.Get(schema.Subnet.Kind, attr.Str(m, "subnet_id"))
		if err != nil || !ipam.IsAutoAddress(sn) {
			out = append(out, e)
			continue
		}
		prefix, _ := netip.ParsePrefix(attr.Str(sn, "cidr"))
		a, err := ipam.EUI64(prefix, attr.Str(p, "mac_address"))
		if err != nil {
			return err
		}
		if err := ipam.ReleaseIP(c, attr.Str(sn, "id"), attr.Str(m, "ip_address")); err != nil {
			return err
		}
		if err := ipam.Allocate(c, sn, a, attr.Str(p, "id")); err != nil {
			return err
		}
		out = append(out, map[string]any{"subnet_id": attr.Str(sn, "id"), "ip_address": a.String()})
	}
	p["fixed_ips"] = out
	return nil
}

func (s *Service) deletePort(c *plugin.Ctx, cur plugin.Object) error {
	if err := s.commit(c, "port", plugin.Delete, cur, nil, nil); err != nil {
		return err
	}
	return RemovePort(c, cur)
}

// ServicePort creates a port owned by a network device (router, floating
// IP, DHCP server) for the service itself: with the given project,
// fixed_ips request (nil: automatic) and owner.
func ServicePort(c *plugin.Ctx, networkID, project, owner, deviceID string, fixedIPs []any) (plugin.Object, error) {
	ac := c.AsAdmin()
	in := map[string]any{"network_id": networkID, "device_owner": owner, "device_id": deviceID}
	if fixedIPs != nil {
		in["fixed_ips"] = fixedIPs
	}
	parsed, err := schema.Port.ParseCreate(ac.Caller, in)
	if err != nil {
		return nil, err
	}
	parsed["id"] = plugin.NewID()
	parsed["project_id"] = project
	p, err := From(c).createPort(ac, parsed)
	if err != nil {
		return nil, err
	}
	plugin.Scrub(p)
	return p, nil
}

// RemovePort deletes a port and frees its addresses and MAC (what the
// port API's delete does, for the service that owns the port).
func RemovePort(c *plugin.Ctx, p plugin.Object) error {
	id := attr.Str(p, "id")
	if err := ipam.ReleasePortIPs(c, id); err != nil {
		return err
	}
	if err := c.Tx.ReleaseMAC(attr.Str(p, "network_id"), attr.Str(p, "mac_address"), id); err != nil {
		return err
	}
	return c.Tx.Delete(schema.Port.Kind, id)
}

func hasMAC(o plugin.Object) bool { _, ok := o["mac_address"].(string); return ok }

// networkOwnerAttrs enforces Neutron's default policy for ports on a network
// the caller does not own (a shared one): chosen addresses, network device
// owners, port security and address pairs are the network owner's to set.
func networkOwnerAttrs(c *plugin.Ctx, in plugin.Object, netOwner bool, action string) error {
	if netOwner {
		return nil
	}
	deny := func(attr string) error {
		return fault.Forbidden("(rule:%s_port and rule:%s_port:%s) is disallowed by policy", action, action, attr)
	}
	for _, e := range attr.List(in, "fixed_ips") {
		if m, _ := e.(map[string]any); m != nil {
			if _, ok := m["ip_address"]; ok {
				return deny("fixed_ips:ip_address")
			}
		}
	}
	if trustedOwner(attr.Str(in, "device_owner")) {
		return deny("device_owner")
	}
	if _, ok := in["port_security_enabled"].(bool); ok {
		return deny("port_security_enabled")
	}
	if len(attr.List(in, "allowed_address_pairs")) > 0 {
		return deny("allowed_address_pairs")
	}
	return nil
}
