// Package quota is the quotas extension.
package quota

import (
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strings"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// Service is the quotas extension: a limit per project on the resources
// whose handlers name a quota, checked when one is created.
type Service struct {
	defaults map[string]int
	// resources are the quota names in registration order, with the
	// store kind each counts.
	resources []string
	kinds     map[string]string
}

// New returns the quotas extension with default limits by quota name (-1
// is unlimited); Neutron's defaults fill what is not given.
func New(defaults map[string]int) *Service {
	d := map[string]int{}
	for k, v := range map[string]int{"network": 100, "subnet": 100, "port": 500, "router": 10, "floatingip": 50,
		"security_group": 10, "security_group_rule": 100, "subnetpool": -1, "rbac_policy": 10} {
		d[k] = v
	}
	for k, v := range defaults {
		d[k] = v
	}
	return &Service{defaults: d, kinds: map[string]string{}}
}

// Name implements plugin.Service.
func (*Service) Name() string { return "quotas" }

// Register implements plugin.Service. It comes after the services whose
// resources have quotas, so it sees their handlers.
func (s *Service) Register(r *plugin.Registry) error {
	r.Extension(
		plugin.Extension{Alias: "quotas", Name: "Quota management support", Description: "Expose functions for quotas management per project", Updated: "2012-07-29T10:00:00-00:00"},
		plugin.Extension{Alias: "quota_details", Name: "Quota details management support", Description: "Expose functions for quotas usage statistics per project", Updated: "2017-02-10T10:00:00-00:00"},
		plugin.Extension{Alias: "quota-check-limit", Name: "Quota engine limit check", Description: "Support for checking the resource usage before applying a new quota limit", Updated: "2021-09-08T16:00:00-00:00"},
	)
	for _, res := range r.Resources() {
		if q := r.Handler(res).Quota; q != "" {
			s.resources = append(s.resources, q)
			s.kinds[q] = res.Kind
		}
	}
	r.Subscribe("*", plugin.Create, plugin.Before, func(c *plugin.Ctx, p *plugin.Payload) error {
		h := c.Reg.Handler(p.Res)
		project, _ := p.Request["project_id"].(string)
		if h == nil || h.Quota == "" || project == "" {
			return nil
		}
		return s.check(c, h.Quota, project, 1)
	})
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPost} {
		r.Route(&plugin.Route{Method: m, Path: "quotas/...", Serve: s.serve})
		r.Route(&plugin.Route{Method: m, Path: "quotas", Serve: s.serve})
	}
	return nil
}

