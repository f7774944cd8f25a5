// Package plugin is the seam between Neutrino's generic machinery and its
// services. A service is a package that registers, in one place (its
// Register method), everything it brings: its API extensions, the
// resources it serves and their behaviour, nested paths and member actions
// (on its own resources or on others'), its subscriptions to other
// resources' events, extra HTTP routes, metrics, and its part of a host's
// desired state. The ordered list of services lives in package services;
// nothing else knows a service exists.
//
// Writes may run more than once (an optimistic PostgreSQL write runs again
// on conflict, see store.DB.Write): handlers and subscribers run inside one
// transaction and must be re-runnable, keeping no state outside it.
package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"neutrino/internal/fault"
	"neutrino/internal/hostapi"
	"neutrino/internal/policy"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// Object is one resource.
type Object = schema.Object

// Service is one package's contribution to the server.
type Service interface {
	// Name is the service's name: for the optional services, the name
	// --service-plugins selects it by (Neutron's service_plugins: router,
	// metering, ...).
	Name() string
	// Register declares what the service brings.
	Register(r *Registry) error
}

// Extension is one entry of /v2.0/extensions.
type Extension struct {
	Alias, Name, Description, Updated string
}

// Registry is what the enabled services registered: the server is built
// from it and nothing else.
type Registry struct {
	DB *store.DB

	services []Service
	exts     []Extension
	handlers map[string]*Handler // by kind
	order    []*schema.Resource  // as the API sees them (with added attributes)
	paths    map[string]*schema.Resource
	extra    map[string][]*schema.Attr // attributes services add, by kind
	nested   map[nestKey]*Nested
	children map[nestKey]*schema.Resource
	subs     map[eventKey][]Callback
	spans    []SpanFunc
	finish   []SpanFunc
	members  SpanFunc
	routes   []*Route
	metrics  []prometheus.Collector
	current  string              // the service registering
	steps    map[string][]string // migrations by service
}

// NewRegistry registers services, in order, over db.
func NewRegistry(db *store.DB, services ...Service) (*Registry, error) {
	r := &Registry{DB: db, handlers: map[string]*Handler{}, paths: map[string]*schema.Resource{},
		nested: map[nestKey]*Nested{}, children: map[nestKey]*schema.Resource{}, subs: map[eventKey][]Callback{}, extra: map[string][]*schema.Attr{},
		steps: map[string][]string{}}
	for _, s := range services {
		r.services = append(r.services, s)
		r.current = s.Name()
		if err := s.Register(r); err != nil {
			return nil, fmt.Errorf("service %s: %w", s.Name(), err)
		}
	}
	return r, nil
}

// Services lists the registered services, in order.
func (r *Registry) Services() []Service { return r.services }

// HasService reports whether a service of that name runs.
func (r *Registry) HasService(name string) bool {
	for _, s := range r.services {
		if s.Name() == name {
			return true
		}
	}
	return false
}

// Find returns the registered service of type T (the zero T and false
// when none is): how one service reaches the exported API of another it
// builds on (L3 on ML2's ports, for instance).
func Find[T Service](r *Registry) (T, bool) {
	for _, s := range r.services {
		if t, ok := s.(T); ok {
			return t, true
		}
	}
	var zero T
	return zero, false
}

// Extension declares API extensions.
func (r *Registry) Extension(e ...Extension) { r.exts = append(r.exts, e...) }

// Extensions lists the extensions of the registered services, by alias.
func (r *Registry) Extensions() []Extension {
	out := append([]Extension(nil), r.exts...)
	sort.Slice(out, func(i, j int) bool { return out[i].Alias < out[j].Alias })
	return out
}

// HasExtension reports whether an enabled service declared alias.
func (r *Registry) HasExtension(alias string) bool {
	for _, e := range r.exts {
		if e.Alias == alias {
			return true
		}
	}
	return false
}

// Resource serves a resource through the generic collection routes.
func (r *Registry) Resource(h *Handler) error {
	if h.Res == nil {
		return fmt.Errorf("handler without a resource")
	}
	if _, dup := r.handlers[h.Res.Kind]; dup {
		return fmt.Errorf("resource %s registered twice", h.Res.Member)
	}
	r.handlers[h.Res.Kind] = h
	r.order = append(r.order, h.Res)
	r.view(h.Res.Kind)
	return nil
}

// ExtendResource adds attributes to a resource of another service (as
// Neutron's extensions add attributes to networks and ports): the API
// accepts, filters and renders them only where the extending service
// runs. The extending service keeps them in the object by subscribing to
// the resource's Precommit create and update (the request is in the
// payload), which the resource's handler publishes.
func (r *Registry) ExtendResource(res *schema.Resource, attrs ...*schema.Attr) {
	r.extra[res.Kind] = append(r.extra[res.Kind], attrs...)
	r.view(res.Kind)
}

