package core

import (
	"net/http"

	"neutrino/internal/fault"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// Internal keys live in stored bodies but are never rendered (the schema
// renders only declared attributes).
const (
	keyRBAC = "_rbac" // action -> list of target projects
)

func createNetwork(c *Ctx, in Object) (Object, error) {
	id := str(in, "id")
	req, err := c.segmentsFromRequest(in)
	if err != nil {
		return nil, err
	}
	segs, err := c.allocateSegments(req, id)
	if err != nil {
		return nil, err
	}
	maxMTU := c.networkMTU(segs)
	mtu := maxMTU
	if v, ok := in["mtu"].(float64); ok {
		if int(v) > maxMTU {
			return nil, fault.InvalidInput("Requested MTU is too big, maximum is %d", maxMTU)
		}
		mtu = int(v)
	}
	o := Object{
		"id": id, "project_id": in["project_id"], "name": in["name"], "description": in["description"],
		"admin_state_up": in["admin_state_up"], "status": "ACTIVE", "subnets": []any{},
		"shared": false, "router:external": false, "mtu": float64(mtu),
		"port_security_enabled":   in["port_security_enabled"],
		"availability_zone_hints": in["availability_zone_hints"], "availability_zones": []any{},
		"ipv4_address_scope": nil, "ipv6_address_scope": nil, "l2_adjacency": true,
		keyRBAC: map[string]any{},
	}
	setSegments(o, segs)
	c.stamp(o)
	if err := c.put(schema.Network, o); err != nil {
		return nil, err
	}
	if boolean(in, "shared") {
		if err := c.addRBAC(o, "network", "access_as_shared", "*"); err != nil {
			return nil, err
		}
	}
	if boolean(in, "router:external") {
		if err := c.addRBAC(o, "network", "access_as_external", "*"); err != nil {
			return nil, err
		}
	}
	return c.load(schema.Network, id)
}

func setSegments(o Object, segs []Segment) {
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

func updateNetwork(c *Ctx, cur, in Object) (Object, error) {
	for _, k := range []string{"provider:network_type", "provider:physical_network", "provider:segmentation_id", "segments"} {
		if v, ok := in[k]; ok && schema.Render(v) != schema.Render(cur[k]) {
			return nil, fault.InvalidInput("Plugin does not support updating provider attributes")
		}
		delete(in, k)
	}
	if v, ok := in["mtu"].(float64); ok {
		if max := c.networkMTU(NetworkSegments(cur)); int(v) > max {
			return nil, fault.InvalidInput("Requested MTU is too big, maximum is %d", max)
		}
	}
	if v, ok := in["shared"].(bool); ok {
		delete(in, "shared")
		if err := c.setWildcard(cur, "network", "access_as_shared", v); err != nil {
			return nil, err
		}
	}
	if v, ok := in["router:external"].(bool); ok {
		delete(in, "router:external")
		if err := c.setWildcard(cur, "network", "access_as_external", v); err != nil {
			return nil, err
		}
	}
	return merge(cur, in), nil
}

// NetworkInUse is the 409 for a network whose ports are in use.
func networkInUse(id string) error {
	return fault.New(http.StatusConflict, "NetworkInUse",
		"Unable to complete operation on network %s. There are one or more ports still in use on the network.", id)
}

// autoDeletedOwners are port owners removed with their network (floating
// IPs go with their external network, as in Neutron; one in use has a
// router gateway on the network, which keeps it).
var autoDeletedOwners = map[string]bool{"network:dhcp": true, ownerFloatingIP: true}

func deleteNetwork(c *Ctx, cur Object) error {
	id := str(cur, "id")
	ports, err := c.Tx.List(schema.Port.Kind, store.Filter{Parent: id})
	if err != nil {
		return err
	}
	for _, p := range ports {
		if !autoDeletedOwners[str(p, "device_owner")] {
			return networkInUse(id)
		}
	}
	for _, p := range ports {
		if err := removePort(c, p); err != nil {
			return err
		}
	}
	fips, err := c.Tx.List(schema.FloatingIP.Kind, store.Filter{Parent: id})
	if err != nil {
		return err
	}
	for _, f := range fips {
		if err := c.Tx.Delete(schema.FloatingIP.Kind, str(f, "id")); err != nil {
			return err
		}
	}
	subnets, err := c.Tx.List(schema.Subnet.Kind, store.Filter{Parent: id})
	if err != nil {
		return err
	}
	for _, sn := range subnets {
		if err := c.Tx.Delete(schema.Subnet.Kind, str(sn, "id")); err != nil {
			return err
		}
		if err := c.Tx.ReleaseSubnetIPs(str(sn, "id")); err != nil {
			return err
		}
	}
	if err := c.deleteRBACFor("network", id); err != nil {
		return err
	}
	if err := c.dropDHCPBindings(id, ""); err != nil {
		return err
	}
	if err := c.releaseSegments(cur); err != nil {
		return err
	}
	return c.Tx.Delete(schema.Network.Kind, id)
}

// rbacTargets lists the projects an object is shared with for action.
func rbacTargets(o Object, action string) []any {
	m, _ := o[keyRBAC].(map[string]any)
	l, _ := m[action].([]any)
	return l
}

func sharedWith(o Object, action, project string) bool {
	for _, t := range rbacTargets(o, action) {
		if t == "*" || t == project {
			return true
		}
	}
	return false
}

func networkVisible(c *Ctx, o Object) bool {
	return sharedWith(o, "access_as_shared", c.ProjectID) || sharedWith(o, "access_as_external", c.ProjectID)
}

// Present adjusts context-dependent attributes before rendering: a network
// is "shared" for a caller when shared with everyone or with its project.
func (s *Service) Present(c *Ctx, r *schema.Resource, o Object) Object {
	switch r {
	case schema.Agent:
		cp := make(Object, len(o)+1)
		for k, v := range o {
			cp[k] = v
		}
		cp["alive"] = s.agentAlive(o)
		return cp
	case schema.FloatingIP:
		cp := make(Object, len(o)+1)
		for k, v := range o {
			cp[k] = v
		}
		cp["port_details"] = s.fipPortDetails(c, o)
		return cp
	case schema.Network, schema.SecurityGroup, schema.SubnetPool:
		if _, ok := o[keyRBAC]; !ok {
			return o
		}
		shared := sharedWith(o, "access_as_shared", c.ProjectID)
		if shared != boolean(o, "shared") {
			cp := make(Object, len(o))
			for k, v := range o {
				cp[k] = v
			}
			cp["shared"] = shared
			return cp
		}
	}
	return o
}
