package core

import (
	"errors"
	"net/http"
	"sort"
	"strconv"

	"neutrino/internal/fault"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// QuotaResources are the resources with quotas, in display order.
var QuotaResources = []string{"network", "subnet", "port", "router", "floatingip", "security_group", "security_group_rule", "subnetpool", "rbac_policy"}

// quotaKinds maps a quota name to the store kind it counts.
var quotaKinds = map[string]string{
	"network": "network", "subnet": "subnet", "port": "port", "router": "router", "floatingip": "floatingip",
	"security_group": "security_group", "security_group_rule": "security_group_rule", "subnetpool": "subnetpool",
	"rbac_policy": "rbac_policy",
}

// quotaKind stores a project's quota overrides as one object (id = the
// project), so they are read from the view like every resource.
const quotaKind = "quota"

func (c *Ctx) quotaLimit(project, resource string) (int, error) {
	o, err := c.Tx.Get(quotaKind, project)
	if err == nil {
		if v, ok := o[resource].(float64); ok {
			return int(v), nil
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return 0, err
	}
	return c.S.Config.DefaultQuotas[resource], nil
}

func (c *Ctx) checkQuota(resource, kind, project string, n int) error {
	limit, err := c.quotaLimit(project, resource)
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

// Quotas returns a project's effective limits.
func (c *Ctx) Quotas(project string) (map[string]any, error) {
	out := map[string]any{}
	for _, r := range QuotaResources {
		l, err := c.quotaLimit(project, r)
		if err != nil {
			return nil, err
		}
		out[r] = float64(l)
	}
	return out, nil
}

// DefaultQuotas returns the configured defaults.
func (s *Service) DefaultQuotas() map[string]any {
	out := map[string]any{}
	for _, r := range QuotaResources {
		out[r] = float64(s.Config.DefaultQuotas[r])
	}
	return out
}

// QuotaDetails returns used/limit/reserved per resource.
func (c *Ctx) QuotaDetails(project string) (map[string]any, error) {
	out := map[string]any{}
	for _, r := range QuotaResources {
		l, err := c.quotaLimit(project, r)
		if err != nil {
			return nil, err
		}
		used, err := c.Tx.Count(quotaKinds[r], project)
		if err != nil {
			return nil, err
		}
		out[r] = map[string]any{"limit": float64(l), "used": float64(used), "reserved": float64(0)}
	}
	return out, nil
}

// SetQuotas validates and stores limits for project.
func (c *Ctx) SetQuotas(project string, in map[string]any) (map[string]any, error) {
	known := map[string]bool{}
	for _, r := range QuotaResources {
		known[r] = true
	}
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	o, err := c.Tx.Get(quotaKind, project)
	if errors.Is(err, store.ErrNotFound) {
		o, err = Object{"id": project, "project_id": project}, nil
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
			used, err := c.Tx.Count(quotaKinds[k], project)
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
	return c.Quotas(project)
}

// ResetQuotas returns project to the defaults; a project without limits of
// its own is a 404, as in Neutron.
func (c *Ctx) ResetQuotas(project string) error {
	err := c.Tx.Delete(quotaKind, project)
	if errors.Is(err, store.ErrNotFound) {
		return fault.New(http.StatusNotFound, "TenantQuotaNotFound", "Quota for tenant %s could not be found.", project)
	}
	return err
}

// QuotaProjects lists the projects with limits set.
func (c *Ctx) QuotaProjects() ([]string, error) {
	objs, err := c.Tx.List(quotaKind, store.Filter{})
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(objs))
	for _, o := range objs {
		out = append(out, str(o, "id"))
	}
	return out, nil
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

// SetTags changes the tags of a resource the caller owns: replace (all given),
// add one, remove one, or clear.
func (s *Service) SetTags(c *Ctx, r *schema.Resource, id string, op string, tags []any) (Object, error) {
	cur, err := s.Get(c, r, id)
	if err != nil {
		return nil, err
	}
	cur = schema.CloneObject(cur)
	if err := ownerOnly(c, r, cur, "update"); err != nil {
		return nil, err
	}
	have := list(cur, "tags")
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
	cur["tags"] = orEmpty(out)
	if err := c.touch(r, cur); err != nil {
		return nil, err
	}
	return cur, nil
}
