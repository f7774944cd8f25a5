package ml2

import (
	"net/http"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/services/rbac"
	"neutrino/internal/store"
)

func (s *Service) createNetwork(c *plugin.Ctx, in plugin.Object) (plugin.Object, error) {
	id := attr.Str(in, "id")
	req, err := segmentsFromRequest(c, in)
	if err != nil {
		return nil, err
	}
	segs, err := allocateSegments(c, req, id)
	if err != nil {
		return nil, err
	}
	maxMTU := networkMTU(c, segs)
	mtu := maxMTU
	if v, ok := in["mtu"].(float64); ok {
		if int(v) > maxMTU {
			return nil, fault.InvalidInput("Requested MTU is too big, maximum is %d", maxMTU)
		}
		mtu = int(v)
	}
	o := plugin.Object{
		"id": id, "project_id": in["project_id"], "name": in["name"], "description": in["description"],
		"admin_state_up": in["admin_state_up"], "status": "ACTIVE", "subnets": []any{},
		"shared": false, "router:external": false, "mtu": float64(mtu),
		"port_security_enabled":   in["port_security_enabled"],
		"availability_zone_hints": in["availability_zone_hints"], "availability_zones": []any{},
		"ipv4_address_scope": nil, "ipv6_address_scope": nil, "l2_adjacency": true,
		rbac.Key: map[string]any{},
	}
	setSegments(o, segs)
	c.Stamp(o)
	// What RBAC will make of the shares asked for, for the hooks' view.
	o["shared"], o["router:external"] = attr.Bool(in, "shared"), attr.Bool(in, "router:external")
	if err := s.commit(c, "network", plugin.Create, nil, o, in); err != nil {
		return nil, err
	}
	if err := c.Put(schema.Network, o); err != nil {
		return nil, err
	}
	if attr.Bool(in, "shared") {
		if err := rbac.Add(c, o, "network", "access_as_shared", "*"); err != nil {
			return nil, err
		}
	}
	if attr.Bool(in, "router:external") {
		if err := rbac.Add(c, o, "network", "access_as_external", "*"); err != nil {
			return nil, err
		}
	}
	return c.Load(schema.Network, id)
}

func setSegments(o plugin.Object, segs []Segment) {
	delete(o, "segments")
	for _, k := range []string{"provider:network_type", "provider:physical_network", "provider:segmentation_id"} {
		delete(o, k)
	}
	if len(segs) == 1 {
		for k, v := range segs[0].object() {
			o[k] = v
		}
		return
	}
	l := make([]any, 0, len(segs))
	for _, s := range segs {
		l = append(l, s.object())
	}
	o["segments"] = l
}

func (s *Service) updateNetwork(c *plugin.Ctx, cur, in plugin.Object) (plugin.Object, error) {
	old := schema.CloneObject(cur)
	for _, k := range []string{"provider:network_type", "provider:physical_network", "provider:segmentation_id", "segments"} {
		if v, ok := in[k]; ok && schema.Render(v) != schema.Render(cur[k]) {
			return nil, fault.InvalidInput("Plugin does not support updating provider attributes")
		}
		delete(in, k)
	}
	if v, ok := in["mtu"].(float64); ok {
		if max := networkMTU(c, NetworkSegments(cur)); int(v) > max {
			return nil, fault.InvalidInput("Requested MTU is too big, maximum is %d", max)
		}
	}
	if v, ok := in["shared"].(bool); ok {
		delete(in, "shared")
		if err := rbac.SetWildcard(c, cur, "network", "access_as_shared", v, false); err != nil {
			return nil, err
		}
	}
	if v, ok := in["router:external"].(bool); ok {
		delete(in, "router:external")
		if err := rbac.SetWildcard(c, cur, "network", "access_as_external", v, true); err != nil {
			return nil, err
		}
	}
	o := attr.Merge(cur, in)
	return o, s.commit(c, "network", plugin.Update, old, o, in)
}

// NetworkInUse is the 409 for a network whose ports are in use.
func networkInUse(id string) error {
	return fault.New(http.StatusConflict, "NetworkInUse",
		"Unable to complete operation on network %s. There are one or more ports still in use on the network.", id)
}

// deleteNetwork removes a network with its DHCP ports and subnets (the
// services that keep objects on a network clear them first, on the
// network's Before delete event: floating IPs, for instance).
func (s *Service) deleteNetwork(c *plugin.Ctx, cur plugin.Object) error {
	id := attr.Str(cur, "id")
	ports, err := c.Tx.List(schema.Port.Kind, store.Filter{Parent: id})
	if err != nil {
		return err
	}
	for _, p := range ports {
		if attr.Str(p, "device_owner") != ownerDHCP {
			return networkInUse(id)
		}
	}
	for _, p := range ports {
		if err := RemovePort(c, p); err != nil {
			return err
		}
	}
	subnets, err := c.Tx.DeleteChildren(schema.Subnet.Kind, id)
	if err != nil {
		return err
	}
	for _, sn := range subnets {
		if err := c.Tx.ReleaseSubnetIPs(attr.Str(sn, "id")); err != nil {
			return err
		}
	}
	if err := releaseSegments(c, cur); err != nil {
		return err
	}
	if err := s.commit(c, "network", plugin.Delete, cur, nil, nil); err != nil {
		return err
	}
	return c.Tx.Delete(schema.Network.Kind, id)
}

func networkVisible(c *plugin.Ctx, o plugin.Object) bool {
	return rbac.SharedWith(o, "access_as_shared", c.ProjectID) || rbac.SharedWith(o, "access_as_external", c.ProjectID)
}