// view rebuilds the API's view of a registered resource kind: its
// description with the attributes services added.
func (r *Registry) view(kind string) {
	h := r.handlers[kind]
	if h == nil {
		return // extended before it is registered: done when it is
	}
	v := h.Res
	if extra := r.extra[kind]; len(extra) > 0 {
		v = h.Res.With(extra...)
	}
	for i, res := range r.order {
		if res.Kind == kind {
			r.order[i] = v
		}
	}
	if v.ChildOf != "" {
		r.children[nestKey{v.ChildOf, v.URLPath()}] = v
		return
	}
	r.paths[v.URLPath()] = v
}

// ChildOf returns the child collection name under res (nil if none).
func (r *Registry) ChildOf(res *schema.Resource, name string) *schema.Resource {
	return r.children[nestKey{res.Kind, name}]
}

// Handler returns the handler of a registered resource (nil if none).
func (r *Registry) Handler(res *schema.Resource) *Handler { return r.handlers[res.Kind] }

// Resources lists the registered resources in registration order, as the
// API sees them.
func (r *Registry) Resources() []*schema.Resource { return r.order }

// ByPath finds a registered resource by its collection path: the URL's
// segments after /v2.0/ (one, or two for "metering/metering-labels"). It
// returns how many segments it took.
func (r *Registry) ByPath(parts []string) (*schema.Resource, int) {
	if len(parts) > 1 {
		if res := r.paths[parts[0]+"/"+parts[1]]; res != nil {
			return res, 2
		}
	}
	if len(parts) > 0 {
		if res := r.paths[parts[0]]; res != nil {
			return res, 1
		}
	}
	return nil, 0
}

type nestKey struct{ kind, name string }

// Nested is a sub-collection of a resource's members:
// /<collection>/{id}/<name>[/{child}], such as an agent's dhcp-networks.
// Any service may nest under any registered resource.
type Nested struct {
	// List answers GET: the resource listed (for its JSON key and
	// rendering) and the objects.
	List func(c *Ctx, parentID string) (*schema.Resource, []Object, error)
	// Add answers POST with the request body (nil: not allowed).
	Add func(c *Ctx, parentID string, body map[string]any) error
	// Remove answers DELETE of one child (nil: not allowed).
	Remove func(c *Ctx, parentID, childID string) error
}

// Nest registers a nested collection under res.
func (r *Registry) Nest(res *schema.Resource, name string, n *Nested) {
	r.nested[nestKey{res.Kind, name}] = n
}

// NestedOf returns the nested collection name under res (nil if none).
func (r *Registry) NestedOf(res *schema.Resource, name string) *Nested {
	return r.nested[nestKey{res.Kind, name}]
}

// SpanFunc adds a service's part to a host's span. Options are the
// agent's request parameters (which services it runs).
type SpanFunc func(c *Ctx, host string, span *hostapi.Span, opts SpanOptions) error

// SpanOptions says what the requesting agent runs.
type SpanOptions struct {
	DHCP bool
}

// HostSpan registers a service's part of a host's desired state. Parts
// run in service order; finishers run after every part (ML2 completes the
// networks, subnets and peers of what the parts put in the span).
func (r *Registry) HostSpan(fn SpanFunc)       { r.spans = append(r.spans, fn) }
func (r *Registry) HostSpanFinish(fn SpanFunc) { r.finish = append(r.finish, fn) }

// HostSpanMembers registers what fills a span's remote groups' members
// (span.GroupMembers and span.Members) anew, for the groups already there:
// the security-group service's.
func (r *Registry) HostSpanMembers(fn SpanFunc) { r.members = fn }

// SpanMembers is a host's span old with the members of its remote groups
// as they are now, at the transaction's revision: the span after changes
// that can alter those members only (hostapi.Interest.MembersOnly). The
// rest of the span is old's, shared. ok is false when no service fills
// members.
func (r *Registry) SpanMembers(c *Ctx, host string, old *hostapi.Span, opts SpanOptions) (span *hostapi.Span, ok bool, err error) {
	if r.members == nil {
		return nil, false, nil
	}
	rev, err := c.Tx.ViewRevision()
	if err != nil {
		return nil, false, err
	}
	st := *old
	st.Revision, st.GroupMembers, st.Members = rev, make(map[string][]string, len(old.GroupMembers)), nil
	for gid := range old.GroupMembers {
		st.GroupMembers[gid] = nil
	}
	if err := r.members(c, host, &st, opts); err != nil {
		return nil, false, err
	}
	return &st, true, nil
}

// Span computes a host's desired state at the transaction's revision.
func (r *Registry) Span(c *Ctx, host string, opts SpanOptions) (*hostapi.Span, error) {
	rev, err := c.Tx.ViewRevision()
	if err != nil {
		return nil, err
	}
	span := &hostapi.Span{Revision: rev, GroupMembers: map[string][]string{}, Peers: []hostapi.Peer{},
		Ports: []Object{}, Networks: []Object{}, Subnets: []Object{}, SecurityGroups: []Object{}}
	for _, fn := range append(append([]SpanFunc(nil), r.spans...), r.finish...) {
		if err := fn(c, host, span, opts); err != nil {
			return nil, err
		}
	}
	return span, nil
}

