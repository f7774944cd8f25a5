// Package schema describes every API resource once: its attributes, which of
// them a request may set, what is visible to whom, and how each converts and
// validates. The generic API machinery (create, update, render, filter, sort)
// is driven by these descriptions, as Neutron's attribute maps drive its own.
package schema

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"

	"neutrino/internal/fault"
	"neutrino/internal/jsonx"
	"neutrino/internal/policy"
)

// Object is one resource.
type Object = map[string]any

// Attr describes one attribute of a resource.
type Attr struct {
	Name       string
	Post, Put  bool // may be given on create / update
	Required   bool // must be given on create
	Default    any  // the value on create when absent (see HasDefault)
	HasDefault bool
	Hidden     bool // never shown (request-only input such as prefixlen)
	AdminOnly  bool // shown to and settable by admins only (provider:*, binding:*)
	AdminSet   bool // visible to all, settable by admins only (shared, router:external)
	NoFilter   bool // may not be used as a list filter
	Sort       bool // may be used as sort_key
	Convert    Converter
}

// Resource is one collection of the API.
type Resource struct {
	Member     string // "network"
	Collection string // "networks": the JSON key of lists
	Path       string // URL segment ("security-groups"); Collection when empty
	Kind       string // store kind (the member name)
	Parent     string // attribute whose value indexes the store row (e.g. network_id)
	Attrs      []*Attr
	byName     map[string]*Attr
	// Standard resources carry tags, timestamps and revision numbers.
	Standard bool
	// NotFound is the 404 for a missing member (nil: a generic one).
	NotFound func(id string) error
	// ExtraFilters are list filters that are not attributes.
	ExtraFilters map[string]bool
	// ChildOf, when set, makes the resource a child collection of that
	// resource (its Kind): served only under /<parent>/{id}/<Path>, the
	// parent's id in the Parent attribute (a pool's members).
	ChildOf string
}

// Attr returns the named attribute or nil.
func (r *Resource) Attr(name string) *Attr { return r.byName[name] }

func (r *Resource) index() {
	r.byName = map[string]*Attr{}
	for _, a := range r.Attrs {
		r.byName[a.Name] = a
	}
}

// ParseBody splits a create request body into items: {"member": {...}} is one
// item, {"collection": [...]} is a bulk request.
func (r *Resource) ParseBody(body []byte) (items []map[string]any, bulk bool, err error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil || doc == nil {
		return nil, false, fault.BadRequest("Malformed request body")
	}
	if raw, ok := doc[r.Member]; ok && len(doc) == 1 {
		var one map[string]any
		if err := json.Unmarshal(raw, &one); err != nil || one == nil {
			return nil, false, fault.BadRequest("Malformed request body: %s", "the resource must be a JSON object")
		}
		return []map[string]any{one}, false, nil
	}
	if raw, ok := doc[r.Collection]; ok && len(doc) == 1 {
		var many []map[string]any
		if err := json.Unmarshal(raw, &many); err != nil {
			return nil, false, fault.BadRequest("Malformed request body: %s", "a list of JSON objects is expected")
		}
		for _, m := range many {
			if m == nil {
				return nil, false, fault.BadRequest("Malformed request body: %s", "a list of JSON objects is expected")
			}
		}
		if len(many) == 0 {
			return nil, false, fault.BadRequest("Resources required")
		}
		return many, true, nil
	}
	return nil, false, fault.BadRequest("Unable to find '%s' in request body", r.Member)
}

// ParseMember decodes an update body {"member": {...}}.
func (r *Resource) ParseMember(body []byte) (map[string]any, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil || doc == nil {
		return nil, fault.BadRequest("Malformed request body")
	}
	raw, ok := doc[r.Member]
	if !ok {
		return nil, fault.BadRequest("Unable to find '%s' in request body", r.Member)
	}
	var one map[string]any
	if err := json.Unmarshal(raw, &one); err != nil || one == nil {
		return nil, fault.BadRequest("Malformed request body: %s", "the resource must be a JSON object")
	}
	return one, nil
}

