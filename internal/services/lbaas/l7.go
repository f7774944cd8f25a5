package lbaas

import (
	"net/http"
	"net/url"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// L7 policies (a listener's, in order of position) and their rules (all
// of a policy's must match): reject the request, redirect it to a URL or
// a prefix, or send it to another pool of the load balancer.
var (
	L7Policy = define("l7policy", "l7policies", "lbaas/l7policies", "listener_id", true,
		schema.Sorted(schema.Req("listener_id", schema.UUID)),
		schema.Sorted(schema.Req("action", schema.OneOf("REDIRECT_TO_POOL", "REDIRECT_TO_URL", "REDIRECT_PREFIX", "REJECT"))),
		schema.Sorted(schema.RW("position", schema.IntRange(1, 2147483647), nil)),
		schema.Sorted(schema.RW("redirect_pool_id", schema.UUIDOrNull, nil)),
		schema.Sorted(schema.RW("redirect_url", schema.StringOrNull(255), nil)),
		schema.Sorted(schema.RW("redirect_prefix", schema.StringOrNull(255), nil)),
		schema.Sorted(schema.RW("redirect_http_code", schema.OrNull(schema.IntRange(301, 308)), nil)),
		schema.NoFilter(schema.RO("rules")),
	)
	L7Rule = func() *schema.Resource {
		r := schema.Index(&schema.Resource{Member: "rule", Collection: "rules", Path: "rules", Kind: "lb_l7rule", Parent: "l7policy_id",
			ChildOf: "lb_l7policy", Attrs: append(commonNoName(),
				schema.Sorted(schema.Req("type", schema.OneOf("HOST_NAME", "PATH", "FILE_TYPE", "HEADER", "COOKIE"))),
				schema.Sorted(schema.Req("compare_type", schema.OneOf("REGEX", "STARTS_WITH", "ENDS_WITH", "CONTAINS", "EQUAL_TO"))),
				schema.Sorted(schema.RW("key", schema.StringOrNull(255), nil)),
				schema.Sorted(schema.Req("value", schema.String(255))),
				schema.Sorted(schema.RW("invert", schema.Bool, false)),
				schema.Hidden(schema.RO("l7policy_id")))})
		return r
	}()
)

// commonNoName are the common attributes without a name (rules have none).
func commonNoName() []*schema.Attr {
	var out []*schema.Attr
	for _, a := range common(false) {
		if a.Name != "name" {
			out = append(out, a)
		}
	}
	return out
}

func init() {
	L7Policy.NotFound = notFound("L7 Policy")
	L7Rule.NotFound = notFound("L7 Rule")
}

func (s *Service) createL7Policy(c *plugin.Ctx, in plugin.Object) (plugin.Object, error) {
	l, err := c.Get(Listener, attr.Str(in, "listener_id"))
	if err != nil {
		return nil, err
	}
	if p := attr.Str(l, "protocol"); p != "HTTP" && p != "TERMINATED_HTTPS" {
		return nil, errNoL7
	}
	if err := checkL7Action(c, l, in); err != nil {
		return nil, err
	}
	lb, err := loadBalancer(c, attr.Str(l, "loadbalancer_id"))
	if err != nil {
		return nil, err
	}
	o := plugin.Object{}
	for _, a := range L7Policy.Attrs {
		if a.Post {
			o[a.Name] = in[a.Name]
		}
	}
	policies, err := c.Tx.List(L7Policy.Kind, store.Filter{Parent: attr.Str(l, "id")})
	if err != nil {
		return nil, err
	}
	if o["position"] == nil || attr.Num(o["position"], 0) > float64(len(policies)+1) {
		o["position"] = float64(len(policies) + 1)
	}
	// Those at or after its position move down one.
	for _, p := range policies {
		if attr.Num(p["position"], 0) >= attr.Num(o["position"], 0) {
			p = schema.CloneObject(p)
			p["position"] = attr.Num(p["position"], 0) + 1
			if err := c.Put(L7Policy, p); err != nil {
				return nil, err
			}
		}
	}
	return child(c, L7Policy, lb, in, o)
}

// checkL7Action checks what a policy's action needs: a pool of the same
// load balancer, an absolute URL, a prefix.
func checkL7Action(c *plugin.Ctx, listener, in plugin.Object) error {
	switch attr.Str(in, "action") {
	case "REDIRECT_TO_POOL":
		p, err := c.Tx.Get(Pool.Kind, attr.Str(in, "redirect_pool_id"))
		if err != nil || attr.Str(p, "loadbalancer_id") != attr.Str(listener, "loadbalancer_id") {
			return invalid("redirect_pool_id must be a pool of the listener's load balancer.")
		}
	case "REDIRECT_TO_URL", "REDIRECT_PREFIX":
		k := map[string]string{"REDIRECT_TO_URL": "redirect_url", "REDIRECT_PREFIX": "redirect_prefix"}[attr.Str(in, "action")]
		u, err := url.Parse(attr.Str(in, k))
		if err != nil || u.Scheme == "" || u.Host == "" {
			return invalid("%s must be an absolute URL.", k)
		}
		if in["redirect_http_code"] == nil {
			in["redirect_http_code"] = float64(302)
		}
	}
	return nil
}

func (s *Service) createL7Rule(c *plugin.Ctx, in plugin.Object) (plugin.Object, error) {
	p, err := c.Get(L7Policy, attr.Str(in, "l7policy_id"))
	if err != nil {
		return nil, err
	}
	if t := attr.Str(in, "type"); (t == "HEADER" || t == "COOKIE") && attr.Str(in, "key") == "" {
		return nil, invalid("A key is required for %s rules.", t)
	}
	l, err := c.Tx.Get(Listener.Kind, attr.Str(p, "listener_id"))
	if err != nil {
		return nil, err
	}
	lb, err := loadBalancer(c, attr.Str(l, "loadbalancer_id"))
	if err != nil {
		return nil, err
	}
	o := plugin.Object{"l7policy_id": p["id"]}
	for _, a := range L7Rule.Attrs {
		if a.Post {
			o[a.Name] = in[a.Name]
		}
	}
	return child(c, L7Rule, lb, in, o)
}

func presentL7Policy(c *plugin.Ctx, o plugin.Object) plugin.Object {
	cp := clone(o, 1)
	rs, _ := c.Tx.List(L7Rule.Kind, store.Filter{Parent: attr.Str(o, "id")})
	cp["rules"] = ids(rs)
	return cp
}

func presentL7Rule(c *plugin.Ctx, o plugin.Object) plugin.Object { return clone(o, 0) }

// l7Under lists a load balancer's L7 policies, or their rules.
func l7Under(c *plugin.Ctx, res *schema.Resource, lbID string) ([]plugin.Object, error) {
	ls, err := c.Tx.List(Listener.Kind, store.Filter{Parent: lbID})
	if err != nil {
		return nil, err
	}
	var out []plugin.Object
	for _, l := range ls {
		ps, err := c.Tx.List(L7Policy.Kind, store.Filter{Parent: attr.Str(l, "id")})
		if err != nil {
			return nil, err
		}
		if res == L7Policy {
			out = append(out, ps...)
			continue
		}
		for _, p := range ps {
			rs, err := c.Tx.List(L7Rule.Kind, store.Filter{Parent: attr.Str(p, "id")})
			if err != nil {
				return nil, err
			}
			out = append(out, rs...)
		}
	}
	return out, nil
}

var errNoL7 = fault.New(http.StatusBadRequest, "ValidationException", "Validation failure: L7 policies need an HTTP listener.")
