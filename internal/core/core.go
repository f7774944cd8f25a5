// Package core is the core plugin: networks, subnets, ports, IPAM, segments,
// security groups, subnet pools, RBAC, quotas and tags. It runs inside store
// transactions handed to it by the API layer, so a request's whole effect
// (including bulk creates) commits or rolls back as one.
package core

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"

	"neutrino/internal/fault"
	"neutrino/internal/policy"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// Object is one resource.
type Object = schema.Object

// Service is the core plugin.
type Service struct {
	DB     *store.DB
	Config Config
	types  map[string]TypeDriver
}

// New builds the service over db.
func New(db *store.DB, cfg Config) (*Service, error) {
	cfg.fill()
	s := &Service{DB: db, Config: cfg}
	if err := s.initTypes(); err != nil {
		return nil, err
	}
	return s, nil
}

// Ctx is one request's view: who calls, inside which transaction.
type Ctx struct {
	context.Context
	*policy.Caller
	Tx  *store.Tx
	S   *Service
	Now string
}

// NewCtx binds a request context and transaction.
func (s *Service) NewCtx(ctx context.Context, tx *store.Tx) *Ctx {
	return &Ctx{Context: ctx, Caller: policy.From(ctx), Tx: tx, S: s, Now: time.Now().UTC().Format("2006-01-02T15:04:05Z")}
}

// kindHandler is what each resource kind implements beyond the generic
// create/update/delete bookkeeping.
type kindHandler struct {
	create  func(c *Ctx, in Object) (Object, error)
	update  func(c *Ctx, cur, in Object) (Object, error)
	delete  func(c *Ctx, cur Object) error
	visible func(c *Ctx, o Object) bool // nil: owner (or admin) only
	// list, when set, returns what a non-admin may see among f (instead of
	// scanning every project's objects with visible).
	list func(c *Ctx, f store.Filter) ([]Object, error)
	// quota names the quota resource counted on create ("" for none).
	quota string
	// adminOnly: only admins see or change these (metering).
	adminOnly bool
}

func (s *Service) handler(r *schema.Resource) *kindHandler {
	switch r {
	case schema.Network:
		return &kindHandler{create: createNetwork, update: updateNetwork, delete: deleteNetwork, visible: networkVisible, quota: "network"}
	case schema.Subnet:
		return &kindHandler{create: createSubnet, update: updateSubnet, delete: deleteSubnet, visible: subnetVisible, quota: "subnet"}
	case schema.Port:
		return &kindHandler{create: createPort, update: updatePort, delete: deletePort, visible: portVisible, list: listPorts, quota: "port"}
	case schema.SecurityGroup:
		return &kindHandler{create: createSecurityGroup, update: updateSecurityGroup, delete: deleteSecurityGroup, visible: securityGroupVisible, quota: "security_group"}
	case schema.SecurityGroupRule:
		return &kindHandler{create: createRule, delete: deleteRule, visible: ruleVisible, quota: "security_group_rule"}
	case schema.SubnetPool:
		return &kindHandler{create: createSubnetPool, update: updateSubnetPool, delete: deleteSubnetPool, visible: subnetPoolVisible, quota: "subnetpool"}
	case schema.RBACPolicy:
		return &kindHandler{create: createRBAC, update: updateRBAC, delete: deleteRBAC, visible: rbacVisible, quota: "rbac_policy"}
	case schema.Agent:
		return &kindHandler{create: createAgent, update: updateAgent, delete: deleteAgent, visible: agentVisible}
	case schema.Router:
		return &kindHandler{create: createRouter, update: updateRouter, delete: deleteRouter, quota: "router"}
	case schema.FloatingIP:
		return &kindHandler{create: createFloatingIP, update: updateFloatingIP, delete: deleteFloatingIP, quota: "floatingip"}
	case schema.MeteringLabel:
		return &kindHandler{create: createMeteringLabel, delete: deleteMeteringLabel, adminOnly: true}
	case schema.MeteringLabelRule:
		return &kindHandler{create: createMeteringRule, delete: deleteMeteringRule, adminOnly: true}
	}
	return nil
}

