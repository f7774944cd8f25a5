package lbaas

import (
	"encoding/json"
	"net/http"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// Flavors (Octavia's): an operator's named offer of a provider's
// settings, a flavor profile (admin only: provider and flavor_data, a
// JSON document); anyone may list flavors and create load balancers with
// an enabled one.
var (
	FlavorProfile = schema.Index(&schema.Resource{Member: "flavorprofile", Collection: "flavorprofiles",
		Path: "lbaas/flavorprofiles", Kind: "lb_flavorprofile", Attrs: []*schema.Attr{
			schema.Sorted(schema.RO("id")),
			schema.Sorted(schema.Req("name", schema.String(255))),
			schema.Sorted(schema.Req("provider_name", schema.String(64))),
			schema.Req("flavor_data", schema.String(4096)),
		}})
	Flavor = schema.Index(&schema.Resource{Member: "flavor", Collection: "flavors", Path: "lbaas/flavors", Kind: "lb_flavor",
		Attrs: []*schema.Attr{
			schema.Sorted(schema.RO("id")),
			schema.Sorted(schema.Req("name", schema.String(255))),
			schema.Sorted(schema.RW("description", schema.String(255), "")),
			schema.Sorted(schema.RW("enabled", schema.Bool, true)),
			schema.Sorted(schema.Req("flavor_profile_id", schema.UUID)),
		}})
)

func init() {
	FlavorProfile.NotFound = notFound("Flavor profile")
	Flavor.NotFound = notFound("Flavor")
}

// flavorHandlers are the flavors' and profiles' handlers: admins write
// both; profiles are theirs alone, flavors anyone's to read.
func flavorHandlers() []*plugin.Handler {
	adminWrite := func(c *plugin.Ctx) error {
		if !c.Admin {
			return fault.Forbidden("Policy does not allow this request to be performed.")
		}
		return nil
	}
	everyone := func(*plugin.Ctx, plugin.Object) bool { return true }
	return []*plugin.Handler{
		{Res: FlavorProfile, AdminOnly: true,
			Create: func(c *plugin.Ctx, in plugin.Object) (plugin.Object, error) {
				if err := checkProfile(in); err != nil {
					return nil, err
				}
				o := plugin.Object{"id": in["id"], "name": in["name"], "provider_name": in["provider_name"], "flavor_data": in["flavor_data"]}
				return o, c.Put(FlavorProfile, o)
			},
			Update: func(c *plugin.Ctx, cur, in plugin.Object) (plugin.Object, error) {
				merged := attr.Merge(cur, in)
				return merged, checkProfile(merged)
			},
			Delete: func(c *plugin.Ctx, cur plugin.Object) error {
				fs, err := c.Tx.List(Flavor.Kind, store.Filter{})
				if err != nil {
					return err
				}
				for _, f := range fs {
					if attr.Str(f, "flavor_profile_id") == attr.Str(cur, "id") {
						return fault.New(http.StatusConflict, "ObjectInUse", "Flavor profile %s is in use.", attr.Str(cur, "id"))
					}
				}
				return c.Tx.Delete(FlavorProfile.Kind, attr.Str(cur, "id"))
			}},
		{Res: Flavor, Visible: everyone,
			Create: func(c *plugin.Ctx, in plugin.Object) (plugin.Object, error) {
				if err := adminWrite(c); err != nil {
					return nil, err
				}
				if _, err := c.Tx.Get(FlavorProfile.Kind, attr.Str(in, "flavor_profile_id")); err != nil {
					return nil, invalid("Flavor profile %s not found.", attr.Str(in, "flavor_profile_id"))
				}
				o := plugin.Object{"id": in["id"], "name": in["name"], "description": in["description"], "enabled": in["enabled"],
					"flavor_profile_id": in["flavor_profile_id"]}
				return o, c.Put(Flavor, o)
			},
			Update: func(c *plugin.Ctx, cur, in plugin.Object) (plugin.Object, error) {
				if err := adminWrite(c); err != nil {
					return nil, err
				}
				return attr.Merge(cur, in), nil
			},
			Delete: func(c *plugin.Ctx, cur plugin.Object) error {
				if err := adminWrite(c); err != nil {
					return err
				}
				lbs, err := c.Tx.List(LoadBalancer.Kind, store.Filter{})
				if err != nil {
					return err
				}
				for _, lb := range lbs {
					if attr.Str(lb, "flavor_id") == attr.Str(cur, "id") {
						return fault.New(http.StatusConflict, "ObjectInUse", "Flavor %s is in use.", attr.Str(cur, "id"))
					}
				}
				return c.Tx.Delete(Flavor.Kind, attr.Str(cur, "id"))
			}},
	}
}

// checkProfile checks a profile's provider and its flavor_data: a JSON
// object the provider understands (haproxy: loadbalancer_topology SINGLE
// only, for now; noop_driver: anything).
func checkProfile(p plugin.Object) error {
	prov := attr.Str(p, "provider_name")
	if !Known(prov) {
		return fault.New(http.StatusBadRequest, "ProviderNotEnabled", "Provider '%s' is not enabled.", prov)
	}
	var data map[string]any
	if err := json.Unmarshal([]byte(attr.Str(p, "flavor_data")), &data); err != nil || data == nil {
		return invalid("flavor_data must be a JSON object.")
	}
	if prov != ProviderHAProxy {
		return nil
	}
	for k, v := range data {
		if k != "loadbalancer_topology" || v != "SINGLE" {
			return fault.New(http.StatusBadRequest, "ProviderUnsupportedOptionError",
				"Provider '%s' does not support a requested option: %s %v (ACTIVE_STANDBY is not implemented yet).", prov, k, v)
		}
	}
	return nil
}

// flavorProvider is the provider a load balancer's flavor names ("" for
// none), refusing a flavor that is missing, disabled, or of another
// provider than the one asked for.
func flavorProvider(c *plugin.Ctx, in plugin.Object) (string, error) {
	fid := attr.Str(in, "flavor_id")
	if fid == "" {
		return "", nil
	}
	f, err := c.Tx.Get(Flavor.Kind, fid)
	if err != nil {
		return "", invalid("Flavor %s not found.", fid)
	}
	if f["enabled"] != true {
		return "", fault.New(http.StatusBadRequest, "DisabledOption", "The selected flavor is not allowed in this deployment: %s", fid)
	}
	p, err := c.Tx.Get(FlavorProfile.Kind, attr.Str(f, "flavor_profile_id"))
	if err != nil {
		return "", invalid("Flavor %s has no profile.", fid)
	}
	prov := attr.Str(p, "provider_name")
	if asked := attr.Str(in, "provider"); asked != "" && asked != prov {
		return "", fault.New(http.StatusBadRequest, "ProviderFlavorMismatchError",
			"Flavor '%s' is not compatible with provider '%s'", fid, asked)
	}
	return prov, nil
}
