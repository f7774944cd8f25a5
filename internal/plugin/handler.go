package plugin

import (
	"context"

	"neutrino/internal/policy"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// Handler is a resource's behaviour beyond its description (which
// schema.Resource holds): what the generic create, show, list, update and
// delete call, and who may see and change what.
type Handler struct {
	Res *schema.Resource

	// Create builds and stores a new object from a parsed request (with
	// its id already set) and returns it.
	Create func(c *Ctx, in Object) (Object, error)
	// Update returns cur (a copy the handler may change) with the parsed
	// request applied; the generic code stores it. nil: not updatable.
	Update func(c *Ctx, cur, in Object) (Object, error)
	// Delete removes cur and what goes with it.
	Delete func(c *Ctx, cur Object) error

	// Visible says whether a non-admin sees an object of another project
	// (nil: owner only).
	Visible func(c *Ctx, o Object) bool
	// List, when set, returns what a non-admin may see among f, instead
	// of filtering every project's objects with Visible.
	List func(c *Ctx, f store.Filter) ([]Object, error)
	// MayDelete lets a non-owner delete (the network owner another
	// project's port on its network, the group owner a rule).
	MayDelete func(c *Ctx, o Object) bool
	// Present returns the caller's view of o (computed or caller-dependent
	// attributes); it must not modify o, and returns o itself when
	// nothing differs.
	Present func(c *Ctx, o Object) Object
	// Prepare runs before any request on the collection, outside a
	// transaction (the default security group of the caller's project).
	Prepare func(ctx context.Context, reg *Registry, caller *policy.Caller) error
	// Actions are member actions: PUT /<collection>/{id}/<name>.
	Actions map[string]Action
	// Views are member documents: GET /<collection>/{id}/<name> (a load
	// balancer's status tree), answered as View returns them.
	Views map[string]View
	// Replace answers PUT on the collection itself (a child collection's
	// parent id in scope): Octavia's batch member update.
	Replace func(c *Ctx, scope string, body map[string]any) (any, error)

	// Quota names the quota counted on create ("" for none).
	Quota string
	// AdminOnly: only admins see or change these (metering).
	AdminOnly bool
	// OthersForbidden answers another project's object with 403, not 404
	// (Octavia's policy).
	OthersForbidden bool
}

// Action is a member action, run in a write transaction; its answer is
// the response body.
type Action func(c *Ctx, id string, body map[string]any) (any, error)

// Accepted is what an action or a collection update returns to answer
// 202 with no body (Octavia's failover, its batch member update).
type Accepted struct{}

// View answers GET /<collection>/{id}/<name>: the body, in a read
// transaction.
type View func(c *Ctx, id string) (any, error)