// notFound is the 404 for a resource kind.
func notFound(r *schema.Resource, id string) error {
	switch r {
	case schema.Network:
		return fault.NotFound("Network", "Network", id)
	case schema.Subnet:
		return fault.NotFound("Subnet", "Subnet", id)
	case schema.Port:
		return fault.NotFound("Port", "Port", id)
	case schema.SecurityGroup:
		return fault.New(http.StatusNotFound, "SecurityGroupNotFound", "Security group %s does not exist", id)
	case schema.SecurityGroupRule:
		return fault.New(http.StatusNotFound, "SecurityGroupRuleNotFound", "Security group rule %s does not exist", id)
	case schema.SubnetPool:
		return fault.New(http.StatusNotFound, "SubnetPoolNotFound", "Subnet pool %s could not be found.", id)
	case schema.RBACPolicy:
		return fault.New(http.StatusNotFound, "RbacPolicyNotFound", "RBAC policy of type %s with ID %s not found", "", id)
	case schema.Agent:
		return fault.New(http.StatusNotFound, "AgentNotFound", "Agent %s could not be found.", id)
	case schema.Router:
		return fault.New(http.StatusNotFound, "RouterNotFound", "Router %s could not be found", id)
	case schema.FloatingIP:
		return fault.New(http.StatusNotFound, "FloatingIPNotFound", "Floating IP %s could not be found", id)
	case schema.MeteringLabel:
		return fault.New(http.StatusNotFound, "MeteringLabelNotFound", "Metering label '%s' does not exist.", id)
	case schema.MeteringLabelRule:
		return fault.New(http.StatusNotFound, "MeteringLabelRuleNotFound", "Metering label rule '%s' does not exist.", id)
	}
	return fault.New(http.StatusNotFound, "NotFound", "%s %s could not be found.", r.Member, id)
}

// stamp sets the standard attributes of a new object.
func (c *Ctx) stamp(o Object) {
	if _, ok := o["id"]; !ok {
		o["id"] = uuid.NewString()
	}
	o["created_at"] = c.Now
	o["updated_at"] = c.Now
	o["revision_number"] = float64(1)
	if _, ok := o["tags"]; !ok {
		o["tags"] = []any{}
	}
}

// bump records an update of o's standard attributes.
func (c *Ctx) bump(o Object) {
	o["updated_at"] = c.Now
	n, _ := o["revision_number"].(float64)
	o["revision_number"] = n + 1
}

// put stores o (of resource r) as is.
func (c *Ctx) put(r *schema.Resource, o Object) error {
	parent := ""
	if r.Parent != "" {
		parent, _ = o[r.Parent].(string)
	}
	return c.Tx.Put(r.Kind, parent, o)
}

// touch bumps and stores an existing object (a parent whose children changed).
func (c *Ctx) touch(r *schema.Resource, o Object) error {
	c.bump(o)
	return c.put(r, o)
}

// load reads one object for modification; missing gives r's 404.
func (c *Ctx) load(r *schema.Resource, id string) (Object, error) {
	o, err := c.Tx.Get(r.Kind, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound(r, id)
	}
	return o, err
}

func (c *Ctx) canSee(r *schema.Resource, h *kindHandler, o Object) bool {
	if c.Admin {
		return true
	}
	if h.adminOnly {
		return false
	}
	p, _ := o["project_id"].(string)
	if p == c.ProjectID {
		return true
	}
	return h.visible != nil && h.visible(c, o)
}

// Get returns a resource the caller may see.
func (s *Service) Get(c *Ctx, r *schema.Resource, id string) (Object, error) {
	o, err := c.Tx.Get(r.Kind, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound(r, id)
	}
	if err != nil {
		return nil, err
	}
	if !c.canSee(r, s.handler(r), o) {
		return nil, notFound(r, id)
	}
	return o, nil
}

