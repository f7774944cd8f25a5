package core

import (
	"net/http"

	"neutrino/internal/fault"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// rbacObjects maps an RBAC object_type to its resource and allowed actions.
var rbacObjects = map[string]struct {
	r       *schema.Resource
	actions []string
}{
	"network":        {schema.Network, []string{"access_as_shared", "access_as_external"}},
	"security_group": {schema.SecurityGroup, []string{"access_as_shared"}},
	"subnetpool":     {schema.SubnetPool, []string{"access_as_shared"}},
}

func rbacVisible(c *Ctx, o Object) bool { return false }

func createRBAC(c *Ctx, in Object) (Object, error) {
	typ, action, target := str(in, "object_type"), str(in, "action"), str(in, "target_tenant")
	spec, ok := rbacObjects[typ]
	if !ok {
		return nil, fault.InvalidInput("object_type '%s' is not supported", typ)
	}
	valid := false
	for _, a := range spec.actions {
		valid = valid || a == action
	}
	if !valid {
		return nil, fault.InvalidInput("Invalid action '%s' for object type '%s'. Valid actions: %v", action, typ, spec.actions)
	}
	if target == "*" && !c.Admin {
		return nil, fault.Forbidden("(rule:create_rbac_policy and rule:create_rbac_policy:target_tenant) is disallowed by policy")
	}
	obj, err := c.Tx.Get(spec.r.Kind, str(in, "object_id"))
	if err != nil || !c.Owns(str(obj, "project_id")) {
		return nil, fault.New(http.StatusNotFound, "RbacPolicyNotFound",
			"RBAC policy on object %s could not be found (object not found or not owned)", str(in, "object_id"))
	}
	for _, t := range rbacTargets(obj, action) {
		if t == target {
			return nil, fault.Conflict("DuplicateRbacPolicy", "An RBAC policy already exists with those values.")
		}
	}
	o := Object{"id": in["id"], "project_id": in["project_id"], "object_type": typ, "object_id": str(obj, "id"),
		"action": action, "target_tenant": target}
	if err := c.Tx.Put(schema.RBACPolicy.Kind, str(obj, "id"), o); err != nil {
		return nil, err
	}
	if err := c.applyRBAC(spec.r, obj, true); err != nil {
		return nil, err
	}
	return o, nil
}

func updateRBAC(c *Ctx, cur, in Object) (Object, error) {
	for k := range in {
		if k != "target_tenant" {
			return nil, fault.BadRequest("Cannot update read-only attribute %s", k)
		}
	}
	old := str(cur, "target_tenant")
	nt, _ := in["target_tenant"].(string)
	if nt == old {
		return cur, nil
	}
	if nt == "*" && !c.Admin {
		return nil, fault.Forbidden("(rule:update_rbac_policy and rule:update_rbac_policy:target_tenant) is disallowed by policy")
	}
	spec := rbacObjects[str(cur, "object_type")]
	obj, err := c.Tx.Get(spec.r.Kind, str(cur, "object_id"))
	if err != nil {
		return nil, err
	}
	for _, t := range rbacTargets(obj, str(cur, "action")) {
		if t == nt {
			return nil, fault.Conflict("DuplicateRbacPolicy", "An RBAC policy already exists with those values.")
		}
	}
	cur["target_tenant"] = nt
	if err := c.Tx.Put(schema.RBACPolicy.Kind, str(cur, "object_id"), cur); err != nil {
		return nil, err
	}
	if err := c.applyRBAC(spec.r, obj, true); err != nil {
		return nil, err
	}
	if err := c.checkShareRemoval(spec.r, obj, str(cur, "action"), old, true); err != nil {
		return nil, err
	}
	return cur, nil
}

func deleteRBAC(c *Ctx, cur Object) error {
	spec := rbacObjects[str(cur, "object_type")]
	if err := c.Tx.Delete(schema.RBACPolicy.Kind, str(cur, "id")); err != nil {
		return err
	}
	obj, err := c.Tx.Get(spec.r.Kind, str(cur, "object_id"))
	if err != nil {
		return nil // the object is gone already
	}
	if err := c.applyRBAC(spec.r, obj, true); err != nil {
		return err
	}
	return c.checkShareRemoval(spec.r, obj, str(cur, "action"), str(cur, "target_tenant"), true)
}

// applyRBAC recomputes the sharing summary kept on the object itself. A
// change through the RBAC API bumps the object's revision; one made through
// its own attributes (shared, router:external) is part of that create or
// update, which bumps once itself.
func (c *Ctx) applyRBAC(r *schema.Resource, obj Object, bump bool) error {
	pols, err := c.Tx.List(schema.RBACPolicy.Kind, store.Filter{Parent: str(obj, "id")})
	if err != nil {
		return err
	}
	m := map[string]any{}
	for _, p := range pols {
		a := str(p, "action")
		l, _ := m[a].([]any)
		m[a] = append(l, p["target_tenant"])
	}
	obj[keyRBAC] = m
	if _, ok := obj["shared"]; ok {
		obj["shared"] = sharedWith(obj, "access_as_shared", "\x00")
	}
	if r == schema.Network {
		obj["router:external"] = sharedWith(obj, "access_as_external", "\x00")
	}
	if bump {
		return c.touch(r, obj)
	}
	return c.put(r, obj)
}

// addRBAC records a share made through an attribute (shared=true,
// router:external=true), owned by the object's project.
func (c *Ctx) addRBAC(obj Object, typ, action, target string) error {
	for _, t := range rbacTargets(obj, action) {
		if t == target {
			return nil
		}
	}
	id := newID()
	o := Object{"id": id, "project_id": obj["project_id"], "object_type": typ, "object_id": obj["id"],
		"action": action, "target_tenant": target}
	if err := c.Tx.Put(schema.RBACPolicy.Kind, str(obj, "id"), o); err != nil {
		return err
	}
	return c.applyRBAC(rbacObjects[typ].r, obj, false)
}

// setWildcard turns a '*' share on or off (the shared and router:external
// attributes).
func (c *Ctx) setWildcard(obj Object, typ, action string, on bool) error {
	if on {
		return c.addRBAC(obj, typ, action, "*")
	}
	pols, err := c.Tx.List(schema.RBACPolicy.Kind, store.Filter{Parent: str(obj, "id")})
	if err != nil {
		return err
	}
	removed := false
	for _, p := range pols {
		if str(p, "action") == action && str(p, "target_tenant") == "*" {
			if err := c.Tx.Delete(schema.RBACPolicy.Kind, str(p, "id")); err != nil {
				return err
			}
			removed = true
		}
	}
	if !removed {
		return nil
	}
	if err := c.applyRBAC(rbacObjects[typ].r, obj, false); err != nil {
		return err
	}
	return c.checkShareRemoval(rbacObjects[typ].r, obj, action, "*", false)
}

// checkShareRemoval refuses to withdraw a share that other projects still
// depend on (their ports on a network, their rules on a group).
func (c *Ctx) checkShareRemoval(r *schema.Resource, obj Object, action, target string, viaPolicy bool) error {
	owner := str(obj, "project_id")
	users := map[string]bool{}
	switch r {
	case schema.Network:
		ports, err := c.Tx.List(schema.Port.Kind, store.Filter{Parent: str(obj, "id")})
		if err != nil {
			return err
		}
		for _, p := range ports {
			if str(p, "device_owner") != "network:dhcp" {
				users[str(p, "project_id")] = true
			}
		}
		subnets, err := c.Tx.List(schema.Subnet.Kind, store.Filter{Parent: str(obj, "id")})
		if err != nil {
			return err
		}
		for _, s := range subnets {
			users[str(s, "project_id")] = true
		}
	case schema.SecurityGroup:
		ports, err := c.groupMembers(str(obj, "id"))
		if err != nil {
			return err
		}
		for _, p := range ports {
			users[str(p, "project_id")] = true
		}
	case schema.SubnetPool:
		subnets, err := c.poolSubnets(str(obj, "id"))
		if err != nil {
			return err
		}
		for _, s := range subnets {
			users[str(s, "project_id")] = true
		}
	default:
		return nil
	}
	for p := range users {
		if p == owner || (target != "*" && p != target) {
			continue
		}
		if sharedWith(obj, action, p) {
			continue
		}
		if action == "access_as_external" && p != owner {
			// Gateways and floating IPs arrive with the routers issue.
			continue
		}
		if viaPolicy {
			return fault.New(http.StatusConflict, "RbacPolicyInUse",
				"RBAC policy on object %s cannot be removed because other objects depend on it.\nDetails: %s %s is in use by project %s.", str(obj, "id"), r.Member, str(obj, "id"), p)
		}
		return fault.New(http.StatusConflict, "InvalidSharedSetting",
			"Unable to reconfigure sharing settings for network %s. Multiple tenants are using it.", str(obj, "id"))
	}
	return nil
}

// deleteRBACFor removes every policy on an object being deleted.
func (c *Ctx) deleteRBACFor(typ, id string) error {
	pols, err := c.Tx.List(schema.RBACPolicy.Kind, store.Filter{Parent: id})
	if err != nil {
		return err
	}
	for _, p := range pols {
		if err := c.Tx.Delete(schema.RBACPolicy.Kind, str(p, "id")); err != nil {
			return err
		}
	}
	return nil
}