func (r *Resource) checkKeys(in map[string]any, post bool) error {
	var unknown []string
	for k := range in {
		if r.byName[k] == nil {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fault.BadRequest("Unrecognized attribute(s) '%s'", strings.Join(unknown, ", "))
	}
	for k := range in {
		a := r.byName[k]
		if post && !a.Post {
			return fault.BadRequest("Attribute '%s' not allowed in POST", k)
		}
		if !post && !a.Put {
			return fault.BadRequest("Cannot update read-only attribute %s", k)
		}
	}
	return nil
}

func (r *Resource) denied(action, attr string) error {
	return fault.New(http.StatusForbidden, "PolicyNotAuthorized",
		"(rule:%s_%s and rule:%s_%s:%s) is disallowed by policy", action, r.Member, action, r.Member, attr)
}

// parse checks the keys of a create or update body and converts each value
// it holds, refusing an attribute the caller may not set.
func (r *Resource) parse(c *policy.Caller, in map[string]any, action string) (Object, error) {
	if err := r.checkKeys(in, action == "create"); err != nil {
		return nil, err
	}
	out := Object{}
	for k, v := range in {
		a := r.byName[k]
		if (a.AdminOnly || a.AdminSet) && !c.Admin {
			return nil, r.denied(action, k)
		}
		if a.Convert != nil {
			cv, err := a.Convert(k, v)
			if err != nil {
				return nil, explain(k, err)
			}
			v = cv
		}
		out[k] = v
	}
	return out, nil
}

// ParseCreate validates one create item for caller and fills defaults. The
// result has project_id set (tenant_id folded into it).
func (r *Resource) ParseCreate(c *policy.Caller, in map[string]any) (Object, error) {
	out, err := r.parse(c, in, "create")
	if err != nil {
		return nil, err
	}
	if err := r.foldProject(c, out); err != nil {
		return nil, err
	}
	for _, a := range r.Attrs {
		if _, ok := out[a.Name]; ok {
			continue
		}
		if a.Required {
			return nil, fault.BadRequest("Failed to parse request. Required attribute '%s' not specified", a.Name)
		}
		if a.HasDefault {
			out[a.Name] = Clone(a.Default)
		}
	}
	return out, nil
}

func (r *Resource) foldProject(c *policy.Caller, out Object) error {
	if r.byName["project_id"] == nil {
		return nil
	}
	p, hasP := out["project_id"].(string)
	t, hasT := out["tenant_id"].(string)
	if hasP && hasT && p != t {
		return fault.BadRequest("'project_id' and 'tenant_id' do not match")
	}
	if !hasP && hasT {
		p, hasP = t, true
	}
	delete(out, "tenant_id")
	if !hasP || p == "" {
		p = c.ProjectID
	}
	if p != c.ProjectID && !c.Admin {
		return fault.BadRequest("Specifying 'project_id' or 'tenant_id' other than the authenticated project in request requires admin privileges")
	}
	out["project_id"] = p
	return nil
}

// ParseUpdate validates an update body for caller.
func (r *Resource) ParseUpdate(c *policy.Caller, in map[string]any) (Object, error) {
	out, err := r.parse(c, in, "update")
	if err != nil {
		return nil, err
	}
	if t, ok := out["tenant_id"]; ok {
		if p, ok2 := out["project_id"]; ok2 && p != t {
			return nil, fault.BadRequest("'project_id' and 'tenant_id' do not match")
		}
		out["project_id"] = t
		delete(out, "tenant_id")
	}
	return out, nil
}

// Visible reports whether caller may see attribute a.
func (a *Attr) Visible(c *policy.Caller) bool {
	return !a.Hidden && (!a.AdminOnly || c.Admin)
}

// KV is one attribute of a rendered object.
type KV = jsonx.KV

// Ordered is a rendered object: attributes in the schema's order (as Neutron
// prints them), encoded without sorting.
type Ordered = jsonx.Ordered

// Render returns the response form of obj for caller, limited to fields if
// any are given.
func (r *Resource) Render(c *policy.Caller, obj Object, fields []string) Ordered {
	if len(fields) > 0 {
		out := make(Ordered, 0, len(fields))
		seen := map[string]bool{}
		for _, f := range fields {
			a := r.byName[f]
			if a == nil || !a.Visible(c) || seen[f] {
				continue
			}
			seen[f] = true
			if f == "tenant_id" {
				out = append(out, KV{K: f, V: obj["project_id"]})
				continue
			}
			if v, ok := obj[f]; ok {
				out = append(out, KV{K: f, V: v})
			}
		}
		return out
	}
	out := make(Ordered, 0, len(r.Attrs))
	for _, a := range r.Attrs {
		if !a.Visible(c) {
			continue
		}
		if a.Name == "tenant_id" {
			out = append(out, KV{K: "tenant_id", V: obj["project_id"]})
			continue
		}
		if v, ok := obj[a.Name]; ok {
			out = append(out, KV{K: a.Name, V: v})
		}
	}
	return out
}

// Clone deep-copies a JSON value.
func Clone(v any) any { return jsonx.Copy(v) }

// CloneObject deep-copies an object.
func CloneObject(o Object) Object {
	if o == nil {
		return nil
	}
	return Clone(o).(map[string]any)
}

// explain turns a validation Reason into Neutron's 400 for attribute k.
func explain(k string, err error) error {
	if r, ok := err.(Reason); ok {
		return fault.BadRequest("Invalid input for %s. Reason: %s.", k, string(r))
	}
	return err
}