func (s *Service) limit(c *plugin.Ctx, project, resource string) (int, error) {
	o, err := c.Tx.Get(quotaKind, project)
	if err == nil {
		if v, ok := o[resource].(float64); ok {
			return int(v), nil
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return 0, err
	}
	return s.defaults[resource], nil
}

func (s *Service) check(c *plugin.Ctx, resource, project string, n int) error {
	kind := s.kinds[resource]
	limit, err := s.limit(c, project, resource)
	if err != nil || limit < 0 {
		return err
	}
	used, err := c.Tx.Count(kind, project)
	if err != nil {
		return err
	}
	if used+n > limit {
		return fault.Conflict("OverQuota", "Quota exceeded for resources: ['%s'].", resource)
	}
	return nil
}

// perResource maps each quota resource to what value makes of project's
// limit on it.
func (s *Service) perResource(c *plugin.Ctx, project string, value func(resource string, limit int) (any, error)) (map[string]any, error) {
	out := map[string]any{}
	for _, r := range s.resources {
		l, err := s.limit(c, project, r)
		if err != nil {
			return nil, err
		}
		if out[r], err = value(r, l); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// quotas returns a project's effective limits.
func (s *Service) quotas(c *plugin.Ctx, project string) (map[string]any, error) {
	return s.perResource(c, project, func(_ string, limit int) (any, error) { return float64(limit), nil })
}

// defaultQuotas returns the configured defaults.
func (s *Service) defaultQuotas() map[string]any {
	out := map[string]any{}
	for _, r := range s.resources {
		out[r] = float64(s.defaults[r])
	}
	return out
}

// details returns used/limit/reserved per resource.
func (s *Service) details(c *plugin.Ctx, project string) (map[string]any, error) {
	return s.perResource(c, project, func(r string, limit int) (any, error) {
		used, err := c.Tx.Count(s.kinds[r], project)
		if err != nil {
			return nil, err
		}
		return map[string]any{"limit": float64(limit), "used": float64(used), "reserved": float64(0)}, nil
	})
}

// set validates and stores limits for project.
func (s *Service) set(c *plugin.Ctx, project string, in map[string]any) (map[string]any, error) {
	known := map[string]bool{}
	for _, r := range s.resources {
		known[r] = true
	}
	keys := slices.Sorted(maps.Keys(in))
	o, err := c.Tx.Get(quotaKind, project)
	if errors.Is(err, store.ErrNotFound) {
		o, err = plugin.Object{"id": project, "project_id": project}, nil
	}
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if k == "check_limit" {
			continue
		}
		if !known[k] {
			return nil, fault.BadRequest("Unrecognized attribute(s) '%s'", k)
		}
		v, err := schema.Int(k, in[k])
		if err != nil {
			return nil, fault.BadRequest("Invalid input for %s. Reason: '%s' is not an integer.", k, schema.Render(in[k]))
		}
		n := int64(v.(float64))
		if n < -1 {
			return nil, fault.BadRequest("Invalid input for %s. Reason: '%d' is smaller than minimum value -1.", k, n)
		}
		if check, _ := in["check_limit"].(bool); check && n >= 0 {
			used, err := c.Tx.Count(s.kinds[k], project)
			if err != nil {
				return nil, err
			}
			if int64(used) > n {
				return nil, fault.BadRequest("Quota limit %d for %s must be greater than or equal to already used %d", n, k, used)
			}
		}
		o[k] = float64(n)
	}
	if err := c.Tx.Put(quotaKind, "", o); err != nil {
		return nil, err
	}
	return s.quotas(c, project)
}

// reset returns project to the defaults; a project without limits of
// its own is a 404, as in Neutron.
func (s *Service) reset(c *plugin.Ctx, project string) error {
	err := c.Tx.Delete(quotaKind, project)
	if errors.Is(err, store.ErrNotFound) {
		return fault.New(http.StatusNotFound, "TenantQuotaNotFound", "Quota for tenant %s could not be found.", project)
	}
	return err
}

// projects lists the projects with limits set.
func (s *Service) projects(c *plugin.Ctx) ([]string, error) {
	objs, err := c.Tx.List(quotaKind, store.Filter{})
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(objs))
	for _, o := range objs {
		out = append(out, attr.Str(o, "id"))
	}
	return out, nil
}

// quotaKind stores a project's quota overrides as one object (id = the
// project), so they are read from the view like every resource.
const quotaKind = "quota"

// serve answers /v2.0/quotas[/<project>[/default|/details]].
func (s *Service) serve(req *plugin.Request) (int, any, error) {
	c := req.Caller
	var rest []string
	if len(req.Args) > 0 && req.Args[0] != "" {
		rest = strings.Split(req.Args[0], "/")
	}
	method := req.Method
	if len(rest) == 0 {
		if method != http.MethodGet {
			return 0, nil, fault.MethodNotAllowed()
		}
		if !c.Admin {
			return 0, nil, fault.Forbidden("rule:get_quota is disallowed by policy")
		}
		out := []any{}
		err := req.Reg.Read(req.Context(), func(cc *plugin.Ctx) error {
			projects, err := s.projects(cc)
			if err != nil {
				return err
			}
			for _, p := range projects {
				q, err := s.quotas(cc, p)
				if err != nil {
					return err
				}
				q["project_id"], q["tenant_id"] = p, p
				out = append(out, q)
			}
			return nil
		})
		return http.StatusOK, map[string]any{"quotas": out}, err
	}
	project := rest[0]
	if project == "tenant" || project == "project" {
		return http.StatusOK, map[string]any{project: map[string]any{project + "_id": c.ProjectID}}, nil
	}
	if project != c.ProjectID && !c.Admin {
		return 0, nil, fault.Forbidden("rule:get_quota is disallowed by policy")
	}
	sub := ""
	if len(rest) > 1 {
		sub = rest[1]
	}
	if len(rest) > 2 || sub != "" && sub != "default" && sub != "details" {
		return 0, nil, fault.New(http.StatusNotFound, "HTTPNotFound", "The resource could not be found.")
	}
	switch {
	case method == http.MethodGet && sub == "default":
		return http.StatusOK, map[string]any{"quota": s.defaultQuotas()}, nil
	case method == http.MethodGet:
		var q map[string]any
		err := req.Reg.Read(req.Context(), func(cc *plugin.Ctx) error {
			var err error
			if sub == "details" {
				q, err = s.details(cc, project)
			} else {
				q, err = s.quotas(cc, project)
			}
			return err
		})
		return http.StatusOK, map[string]any{"quota": q}, err
	case method == http.MethodPut && sub == "":
		if !c.Admin {
			return 0, nil, fault.Forbidden("rule:update_quota is disallowed by policy")
		}
		body, err := req.Body()
		if err != nil {
			return 0, nil, err
		}
		in, err := decodeMember(body, "quota")
		if err != nil {
			return 0, nil, err
		}
		var q map[string]any
		_, err = req.Reg.Write(req.Context(), func(cc *plugin.Ctx) error {
			var err error
			q, err = s.set(cc, project, in)
			return err
		})
		return http.StatusOK, map[string]any{"quota": q}, err
	case method == http.MethodDelete && sub == "":
		if !c.Admin {
			return 0, nil, fault.Forbidden("rule:delete_quota is disallowed by policy")
		}
		_, err := req.Reg.Write(req.Context(), func(cc *plugin.Ctx) error { return s.reset(cc, project) })
		return http.StatusNoContent, nil, err
	}
	return 0, nil, fault.MethodNotAllowed()
}

// decodeMember decodes {"key": {...}}.
func decodeMember(body []byte, key string) (map[string]any, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fault.BadRequest("Malformed request body")
	}
	raw, ok := doc[key]
	if !ok {
		return nil, fault.BadRequest("Unable to find '%s' in request body", key)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, fault.BadRequest("Malformed request body")
	}
	return m, nil
}
