package schema

import (
	"net/http"

	"neutrino/internal/fault"
)

// Unset marks an attribute that was not given on create and has a computed
// default (for example a subnet's gateway_ip), so services can tell "absent"
// from an explicit null.
type unset struct{}

// Unset is the value of absent attributes with computed defaults.
var Unset any = unset{}

// IsUnset reports whether v is Unset.
func IsUnset(v any) bool { _, ok := v.(unset); return ok }

// Builders that keep attribute tables short: RO is read-only, RW settable
// on create and update with a default, Post on create only, Req required
// on create, Computed defaulted by the service when absent; the wrappers
// mark sorting, admin-only visibility, admin-only setting, hidden request
// input and attributes that may not filter lists.
func RO(name string) *Attr { return &Attr{Name: name} }
func RW(name string, c Converter, def any) *Attr {
	return &Attr{Name: name, Post: true, Put: true, Convert: c, Default: def, HasDefault: true}
}
func Post(name string, c Converter, def any) *Attr {
	return &Attr{Name: name, Post: true, Convert: c, Default: def, HasDefault: true}
}
func Req(name string, c Converter) *Attr {
	return &Attr{Name: name, Post: true, Required: true, Convert: c}
}
func Computed(name string, put bool, c Converter) *Attr {
	return &Attr{Name: name, Post: true, Put: put, Convert: c, Default: Unset, HasDefault: true}
}
func Sorted(a *Attr) *Attr    { a.Sort = true; return a }
func AdminOnly(a *Attr) *Attr { a.AdminOnly = true; return a }
func AdminSet(a *Attr) *Attr  { a.AdminSet = true; return a }
func Hidden(a *Attr) *Attr    { a.Hidden = true; a.NoFilter = true; return a }
func NoFilter(a *Attr) *Attr  { a.NoFilter = true; return a }

// standard attributes every Neutron "standard attribute" resource has.
func standardAttrs(withName bool) []*Attr {
	out := []*Attr{
		Sorted(RO("id")),
		Sorted(Post("project_id", ProjectID, nil)),
		Sorted(Post("tenant_id", ProjectID, nil)),
		Sorted(RW("description", String(255), "")),
		Sorted(RO("created_at")),
		Sorted(RO("updated_at")),
		Sorted(RO("revision_number")),
		NoFilter(RO("tags")),
	}
	if withName {
		out = append(out, Sorted(RW("name", String(255), "")))
	}
	return out
}

// createOnly makes attrs settable on create only (for a resource that
// cannot be updated, whose description too is given once).
func createOnly(attrs []*Attr) []*Attr {
	for _, a := range attrs {
		a.Put = false
	}
	return attrs
}

// defineUnnamed is a standard resource without a name (floating IPs).
func DefineUnnamed(member, collection, parent string, attrs ...*Attr) *Resource {
	r := &Resource{Member: member, Collection: collection, Kind: member, Parent: parent, Standard: true}
	r.Attrs = append(standardAttrs(false), attrs...)
	r.index()
	return r
}

func Define(member, collection, parent string, std bool, attrs ...*Attr) *Resource {
	r := &Resource{Member: member, Collection: collection, Kind: member, Parent: parent, Standard: std}
	if std {
		r.Attrs = append(standardAttrs(true), attrs...)
	} else {
		r.Attrs = attrs
	}
	r.index()
	return r
}