// List returns the resources matching f that the caller may see.
func (s *Service) List(c *Ctx, r *schema.Resource, f store.Filter) ([]Object, error) {
	h := s.handler(r)
	if !c.Admin && h.adminOnly {
		return nil, nil
	}
	if !c.Admin && h.list != nil {
		return h.list(c, f)
	}
	if !c.Admin && h.visible == nil {
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
		if c.canSee(r, h, o) {
			out = append(out, o)
		}
	}
	return out, nil
}

// Create makes one resource from a parsed request item.
func (s *Service) Create(c *Ctx, r *schema.Resource, in Object) (Object, error) {
	h := s.handler(r)
	if h.adminOnly && !c.Admin {
		return nil, fault.Forbidden("rule:create_%s is disallowed by policy", r.Member)
	}
	project, _ := in["project_id"].(string)
	if h.quota != "" && project != "" {
		if err := c.checkQuota(h.quota, r.Kind, project, 1); err != nil {
			return nil, err
		}
	}
	in["id"] = uuid.NewString()
	o, err := h.create(c, in)
	if err != nil {
		return nil, err
	}
	scrub(o)
	return o, nil
}

// scrub turns attributes a handler left unresolved into null.
func scrub(o Object) {
	for k, v := range o {
		if schema.IsUnset(v) {
			o[k] = nil
		}
	}
}

// CheckRevision enforces If-Match: revision_number=N.
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

// ownerOnly returns the policy error when a visible resource is not the
// caller's to change.
func ownerOnly(c *Ctx, r *schema.Resource, o Object, action string) error {
	p, _ := o["project_id"].(string)
	if c.Owns(p) {
		return nil
	}
	return fault.Forbidden("rule:%s_%s is disallowed by policy", action, r.Member)
}

// Update applies a parsed update to resource id. ifMatch < 0 means none.
func (s *Service) Update(c *Ctx, r *schema.Resource, id string, in Object, ifMatch int64) (Object, error) {
	h := s.handler(r)
	cur, err := s.Get(c, r, id)
	if err != nil {
		return nil, err
	}
	cur = schema.CloneObject(cur)
	if err := ownerOnly(c, r, cur, "update"); err != nil {
		return nil, err
	}
	if err := CheckRevision(cur, ifMatch); err != nil {
		return nil, err
	}
	if h.update == nil {
		return nil, fault.BadRequest("Resource %s does not support update", r.Member)
	}
	before := fmt.Sprint(cur)
	o, err := h.update(c, cur, in)
	if err != nil {
		return nil, err
	}
	scrub(o)
	if fmt.Sprint(o) != before {
		c.bump(o)
	}
	if err := c.put(r, o); err != nil {
		return nil, err
	}
	return o, nil
}

// Delete removes resource id. ifMatch < 0 means none.
func (s *Service) Delete(c *Ctx, r *schema.Resource, id string, ifMatch int64) error {
	h := s.handler(r)
	cur, err := s.Get(c, r, id)
	if err != nil {
		return err
	}
	if err := ownerOnly(c, r, cur, "delete"); err != nil && !(r == schema.SecurityGroupRule && ruleGroupOwner(c, cur)) &&
		!(r == schema.Port && portVisible(c, cur)) {
		return err
	}
	if err := CheckRevision(cur, ifMatch); err != nil {
		return err
	}
	if err := h.delete(c, schema.CloneObject(cur)); err != nil {
		return err
	}
	return nil
}

// merge copies the given attributes of in onto cur.
func merge(cur, in Object) Object {
	for k, v := range in {
		cur[k] = v
	}
	return cur
}

func str(o Object, k string) string { s, _ := o[k].(string); return s }
func boolean(o Object, k string) bool {
	b, _ := o[k].(bool)
	return b
}
func list(o Object, k string) []any { l, _ := o[k].([]any); return l }
