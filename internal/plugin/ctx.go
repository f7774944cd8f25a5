package plugin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"

	"neutrino/internal/fault"
	"neutrino/internal/policy"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// Ctx is one request's view: who calls, inside which transaction, with
// which services.
type Ctx struct {
	context.Context
	*policy.Caller
	Tx  *store.Tx
	Reg *Registry
	Now string

	post []func() // run once the write commits
}

// AfterCommit queues fn to run once the write transaction has committed
// (never if it fails; a write that runs again queues afresh).
func (c *Ctx) AfterCommit(fn func()) { c.post = append(c.post, fn) }

// NewCtx binds a request context and a transaction.
func (r *Registry) NewCtx(ctx context.Context, tx *store.Tx) *Ctx {
	return &Ctx{Context: ctx, Caller: policy.From(ctx), Tx: tx, Reg: r, Now: time.Now().UTC().Format("2006-01-02T15:04:05Z")}
}

// AsAdmin is c acting for the service itself (ports a router makes on
// networks its owner may not own, such as the external one).
func (c *Ctx) AsAdmin() *Ctx {
	cc := *c
	cc.Caller = &policy.Caller{Admin: true, Service: true, ProjectID: c.ProjectID, UserID: c.UserID, Roles: []string{"admin"}}
	return &cc
}

// NewID is a new resource id.
func NewID() string { return uuid.NewString() }

// Stamp sets the standard attributes of a new object.
func (c *Ctx) Stamp(o Object) {
	if _, ok := o["id"]; !ok {
		o["id"] = NewID()
	}
	o["created_at"] = c.Now
	o["updated_at"] = c.Now
	o["revision_number"] = float64(1)
	if _, ok := o["tags"]; !ok {
		o["tags"] = []any{}
	}
}

// Bump records an update of o's standard attributes.
func (c *Ctx) Bump(o Object) {
	o["updated_at"] = c.Now
	n, _ := o["revision_number"].(float64)
	o["revision_number"] = n + 1
}

// Put stores o (of resource r) as is.
func (c *Ctx) Put(r *schema.Resource, o Object) error {
	parent := ""
	if r.Parent != "" {
		parent, _ = o[r.Parent].(string)
	}
	return c.Tx.Put(r.Kind, parent, o)
}

// Touch bumps and stores an existing object (a parent whose children
// changed, an object changed on another's behalf).
func (c *Ctx) Touch(r *schema.Resource, o Object) error {
	c.Bump(o)
	return c.Put(r, o)
}

// Load reads one object for modification; missing gives r's 404.
func (c *Ctx) Load(r *schema.Resource, id string) (Object, error) {
	o, err := c.Tx.Get(r.Kind, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, r.NotFoundError(id)
	}
	return o, err
}

func (c *Ctx) handler(r *schema.Resource) *Handler {
	if h := c.Reg.handlers[r.Kind]; h != nil {
		return h
	}
	return &Handler{Res: r}
}

// CanSee reports whether the caller may see o.
func (c *Ctx) CanSee(r *schema.Resource, o Object) bool {
	if c.Admin {
		return true
	}
	h := c.handler(r)
	if h.AdminOnly {
		return false
	}
	if p, _ := o["project_id"].(string); p == c.ProjectID {
		return true
	}
	return h.Visible != nil && h.Visible(c, o)
}

// Get returns a resource the caller may see.
func (c *Ctx) Get(r *schema.Resource, id string) (Object, error) {
	o, err := c.Tx.Get(r.Kind, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, r.NotFoundError(id)
	}
	if err != nil {
		return nil, err
	}
	if !c.CanSee(r, o) {
		if h := c.handler(r); h != nil && h.OthersForbidden {
			return nil, fault.Forbidden("Policy does not allow this request to be performed.")
		}
		return nil, r.NotFoundError(id)
	}
	return o, nil
}