// The API's resources.
var (
	Network = Define("network", "networks", "", true,
		Sorted(RW("admin_state_up", Bool, true)),
		Sorted(RO("status")),
		NoFilter(RO("subnets")),
		Sorted(AdminSet(RW("shared", Bool, false))),
		Sorted(AdminSet(RW("router:external", Bool, false))),
		Sorted(Computed("mtu", true, IntRange(68, 65535))),
		Sorted(RW("port_security_enabled", Bool, true)),
		AdminOnly(Computed("provider:network_type", false, String(255))),
		AdminOnly(Computed("provider:physical_network", false, StringOrNull(64))),
		AdminOnly(Computed("provider:segmentation_id", false, IntOrNull)),
		NoFilter(AdminOnly(Computed("segments", false, ListOf(Dict)))),
		NoFilter(Post("availability_zone_hints", ListOf(String(255)), []any{})),
		NoFilter(RO("availability_zones")),
		RO("ipv4_address_scope"),
		RO("ipv6_address_scope"),
		RO("l2_adjacency"),
	)

	Subnet = Define("subnet", "subnets", "network_id", true,
		Sorted(Req("network_id", UUID)),
		Sorted(Req("ip_version", IntRange(4, 6))),
		Sorted(Computed("cidr", false, String(64))),
		Hidden(Computed("prefixlen", false, IntRange(0, 128))),
		Sorted(Computed("subnetpool_id", false, UUIDOrNull)),
		Hidden(Post("use_default_subnetpool", Bool, false)),
		Sorted(Computed("gateway_ip", true, IPOrNull)),
		NoFilter(Computed("allocation_pools", true, ListOf(Dict))),
		NoFilter(RW("dns_nameservers", UniqueList(IP), []any{})),
		NoFilter(RW("host_routes", ListOf(Dict), []any{})),
		Sorted(RW("enable_dhcp", Bool, true)),
		Sorted(Post("ipv6_ra_mode", OneOfOrNull("slaac", "dhcpv6-stateful", "dhcpv6-stateless"), nil)),
		Sorted(Post("ipv6_address_mode", OneOfOrNull("slaac", "dhcpv6-stateful", "dhcpv6-stateless"), nil)),
		NoFilter(RW("service_types", ListOf(String(255)), []any{})),
	)

	Port = Define("port", "ports", "network_id", true,
		Sorted(Req("network_id", UUID)),
		Sorted(RW("admin_state_up", Bool, true)),
		Sorted(Computed("mac_address", true, MAC)),
		Computed("fixed_ips", true, ListOf(Dict)),
		Sorted(RW("device_id", String(255), "")),
		Sorted(RW("device_owner", String(255), "")),
		Sorted(RO("status")),
		Computed("security_groups", true, UniqueList(UUID)),
		NoFilter(RW("allowed_address_pairs", ListOf(Dict), []any{})),
		NoFilter(RW("extra_dhcp_opts", ListOf(Dict), []any{})),
		Computed("port_security_enabled", true, Bool),
		AdminOnly(RW("binding:host_id", String(255), "")),
		RW("binding:vnic_type", OneOf("normal", "direct", "macvtap", "baremetal", "direct-physical", "virtio-forwarder", "smart-nic", "vdpa", "remote-managed"), "normal"),
		NoFilter(AdminOnly(RW("binding:profile", Dict, map[string]any{}))),
		AdminOnly(RO("binding:vif_type")),
		NoFilter(AdminOnly(RO("binding:vif_details"))),
		RO("ip_allocation"),
	)

	SecurityGroup = Define("security_group", "security_groups", "", true,
		NoFilter(RO("security_group_rules")),
		Sorted(RW("stateful", Bool, true)),
		Sorted(RO("shared")),
	)

	SecurityGroupRule = &Resource{Member: "security_group_rule", Collection: "security_group_rules", Path: "security-group-rules", Kind: "security_group_rule",
		Parent: "security_group_id", Standard: true, Attrs: append(createOnly(standardAttrs(false)),
			Sorted(Req("security_group_id", UUID)),
			Sorted(Req("direction", OneOf("ingress", "egress"))),
			Sorted(Post("ethertype", OneOf("IPv4", "IPv6"), "IPv4")),
			Sorted(Post("protocol", Anything, nil)),
			Sorted(Post("port_range_min", IntOrNull, nil)),
			Sorted(Post("port_range_max", IntOrNull, nil)),
			Sorted(Post("remote_ip_prefix", Anything, nil)),
			Sorted(Post("remote_group_id", StringOrNull(255), nil)),
			Sorted(RO("normalized_cidr")),
		)}

	SubnetPool = Define("subnetpool", "subnetpools", "", true,
		Sorted(&Attr{Name: "prefixes", Post: true, Put: true, Required: true, Convert: ListOf(CIDRLoose)}),
		Sorted(RO("ip_version")),
		Sorted(Computed("default_prefixlen", true, IntRange(0, 128))),
		Sorted(Computed("min_prefixlen", true, IntRange(0, 128))),
		Sorted(Computed("max_prefixlen", true, IntRange(0, 128))),
		Sorted(AdminSet(RW("is_default", Bool, false))),
		Sorted(AdminSet(Post("shared", Bool, false))),
		Sorted(RW("default_quota", OrNull(IntRange(0, 1<<31-1)), nil)),
		Sorted(RW("address_scope_id", UUIDOrNull, nil)),
	)

	RBACPolicy = &Resource{Member: "rbac_policy", Collection: "rbac_policies", Path: "rbac-policies", Kind: "rbac_policy", Parent: "object_id", Attrs: []*Attr{
		Sorted(RO("id")),
		Sorted(Post("project_id", ProjectID, nil)),
		Sorted(Post("tenant_id", ProjectID, nil)),
		Sorted(Req("object_type", OneOf("network", "security_group", "subnetpool", "address_scope", "qos_policy", "address_group"))),
		Sorted(Req("object_id", UUID)),
		Sorted(Req("action", OneOf("access_as_shared", "access_as_external"))),
		Sorted(&Attr{Name: "target_tenant", Post: true, Put: true, Required: true, Convert: ProjectID}),
	}}
)

