package ipam

import (
	"net/http"
	"net/netip"
	"sort"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/services/rbac"
	"neutrino/internal/store"
)

// Service is subnet pools and the address allocation the core's subnets
// and ports use (the Neutron IPAM driver's part).
type Service struct{}

// New returns the IPAM service.
func New() *Service { return &Service{} }

// Name implements plugin.Service.
func (*Service) Name() string { return "ipam" }

// Register implements plugin.Service.
func (*Service) Register(r *plugin.Registry) error {
	if r.DB != nil {
		// The addresses ports hold, for allocateNext's probes.
		r.DB.IndexDerived(schema.Port.Kind, heldAddress, func(p plugin.Object) []string {
			var out []string
			for _, f := range attr.Objects(p, "fixed_ips") {
				out = append(out, attr.Str(f, "subnet_id")+" "+attr.Str(f, "ip_address"))
			}
			return out
		})
	}
	r.Extension(
		plugin.Extension{Alias: "subnet_allocation", Name: "Subnet Allocation", Description: "Enables allocation of subnets from a subnet pool", Updated: "2015-03-30T10:00:00-00:00"},
		plugin.Extension{Alias: "default-subnetpools", Name: "Default Subnetpools", Description: "Provides ability to mark and use a subnetpool as the default.", Updated: "2016-02-18T18:00:00-00:00"},
		plugin.Extension{Alias: "rbac-subnetpool", Name: "Add subnetpool type to RBAC", Description: "Add subnetpool type to RBAC", Updated: "2020-02-05T00:00:00-00:00"},
	)
	if err := rbac.Share(r, &rbac.Type{Name: "subnetpool", Res: schema.SubnetPool, Actions: []string{"access_as_shared"},
		Users: func(c *plugin.Ctx, pool plugin.Object) (map[string]bool, error) {
			return rbac.Projects(PoolSubnets(c, attr.Str(pool, "id")))
		}}); err != nil {
		return err
	}
	return r.Resource(&plugin.Handler{Res: schema.SubnetPool, Create: createSubnetPool, Update: updateSubnetPool, Delete: deleteSubnetPool,
		Visible: subnetPoolVisible, Present: rbac.Present, Quota: "subnetpool"})
}

func subnetPoolVisible(c *plugin.Ctx, o plugin.Object) bool {
	return attr.Bool(o, "shared") || rbac.SharedWith(o, "access_as_shared", c.ProjectID)
}

func parsePrefixes(v any) ([]netip.Prefix, int, error) {
	var out []netip.Prefix
	version := 0
	for _, e := range attr.List(plugin.Object{"p": v}, "p") {
		p, err := netip.ParsePrefix(schema.Render(e))
		if err != nil {
			return nil, 0, fault.InvalidInput("%s is not in a CIDR format", schema.Render(e))
		}
		vv := 4
		if p.Addr().Is6() {
			vv = 6
		}
		if version != 0 && vv != version {
			return nil, 0, fault.New(http.StatusBadRequest, "PrefixVersionMismatch", "Cannot mix IPv4 and IPv6 prefixes in a subnet pool.")
		}
		version = vv
		out = append(out, p.Masked())
	}
	if len(out) == 0 {
		return nil, 0, fault.BadRequest("Invalid input for prefixes. Reason: at least one prefix is required.")
	}
	// Drop prefixes covered by others, keep a stable order.
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Addr().Compare(out[j].Addr()); c != 0 {
			return c < 0
		}
		return out[i].Bits() < out[j].Bits()
	})
	var merged []netip.Prefix
	for _, p := range out {
		if len(merged) > 0 && merged[len(merged)-1].Contains(p.Addr()) && merged[len(merged)-1].Bits() <= p.Bits() {
			continue
		}
		merged = append(merged, p)
	}
	return merged, version, nil
}