// List returns the resources matching f that the caller may see.
func (c *Ctx) List(r *schema.Resource, f store.Filter) ([]Object, error) {
	h := c.handler(r)
	if !c.Admin && h.AdminOnly {
		return nil, nil
	}
	if !c.Admin && h.List != nil {
		return h.List(c, f)
	}
	if !c.Admin && h.Visible == nil {
		if len(f.Projects) == 0 {
			f.Projects = []string{c.ProjectID}
		} else {
			mine := false
			for _, p := range f.Projects {
				mine = mine || p == c.ProjectID
			}
			if !mine {
				return nil, nil
			}
			f.Projects = []string{c.ProjectID}
		}
	}
	all, err := c.Tx.List(r.Kind, f)
	if err != nil {
		return nil, err
	}
	if c.Admin {
		return all, nil
	}
	out := all[:0:0]
	for _, o := range all {
		if c.CanSee(r, o) {
			out = append(out, o)
		}
	}
	return out, nil
}

// Present is the caller's view of o.
func (c *Ctx) Present(r *schema.Resource, o Object) Object {
	if h := c.handler(r); h.Present != nil {
		return h.Present(c, o)
	}
	return o
}

// Create makes one resource from a parsed request item.
func (c *Ctx) Create(r *schema.Resource, in Object) (Object, error) {
	h := c.handler(r)
	if h.Create == nil {
		return nil, fault.BadRequest("Resource %s does not support create", r.Member)
	}
	if h.AdminOnly && !c.Admin {
		return nil, fault.Forbidden("rule:create_%s is disallowed by policy", r.Member)
	}
	in["id"] = NewID()
	if err := c.Publish(r.Kind, Create, Before, &Payload{Res: r, Request: in}); err != nil {
		return nil, err
	}
	o, err := h.Create(c, in)
	if err != nil {
		return nil, err
	}
	Scrub(o)
	if err := c.Publish(r.Kind, Create, After, &Payload{Res: r, New: o, Request: in}); err != nil {
		return nil, err
	}
	return o, nil
}

// Scrub turns attributes a handler left unresolved into null.
func Scrub(o Object) {
	for k, v := range o {
		if schema.IsUnset(v) {
			o[k] = nil
		}
	}
}

// CheckRevision enforces If-Match: revision_number=N (want < 0: none).
func CheckRevision(o Object, want int64) error {
	if want < 0 {
		return nil
	}
	have, _ := o["revision_number"].(float64)
	if int64(have) != want {
		return fault.New(http.StatusPreconditionFailed, "RevisionNumberConstraintFailed",
			"Constrained to %d, but current revision is %d", want, int64(have))
	}
	return nil
}

// OwnerOnly returns the policy error when a visible resource is not the
// caller's to change.
func (c *Ctx) OwnerOnly(r *schema.Resource, o Object, action string) error {
	p, _ := o["project_id"].(string)
	if c.Owns(p) {
		return nil
	}
	return fault.Forbidden("rule:%s_%s is disallowed by policy", action, r.Member)
}

// getToUpdate reads resource id for the caller to change: a copy of it,
// provided the caller owns it.
func (c *Ctx) getToUpdate(r *schema.Resource, id string) (Object, error) {
	cur, err := c.Get(r, id)
	if err != nil {
		return nil, err
	}
	cur = schema.CloneObject(cur)
	if err := c.OwnerOnly(r, cur, "update"); err != nil {
		return nil, err
	}
	return cur, nil
}

// Update applies a parsed update to resource id (ifMatch < 0: no
// If-Match).
func (c *Ctx) Update(r *schema.Resource, id string, in Object, ifMatch int64) (Object, error) {
	h := c.handler(r)
	cur, err := c.getToUpdate(r, id)
	if err != nil {
		return nil, err
	}
	if err := CheckRevision(cur, ifMatch); err != nil {
		return nil, err
	}
	if h.Update == nil {
		return nil, fault.BadRequest("Resource %s does not support update", r.Member)
	}
	if err := c.Publish(r.Kind, Update, Before, &Payload{Res: r, Old: cur, Request: in}); err != nil {
		return nil, err
	}
	old := schema.CloneObject(cur)
	before := fmt.Sprint(cur)
	o, err := h.Update(c, cur, in)
	if err != nil {
		return nil, err
	}
	Scrub(o)
	if fmt.Sprint(o) != before {
		c.Bump(o)
	}
	if err := c.Put(r, o); err != nil {
		return nil, err
	}
	if err := c.Publish(r.Kind, Update, After, &Payload{Res: r, Old: old, New: o, Request: in}); err != nil {
		return nil, err
	}
	return o, nil
}

