// Package rbac is the rbac-policies extension: projects share networks,
// security groups and subnet pools with other projects (or everyone), for
// use or as external networks. Each shareable type is registered by the
// service that owns it (Share); the policies in force are summed up on the
// shared object itself, so visibility checks need no extra read.
package rbac

import (
	"fmt"
	"net/http"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// Type is a resource type that RBAC policies share: registered by the
// service that owns it.
type Type struct {
	Name    string // object_type
	Res     *schema.Resource
	Actions []string
	// Users lists the projects whose objects depend on a share of obj
	// (their ports on a network, their subnets from a pool).
	Users func(c *plugin.Ctx, obj plugin.Object) (map[string]bool, error)
}

// Projects is the set of the projects of objs: a Type's Users where the
// dependents are objects of their own (err, from listing them, passes
// through).
func Projects(objs []plugin.Object, err error) (map[string]bool, error) {
	users := map[string]bool{}
	for _, o := range objs {
		users[attr.Str(o, "project_id")] = true
	}
	return users, err
}

// Service is the rbac-policies extension.
type Service struct {
	objects map[string]*Type
}

// New returns the rbac-policies extension.
func New() *Service { return &Service{objects: map[string]*Type{}} }

// Name implements plugin.Service.
func (s *Service) Name() string { return "rbac" }

// Register implements plugin.Service.
func (s *Service) Register(r *plugin.Registry) error {
	r.Extension(plugin.Extension{Alias: "rbac-policies", Name: "RBAC Policies", Description: "Allows creation and modification of policies that control tenant access to resources.", Updated: "2015-06-17T12:15:12-00:00"})
	return r.Resource(&plugin.Handler{Res: schema.RBACPolicy, Create: s.create, Update: s.update, Delete: s.delete,
		Visible: func(c *plugin.Ctx, o plugin.Object) bool { return false }, Quota: "rbac_policy"})
}

// Share makes a resource type shareable by RBAC policies; its objects'
// policies go with them.
func Share(r *plugin.Registry, o *Type) error {
	s, ok := plugin.Find[*Service](r)
	if !ok {
		return fmt.Errorf("rbac: the rbac service must come before %s", o.Name)
	}
	s.objects[o.Name] = o
	r.Subscribe(o.Res.Kind, plugin.Delete, plugin.After, func(c *plugin.Ctx, p *plugin.Payload) error {
		return deleteFor(c, attr.Str(p.Old, "id"))
	})
	return nil
}

func from(c *plugin.Ctx) *Service {
	s, _ := plugin.Find[*Service](c.Reg)
	return s
}

func (s *Service) create(c *plugin.Ctx, in plugin.Object) (plugin.Object, error) {
	typ, action, target := attr.Str(in, "object_type"), attr.Str(in, "action"), attr.Str(in, "target_tenant")
	spec, ok := s.objects[typ]
	if !ok {
		return nil, fault.InvalidInput("object_type '%s' is not supported", typ)
	}
	valid := false
	for _, a := range spec.Actions {
		valid = valid || a == action
	}
	if !valid {
		return nil, fault.InvalidInput("Invalid action '%s' for object type '%s'. Valid actions: %v", action, typ, spec.Actions)
	}
	if target == "*" && !c.Admin {
		return nil, fault.Forbidden("(rule:create_rbac_policy and rule:create_rbac_policy:target_tenant) is disallowed by policy")
	}
	obj, err := c.Tx.Get(spec.Res.Kind, attr.Str(in, "object_id"))
	if err != nil || !c.Owns(attr.Str(obj, "project_id")) {
		return nil, fault.New(http.StatusNotFound, "RbacPolicyNotFound",
			"RBAC policy on object %s could not be found (object not found or not owned)", attr.Str(in, "object_id"))
	}
	for _, t := range Targets(obj, action) {
		if t == target {
			return nil, fault.Conflict("DuplicateRbacPolicy", "An RBAC policy already exists with those values.")
		}
	}
	o := plugin.Object{"id": in["id"], "project_id": in["project_id"], "object_type": typ, "object_id": attr.Str(obj, "id"),
		"action": action, "target_tenant": target}
	if err := c.Tx.Put(schema.RBACPolicy.Kind, attr.Str(obj, "id"), o); err != nil {
		return nil, err
	}
	if err := applyRBAC(c, spec.Res, obj, true); err != nil {
		return nil, err
	}
	return o, nil
}

func (s *Service) update(c *plugin.Ctx, cur, in plugin.Object) (plugin.Object, error) {
	for k := range in {
		if k != "target_tenant" {
			return nil, fault.BadRequest("Cannot update read-only attribute %s", k)
		}
	}
	old := attr.Str(cur, "target_tenant")
	nt, _ := in["target_tenant"].(string)
	if nt == old {
		return cur, nil
	}
	if nt == "*" && !c.Admin {
		return nil, fault.Forbidden("(rule:update_rbac_policy and rule:update_rbac_policy:target_tenant) is disallowed by policy")
	}
	spec := s.objects[attr.Str(cur, "object_type")]
	if spec == nil {
		return nil, fault.InvalidInput("object_type '%s' is not supported", attr.Str(cur, "object_type"))
	}
	obj, err := c.Tx.Get(spec.Res.Kind, attr.Str(cur, "object_id"))
	if err != nil {
		return nil, err
	}
	for _, t := range Targets(obj, attr.Str(cur, "action")) {
		if t == nt {
			return nil, fault.Conflict("DuplicateRbacPolicy", "An RBAC policy already exists with those values.")
		}
	}
	cur["target_tenant"] = nt
	if err := c.Tx.Put(schema.RBACPolicy.Kind, attr.Str(cur, "object_id"), cur); err != nil {
		return nil, err
	}
	if err := applyRBAC(c, spec.Res, obj, true); err != nil {
		return nil, err
	}
	if err := checkShareRemoval(c, spec, obj, attr.Str(cur, "action"), old, true); err != nil {
		return nil, err
	}
	return cur, nil
}

func (s *Service) delete(c *plugin.Ctx, cur plugin.Object) error {
	spec := s.objects[attr.Str(cur, "object_type")]
	if spec == nil {
		return c.Tx.Delete(schema.RBACPolicy.Kind, attr.Str(cur, "id"))
	}
	if err := c.Tx.Delete(schema.RBACPolicy.Kind, attr.Str(cur, "id")); err != nil {
		return err
	}
	obj, err := c.Tx.Get(spec.Res.Kind, attr.Str(cur, "object_id"))
	if err != nil {
		return nil // the object is gone already
	}
	if err := applyRBAC(c, spec.Res, obj, true); err != nil {
		return err
	}
	return checkShareRemoval(c, spec, obj, attr.Str(cur, "action"), attr.Str(cur, "target_tenant"), true)
}

// applyRBAC recomputes the sharing summary kept on the object itself. A
// change through the RBAC API bumps the object's revision; one made through
// its own attributes (shared, router:external) is part of that create or
// update, which bumps once itself.
func applyRBAC(c *plugin.Ctx, r *schema.Resource, obj plugin.Object, bump bool) error {
	pols, err := c.Tx.List(schema.RBACPolicy.Kind, store.Filter{Parent: attr.Str(obj, "id")})
	if err != nil {
		return err
	}
	m := map[string]any{}
	for _, p := range pols {
		a := attr.Str(p, "action")
		l, _ := m[a].([]any)
		m[a] = append(l, p["target_tenant"])
	}
	obj[Key] = m
	if _, ok := obj["shared"]; ok {
		obj["shared"] = SharedWith(obj, "access_as_shared", "\x00")
	}
	if _, ok := obj["router:external"]; ok {
		// External for the projects it is shared with as external (all,
		// or some), as Neutron marks a network external with its first
		// access_as_external policy.
		obj["router:external"] = len(Targets(obj, "access_as_external")) > 0
	}
	if bump {
		return c.Touch(r, obj)
	}
	return c.Put(r, obj)
}

// Key is the internal attribute that holds an object's sharing summary
// (action -> target projects); stored, never rendered.
const Key = "_rbac"

// Targets lists the projects an object is shared with for action.
func Targets(o plugin.Object, action string) []any {
	m, _ := o[Key].(map[string]any)
	l, _ := m[action].([]any)
	return l
}

// SharedWith reports whether o is shared with project (or everyone) for
// action.
func SharedWith(o plugin.Object, action, project string) bool {
	for _, t := range Targets(o, action) {
		if t == "*" || t == project {
			return true
		}
	}
	return false
}

// Add records a share made through an attribute (shared=true,
// router:external=true), owned by the object's project.
func Add(c *plugin.Ctx, obj plugin.Object, typ, action, target string) error {
	for _, t := range Targets(obj, action) {
		if t == target {
			return nil
		}
	}
	spec := from(c).objects[typ]
	o := plugin.Object{"id": plugin.NewID(), "project_id": obj["project_id"], "object_type": typ, "object_id": obj["id"],
		"action": action, "target_tenant": target}
	if err := c.Tx.Put(schema.RBACPolicy.Kind, attr.Str(obj, "id"), o); err != nil {
		return err
	}
	return applyRBAC(c, spec.Res, obj, false)
}

// SetWildcard turns a '*' share on or off (the shared attribute). Turned
// off with every target (all), it withdraws the action's shares with
// everyone (router:external=false takes the project-targeted external
// shares with it, as in Neutron).
func SetWildcard(c *plugin.Ctx, obj plugin.Object, typ, action string, on, all bool) error {
	if on {
		return Add(c, obj, typ, action, "*")
	}
	pols, err := c.Tx.List(schema.RBACPolicy.Kind, store.Filter{Parent: attr.Str(obj, "id")})
	if err != nil {
		return err
	}
	removed := false
	for _, p := range pols {
		if attr.Str(p, "action") == action && (all || attr.Str(p, "target_tenant") == "*") {
			if err := c.Tx.Delete(schema.RBACPolicy.Kind, attr.Str(p, "id")); err != nil {
				return err
			}
			removed = true
		}
	}
	if !removed {
		return nil
	}
	spec := from(c).objects[typ]
	if err := applyRBAC(c, spec.Res, obj, false); err != nil {
		return err
	}
	return checkShareRemoval(c, spec, obj, action, "*", false)
}

// checkShareRemoval refuses to withdraw a share that other projects still
// depend on (their ports on a network, their rules on a group).
func checkShareRemoval(c *plugin.Ctx, spec *Type, obj plugin.Object, action, target string, viaPolicy bool) error {
	if spec.Users == nil {
		return nil
	}
	owner := attr.Str(obj, "project_id")
	users, err := spec.Users(c, obj)
	if err != nil {
		return err
	}
	for p := range users {
		if p == owner || (target != "*" && p != target) {
			continue
		}
		if SharedWith(obj, action, p) {
			continue
		}
		if action == "access_as_external" && p != owner {
			// Gateways and floating IPs arrive with the routers issue.
			continue
		}
		if viaPolicy {
			return fault.New(http.StatusConflict, "RbacPolicyInUse",
				"RBAC policy on object %s cannot be removed because other objects depend on it.\nDetails: %s %s is in use by project %s.", attr.Str(obj, "id"), spec.Res.Member, attr.Str(obj, "id"), p)
		}
		return fault.New(http.StatusConflict, "InvalidSharedSetting",
			"Unable to reconfigure sharing settings for network %s. Multiple tenants are using it.", attr.Str(obj, "id"))
	}
	return nil
}

// deleteFor removes every policy on an object being deleted.
func deleteFor(c *plugin.Ctx, id string) error {
	_, err := c.Tx.DeleteChildren(schema.RBACPolicy.Kind, id)
	return err
}

// Present shows "shared" as the caller sees it: true when the object is
// shared with everyone or with the caller's project.
func Present(c *plugin.Ctx, o plugin.Object) plugin.Object {
	if _, ok := o[Key]; !ok {
		return o
	}
	shared := SharedWith(o, "access_as_shared", c.ProjectID)
	if shared == (o["shared"] == true) {
		return o
	}
	cp := make(plugin.Object, len(o))
	for k, v := range o {
		cp[k] = v
	}
	cp["shared"] = shared
	return cp
}