// Route is an HTTP route outside the generic collections: Neutron paths
// such as /v2.0/quotas/..., or Neutrino's agent API under /neutrino/v1/
// (admins and services only).
type Route struct {
	Method string
	// Path is matched segment by segment after /v2.0/ (or /neutrino/v1/
	// when Internal): "{}" matches any one segment, a final "..." any rest.
	Path     string
	Internal bool
	// Endpoint names the endpoint serving the route: "" the network
	// endpoint (or, when Internal, the agents' API), otherwise another the
	// binary serves (KeyManagerEndpoint), matched after its version.
	Endpoint string
	Serve    func(req *Request) (status int, body any, err error)
}

// KeyManagerEndpoint is the key-manager endpoint (Barbican's v1 API).
const KeyManagerEndpoint = "key-manager"

// Raw is a route's answer that is not JSON: its bytes, as they are.
type Raw struct {
	ContentType string
	Data        []byte
}

// Request is what a Route is given.
type Request struct {
	*http.Request
	Reg    *Registry
	Caller *policy.Caller
	// Args are the segments matched by "{}" and "...", in order.
	Args []string
	// Body reads the request body, bounded in size and time.
	Body func() ([]byte, error)
	// Reply holds headers to send with the answer (Location).
	Reply http.Header
}

// Decode reads the request's JSON body into v (a malformed one is a 400).
func (r *Request) Decode(v any) error {
	body, err := r.Body()
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fault.BadRequest("Malformed request body")
	}
	return nil
}

// Route registers an HTTP route.
func (r *Registry) Route(rt *Route) { r.routes = append(r.routes, rt) }

// Match finds the route for a request to an endpoint (internal: under
// /neutrino/v1/); methodMismatch is true when the path matched a route of
// another method.
func (r *Registry) Match(method, endpoint string, internal bool, parts []string) (rt *Route, args []string, methodMismatch bool) {
	for _, cand := range r.routes {
		if cand.Internal != internal || cand.Endpoint != endpoint {
			continue
		}
		a, ok := matchPath(strings.Split(cand.Path, "/"), parts)
		if !ok {
			continue
		}
		if cand.Method != method {
			methodMismatch = true
			continue
		}
		return cand, a, false
	}
	return nil, nil, methodMismatch
}

func matchPath(pattern, parts []string) ([]string, bool) {
	var args []string
	for i, p := range pattern {
		if p == "..." {
			return append(args, strings.Join(parts[i:], "/")), true
		}
		if i >= len(parts) {
			return nil, false
		}
		switch p {
		case "{}":
			args = append(args, parts[i])
		case parts[i]:
		default:
			return nil, false
		}
	}
	return args, len(parts) == len(pattern)
}

// Migration adds the registering service's next migrations (SQL common
// to SQLite and PostgreSQL, statements separated by ";"): the tables it
// needs beside the resource documents. Append, never edit.
func (r *Registry) Migration(steps ...string) {
	r.steps[r.current] = append(r.steps[r.current], steps...)
}

// Migrate applies the services' migrations not yet applied.
func (r *Registry) Migrate(ctx context.Context) error {
	for _, s := range r.services {
		if steps := r.steps[s.Name()]; len(steps) > 0 {
			if _, err := r.DB.MigrateService(ctx, s.Name(), steps); err != nil {
				return err
			}
		}
	}
	return nil
}

// Collector exports a service's metrics on /metrics.
func (r *Registry) Collector(c prometheus.Collector) { r.metrics = append(r.metrics, c) }

// Collectors lists the registered collectors.
func (r *Registry) Collectors() []prometheus.Collector { return r.metrics }

// Read runs fn in a read transaction with a request context.
func (r *Registry) Read(ctx context.Context, fn func(c *Ctx) error) error {
	return r.DB.Read(ctx, func(tx *store.Tx) error { return fn(r.NewCtx(ctx, tx)) })
}

// ReadAtLeast is Read for a reader that needs revision rev and this
// server's commits, not the very latest (see store.DB.ReadAtLeast).
func (r *Registry) ReadAtLeast(ctx context.Context, rev int64, fn func(c *Ctx) error) error {
	return r.DB.ReadAtLeast(ctx, rev, func(tx *store.Tx) error { return fn(r.NewCtx(ctx, tx)) })
}

// Write runs fn in a write transaction with a request context (fn may run
// more than once: see the package comment).
func (r *Registry) Write(ctx context.Context, fn func(c *Ctx) error) (int64, error) {
	var last *Ctx
	rev, err := r.DB.Write(ctx, func(tx *store.Tx) error {
		last = r.NewCtx(ctx, tx)
		return fn(last)
	})
	if err == nil && last != nil {
		for _, f := range last.post {
			f()
		}
	}
	return rev, err
}