func prefixStrings(ps []netip.Prefix) []any {
	out := make([]any, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

func checkBounds(minL, defL, maxL float64, version int) error {
	top := 32.0
	if version == 6 {
		top = 128
	}
	if maxL > top {
		return fault.New(http.StatusBadRequest, "IllegalSubnetPoolPrefixBounds", "Illegal prefix bounds: max_prefixlen=%d, top=%d.", int(maxL), int(top))
	}
	if defL < minL {
		return fault.New(http.StatusBadRequest, "IllegalSubnetPoolPrefixBounds", "Illegal prefix bounds: default_prefixlen=%d, min_prefixlen=%d.", int(defL), int(minL))
	}
	if defL > maxL {
		return fault.New(http.StatusBadRequest, "IllegalSubnetPoolPrefixBounds", "Illegal prefix bounds: default_prefixlen=%d, max_prefixlen=%d.", int(defL), int(maxL))
	}
	return nil
}

func createSubnetPool(c *plugin.Ctx, in plugin.Object) (plugin.Object, error) {
	prefixes, version, err := parsePrefixes(in["prefixes"])
	if err != nil {
		return nil, err
	}
	minDefault, maxDefault := 8.0, 32.0
	if version == 6 {
		minDefault, maxDefault = 64, 128
	}
	minL := attr.Num(in["min_prefixlen"], minDefault)
	maxL := attr.Num(in["max_prefixlen"], maxDefault)
	defL := attr.Num(in["default_prefixlen"], minL)
	if err := checkBounds(minL, defL, maxL, version); err != nil {
		return nil, err
	}
	if attr.Bool(in, "is_default") {
		if err := checkOneDefault(c, version, ""); err != nil {
			return nil, err
		}
	}
	o := plugin.Object{"id": in["id"], "project_id": in["project_id"], "name": in["name"], "description": in["description"],
		"prefixes": prefixStrings(prefixes), "ip_version": float64(version), "min_prefixlen": minL, "max_prefixlen": maxL,
		"default_prefixlen": defL, "is_default": in["is_default"], "shared": false, "default_quota": in["default_quota"],
		"address_scope_id": in["address_scope_id"], rbac.Key: map[string]any{}}
	c.Stamp(o)
	o["revision_number"] = float64(0)
	if err := c.Put(schema.SubnetPool, o); err != nil {
		return nil, err
	}
	if attr.Bool(in, "shared") {
		if err := rbac.Add(c, o, "subnetpool", "access_as_shared", "*"); err != nil {
			return nil, err
		}
		return c.Load(schema.SubnetPool, attr.Str(o, "id"))
	}
	return o, nil
}

func checkOneDefault(c *plugin.Ctx, version int, self string) error {
	pools, err := c.Tx.List(schema.SubnetPool.Kind, store.Filter{})
	if err != nil {
		return err
	}
	for _, p := range pools {
		if attr.Bool(p, "is_default") && int(attr.Num(p["ip_version"], 0)) == version && attr.Str(p, "id") != self {
			return fault.InvalidInput("A default subnetpool for this IP family has already been set. Only one default may exist per IP family")
		}
	}
	return nil
}

func updateSubnetPool(c *plugin.Ctx, cur, in plugin.Object) (plugin.Object, error) {
	version := int(attr.Num(cur["ip_version"], 4))
	if v, ok := in["prefixes"]; ok {
		ps, vv, err := parsePrefixes(v)
		if err != nil {
			return nil, err
		}
		if vv != version {
			return nil, fault.New(http.StatusBadRequest, "PrefixVersionMismatch", "Cannot mix IPv4 and IPv6 prefixes in a subnet pool.")
		}
		for _, old := range attr.List(cur, "prefixes") {
			op, _ := netip.ParsePrefix(schema.Render(old))
			covered := false
			for _, p := range ps {
				covered = covered || (p.Contains(op.Addr()) && p.Bits() <= op.Bits())
			}
			if !covered {
				return nil, fault.New(http.StatusBadRequest, "IllegalSubnetPoolPrefixUpdate",
					"Illegal update to prefixes: Existing prefixes must be a subset of the new prefixes.")
			}
		}
		in["prefixes"] = prefixStrings(ps)
	}
	minL := attr.Num(in["min_prefixlen"], attr.Num(cur["min_prefixlen"], 0))
	maxL := attr.Num(in["max_prefixlen"], attr.Num(cur["max_prefixlen"], 0))
	defL := attr.Num(in["default_prefixlen"], attr.Num(cur["default_prefixlen"], 0))
	if err := checkBounds(minL, defL, maxL, version); err != nil {
		return nil, err
	}
	if attr.Bool(in, "is_default") {
		if err := checkOneDefault(c, version, attr.Str(cur, "id")); err != nil {
			return nil, err
		}
	}
	return attr.Merge(cur, in), nil
}

func PoolSubnets(c *plugin.Ctx, poolID string) ([]plugin.Object, error) {
	return c.Tx.Select(schema.Subnet.Kind, func(s plugin.Object) bool { return attr.Str(s, "subnetpool_id") == poolID })
}

func deleteSubnetPool(c *plugin.Ctx, cur plugin.Object) error {
	used, err := PoolSubnets(c, attr.Str(cur, "id"))
	if err != nil {
		return err
	}
	if len(used) > 0 {
		return fault.New(http.StatusConflict, "SubnetPoolInUse",
			"Unable to complete operation on subnet pool %s. Subnets are allocated from it.", attr.Str(cur, "id"))
	}
	return c.Tx.Delete(schema.SubnetPool.Kind, attr.Str(cur, "id"))
}

func DefaultSubnetPool(c *plugin.Ctx, version int) (plugin.Object, error) {
	pools, err := c.Tx.List(schema.SubnetPool.Kind, store.Filter{})
	if err != nil {
		return nil, err
	}
	for _, p := range pools {
		if attr.Bool(p, "is_default") && int(attr.Num(p["ip_version"], 0)) == version {
			return p, nil
		}
	}
	return nil, fault.New(http.StatusBadRequest, "BadRequest", "Bad subnets request: No default subnetpool found for IPv%d.", version)
}

// allocateFromPool returns want (checked) or the first free prefix of the
// requested length from the pool.
func AllocateFromPool(c *plugin.Ctx, poolID string, version int, want netip.Prefix, prefixlen any) (netip.Prefix, error) {
	pool, err := c.Tx.Get(schema.SubnetPool.Kind, poolID)
	if err != nil || !c.CanSee(schema.SubnetPool, pool) {
		return netip.Prefix{}, fault.New(http.StatusNotFound, "SubnetPoolNotFound", "Subnet pool %s could not be found.", poolID)
	}
	if int(attr.Num(pool["ip_version"], 0)) != version {
		return netip.Prefix{}, fault.InvalidInput("Cannot allocate IPv%d subnet from IPv%d subnet pool", version, int(attr.Num(pool["ip_version"], 0)))
	}
	minL, maxL := int(attr.Num(pool["min_prefixlen"], 0)), int(attr.Num(pool["max_prefixlen"], 0))
	bits := int(attr.Num(pool["default_prefixlen"], 0))
	if want.IsValid() {
		bits = want.Bits()
	} else if l, ok := prefixlen.(float64); ok {
		bits = int(l)
	}
	if bits > maxL {
		return netip.Prefix{}, fault.New(http.StatusBadRequest, "MaxPrefixSubnetAllocationError",
			"Unable to allocate subnet with prefix length %d, maximum allowed prefix is %d.", bits, maxL)
	}
	if bits < minL {
		return netip.Prefix{}, fault.New(http.StatusBadRequest, "MinPrefixSubnetAllocationError",
			"Unable to allocate subnet with prefix length %d, minimum allowed prefix is %d.", bits, minL)
	}
	used, err := PoolSubnets(c, poolID)
	if err != nil {
		return netip.Prefix{}, err
	}
	var taken []netip.Prefix
	for _, s := range used {
		if p, err := netip.ParsePrefix(attr.Str(s, "cidr")); err == nil {
			taken = append(taken, p)
		}
	}
	free := func(p netip.Prefix) bool {
		for _, t := range taken {
			if t.Overlaps(p) {
				return false
			}
		}
		return true
	}
	var pool4 []netip.Prefix
	for _, e := range attr.List(pool, "prefixes") {
		if p, err := netip.ParsePrefix(schema.Render(e)); err == nil {
			pool4 = append(pool4, p)
		}
	}
	if want.IsValid() {
		for _, p := range pool4 {
			if p.Contains(want.Addr()) && p.Bits() <= want.Bits() {
				if !free(want) {
					return netip.Prefix{}, fault.Conflict("SubnetAllocationError", "Failed to allocate subnet: Cannot allocate requested subnet from the available set of prefixes.")
				}
				return want, nil
			}
		}
		return netip.Prefix{}, fault.New(http.StatusBadRequest, "SubnetAllocationError", "Failed to allocate subnet: Cannot allocate requested subnet from the available set of prefixes.")
	}
	for _, p := range pool4 {
		if p.Bits() > bits {
			continue
		}
		cand := netip.PrefixFrom(p.Addr(), bits)
		for i := 0; i < 1<<20 && p.Contains(cand.Addr()); i++ {
			if free(cand) {
				return cand, nil
			}
			next := LastAddr(cand).Next()
			if !next.IsValid() {
				break
			}
			cand = netip.PrefixFrom(next, bits)
		}
	}
	return netip.Prefix{}, fault.Conflict("SubnetAllocationError", "Failed to allocate subnet: Insufficient prefix space to allocate subnet size /%d.", bits)
}