// Delete removes resource id (ifMatch < 0: no If-Match).
func (c *Ctx) Delete(r *schema.Resource, id string, ifMatch int64) error {
	h := c.handler(r)
	cur, err := c.Get(r, id)
	if err != nil {
		return err
	}
	if err := c.OwnerOnly(r, cur, "delete"); err != nil && (h.MayDelete == nil || !h.MayDelete(c, cur)) {
		return err
	}
	if err := CheckRevision(cur, ifMatch); err != nil {
		return err
	}
	if h.Delete == nil {
		return fault.BadRequest("Resource %s does not support delete", r.Member)
	}
	if err := c.Publish(r.Kind, Delete, Before, &Payload{Res: r, Old: cur}); err != nil {
		return err
	}
	if err := h.Delete(c, schema.CloneObject(cur)); err != nil {
		return err
	}
	return c.Publish(r.Kind, Delete, After, &Payload{Res: r, Old: cur})
}

// --- tags -------------------------------------------------------------------

func validTag(t any) (string, error) {
	s, ok := t.(string)
	if !ok || s == "" || len(s) > 255 {
		return "", fault.BadRequest("Invalid input for tags. Reason: '%s' is not a valid tag.", schema.Render(t))
	}
	for _, ch := range s {
		if ch == ',' {
			return "", fault.BadRequest("Invalid input for tags. Reason: '%s' contains ','.", s)
		}
	}
	return s, nil
}

const maxTags = 50

// SetTags changes the tags of a resource the caller owns: replace (all
// given), add one, remove one, or clear.
func (c *Ctx) SetTags(r *schema.Resource, id string, op string, tags []any) (Object, error) {
	cur, err := c.getToUpdate(r, id)
	if err != nil {
		return nil, err
	}
	have, _ := cur["tags"].([]any)
	var out []any
	switch op {
	case "replace":
		seen := map[string]bool{}
		for _, t := range tags {
			v, err := validTag(t)
			if err != nil {
				return nil, err
			}
			if !seen[v] {
				seen[v] = true
				out = append(out, v)
			}
		}
	case "add":
		v, err := validTag(tags[0])
		if err != nil {
			return nil, err
		}
		out = have
		found := false
		for _, t := range have {
			found = found || t == v
		}
		if !found {
			out = append(append([]any{}, have...), v)
		}
	case "remove":
		found := false
		for _, t := range have {
			if t == tags[0] {
				found = true
				continue
			}
			out = append(out, t)
		}
		if !found {
			return nil, fault.New(http.StatusNotFound, "TagNotFound", "Tag %s could not be found for %s %s.", schema.Render(tags[0]), r.Member, id)
		}
	case "clear":
	}
	if len(out) > maxTags {
		return nil, fault.BadRequest("The number of tags exceed the maximum %s.", strconv.Itoa(maxTags))
	}
	if out == nil {
		out = []any{}
	}
	cur["tags"] = out
	if err := c.Touch(r, cur); err != nil {
		return nil, err
	}
	return cur, nil
}

type queryKey struct{}

// WithQuery carries a request's query parameters (a delete's cascade=true)
// to the handlers.
func WithQuery(ctx context.Context, q url.Values) context.Context {
	return context.WithValue(ctx, queryKey{}, q)
}

// Query is the request's query parameters (none outside a request).
func (c *Ctx) Query() url.Values {
	q, _ := c.Context.Value(queryKey{}).(url.Values)
	return q
}