// NotFoundError is the 404 for a missing member of r.
func (r *Resource) NotFoundError(id string) error {
	if r.NotFound != nil {
		return r.NotFound(id)
	}
	return fault.New(http.StatusNotFound, "NotFound", "%s %s could not be found.", r.Member, id)
}

// URLPath is the collection's URL path after /v2.0/.
func (r *Resource) URLPath() string {
	if r.Path != "" {
		return r.Path
	}
	return r.Collection
}

// With returns a copy of r with attributes added (those another
// extension brings to r).
func (r *Resource) With(attrs ...*Attr) *Resource {
	cp := *r
	cp.Attrs = append(append([]*Attr(nil), r.Attrs...), attrs...)
	cp.index()
	return &cp
}

// Index prepares a resource defined as a literal and returns it.
func Index(r *Resource) *Resource {
	r.index()
	return r
}

func init() {
	SecurityGroup.Path = "security-groups"
	SecurityGroupRule.index()
	RBACPolicy.index()
	notFound := func(typ, what, format string) func(string) error {
		return func(id string) error {
			if format == "" {
				return fault.NotFound(typ, what, id)
			}
			return fault.New(http.StatusNotFound, typ+"NotFound", format, id)
		}
	}
	Port.ExtraFilters = map[string]bool{"ip_address_substr": true}
	Subnet.ExtraFilters = map[string]bool{"segment_id": true}
	Network.NotFound = notFound("Network", "Network", "")
	Subnet.NotFound = notFound("Subnet", "Subnet", "")
	Port.NotFound = notFound("Port", "Port", "")
	SecurityGroup.NotFound = notFound("SecurityGroup", "", "Security group %s does not exist")
	SecurityGroupRule.NotFound = notFound("SecurityGroupRule", "", "Security group rule %s does not exist")
	SubnetPool.NotFound = notFound("SubnetPool", "", "Subnet pool %s could not be found.")
	RBACPolicy.NotFound = func(id string) error {
		return fault.New(http.StatusNotFound, "RbacPolicyNotFound", "RBAC policy of type %s with ID %s not found", "", id)
	}
}
