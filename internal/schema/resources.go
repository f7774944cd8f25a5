package schema

// Unset marks an attribute that was not given on create and has a computed
// default (for example a subnet's gateway_ip), so services can tell "absent"
// from an explicit null.
type unset struct{}

// Unset is the value of absent attributes with computed defaults.
var Unset any = unset{}

// IsUnset reports whether v is Unset.
func IsUnset(v any) bool { _, ok := v.(unset); return ok }

// helpers to keep the attribute tables short.
func ro(name string) *Attr { return &Attr{Name: name} }
func rw(name string, c Converter, def any) *Attr {
	return &Attr{Name: name, Post: true, Put: true, Convert: c, Default: def, HasDefault: true}
}
func post(name string, c Converter, def any) *Attr {
	return &Attr{Name: name, Post: true, Convert: c, Default: def, HasDefault: true}
}
func required(name string, c Converter) *Attr {
	return &Attr{Name: name, Post: true, Required: true, Convert: c}
}
func computed(name string, put bool, c Converter) *Attr {
	return &Attr{Name: name, Post: true, Put: put, Convert: c, Default: Unset, HasDefault: true}
}
func sorted(a *Attr) *Attr    { a.Sort = true; return a }
func adminOnly(a *Attr) *Attr { a.AdminOnly = true; return a }
func adminSet(a *Attr) *Attr  { a.AdminSet = true; return a }
func hidden(a *Attr) *Attr    { a.Hidden = true; a.NoFilter = true; return a }
func noFilter(a *Attr) *Attr  { a.NoFilter = true; return a }

// standard attributes every Neutron "standard attribute" resource has.
func standard(withName bool) []*Attr {
	out := []*Attr{
		sorted(ro("id")),
		sorted(post("project_id", ProjectID, nil)),
		sorted(post("tenant_id", ProjectID, nil)),
		sorted(rw("description", String(255), "")),
		sorted(ro("created_at")),
		sorted(ro("updated_at")),
		sorted(ro("revision_number")),
		noFilter(ro("tags")),
	}
	if withName {
		out = append(out, sorted(rw("name", String(255), "")))
	}
	return out
}

// defineUnnamed is a standard resource without a name (floating IPs).
func defineUnnamed(member, collection, parent string, attrs ...*Attr) *Resource {
	r := &Resource{Member: member, Collection: collection, Kind: member, Parent: parent, Standard: true}
	r.Attrs = append(standard(false), attrs...)
	r.index()
	return r
}

func define(member, collection, parent string, std bool, attrs ...*Attr) *Resource {
	r := &Resource{Member: member, Collection: collection, Kind: member, Parent: parent, Standard: std}
	if std {
		r.Attrs = append(standard(true), attrs...)
	} else {
		r.Attrs = attrs
	}
	r.index()
	return r
}

// The API's resources.
var (
	Network = define("network", "networks", "", true,
		sorted(rw("admin_state_up", Bool, true)),
		sorted(ro("status")),
		noFilter(ro("subnets")),
		sorted(adminSet(rw("shared", Bool, false))),
		sorted(adminSet(rw("router:external", Bool, false))),
		sorted(computed("mtu", true, IntRange(68, 65535))),
		sorted(rw("port_security_enabled", Bool, true)),
		adminOnly(computed("provider:network_type", false, String(255))),
		adminOnly(computed("provider:physical_network", false, StringOrNull(64))),
		adminOnly(computed("provider:segmentation_id", false, IntOrNull)),
		noFilter(adminOnly(computed("segments", false, ListOf(Dict)))),
		noFilter(post("availability_zone_hints", ListOf(String(255)), []any{})),
		noFilter(ro("availability_zones")),
		ro("ipv4_address_scope"),
		ro("ipv6_address_scope"),
		ro("l2_adjacency"),
	)

	Subnet = define("subnet", "subnets", "network_id", true,
		sorted(required("network_id", UUID)),
		sorted(required("ip_version", IntRange(4, 6))),
		sorted(computed("cidr", false, String(64))),
		hidden(computed("prefixlen", false, IntRange(0, 128))),
		sorted(computed("subnetpool_id", false, UUIDOrNull)),
		hidden(post("use_default_subnetpool", Bool, false)),
		sorted(computed("gateway_ip", true, IPOrNull)),
		noFilter(computed("allocation_pools", true, ListOf(Dict))),
		noFilter(rw("dns_nameservers", UniqueList(IP), []any{})),
		noFilter(rw("host_routes", ListOf(Dict), []any{})),
		sorted(rw("enable_dhcp", Bool, true)),
		sorted(post("ipv6_ra_mode", OneOfOrNull("slaac", "dhcpv6-stateful", "dhcpv6-stateless"), nil)),
		sorted(post("ipv6_address_mode", OneOfOrNull("slaac", "dhcpv6-stateful", "dhcpv6-stateless"), nil)),
		noFilter(rw("service_types", ListOf(String(255)), []any{})),
	)

	Port = define("port", "ports", "network_id", true,
		sorted(required("network_id", UUID)),
		sorted(rw("admin_state_up", Bool, true)),
		sorted(computed("mac_address", true, MAC)),
		computed("fixed_ips", true, ListOf(Dict)),
		sorted(rw("device_id", String(255), "")),
		sorted(rw("device_owner", String(255), "")),
		sorted(ro("status")),
		computed("security_groups", true, UniqueList(UUID)),
		noFilter(rw("allowed_address_pairs", ListOf(Dict), []any{})),
		noFilter(rw("extra_dhcp_opts", ListOf(Dict), []any{})),
		computed("port_security_enabled", true, Bool),
		adminOnly(rw("binding:host_id", String(255), "")),
		rw("binding:vnic_type", OneOf("normal", "direct", "macvtap", "baremetal", "direct-physical", "virtio-forwarder", "smart-nic", "vdpa", "remote-managed"), "normal"),
		noFilter(adminOnly(rw("binding:profile", Dict, map[string]any{}))),
		adminOnly(ro("binding:vif_type")),
		noFilter(adminOnly(ro("binding:vif_details"))),
		ro("ip_allocation"),
	)

	SecurityGroup = define("security_group", "security_groups", "", true,
		noFilter(ro("security_group_rules")),
		sorted(rw("stateful", Bool, true)),
		sorted(ro("shared")),
	)

	SecurityGroupRule = &Resource{Member: "security_group_rule", Collection: "security_group_rules", Path: "security-group-rules", Kind: "security_group_rule",
		Parent: "security_group_id", Standard: true, Attrs: []*Attr{
			sorted(ro("id")),
			sorted(post("project_id", ProjectID, nil)),
			sorted(post("tenant_id", ProjectID, nil)),
			sorted(post("description", String(255), "")),
			sorted(ro("created_at")),
			sorted(ro("updated_at")),
			sorted(ro("revision_number")),
			noFilter(ro("tags")),
			sorted(required("security_group_id", UUID)),
			sorted(required("direction", OneOf("ingress", "egress"))),
			sorted(post("ethertype", OneOf("IPv4", "IPv6"), "IPv4")),
			sorted(post("protocol", Anything, nil)),
			sorted(post("port_range_min", IntOrNull, nil)),
			sorted(post("port_range_max", IntOrNull, nil)),
			sorted(post("remote_ip_prefix", Anything, nil)),
			sorted(post("remote_group_id", StringOrNull(255), nil)),
			sorted(ro("normalized_cidr")),
		}}

	SubnetPool = define("subnetpool", "subnetpools", "", true,
		sorted(&Attr{Name: "prefixes", Post: true, Put: true, Required: true, Convert: ListOf(CIDRLoose)}),
		sorted(ro("ip_version")),
		sorted(computed("default_prefixlen", true, IntRange(0, 128))),
		sorted(computed("min_prefixlen", true, IntRange(0, 128))),
		sorted(computed("max_prefixlen", true, IntRange(0, 128))),
		sorted(adminSet(rw("is_default", Bool, false))),
		sorted(adminSet(post("shared", Bool, false))),
		sorted(rw("default_quota", IntOrNull, nil)),
		sorted(rw("address_scope_id", UUIDOrNull, nil)),
	)

	Router = define("router", "routers", "", true,
		sorted(rw("admin_state_up", Bool, true)),
		sorted(ro("status")),
		noFilter(rw("external_gateway_info", DictOrNull, nil)),
		noFilter(&Attr{Name: "routes", Put: true, Convert: NullAsEmpty(ListOf(Dict))}),
		sorted(adminOnly(computed("distributed", true, Bool))),
		sorted(adminOnly(computed("ha", true, Bool))),
	)

	FloatingIP = defineUnnamed("floatingip", "floatingips", "floating_network_id",
		sorted(required("floating_network_id", UUID)),
		sorted(computed("floating_ip_address", false, IP)),
		hidden(post("subnet_id", UUIDOrNull, nil)),
		sorted(rw("port_id", UUIDOrNull, nil)),
		sorted(rw("fixed_ip_address", IPOrNull, nil)),
		sorted(ro("router_id")),
		sorted(ro("status")),
		noFilter(ro("port_details")),
	)

	RBACPolicy = &Resource{Member: "rbac_policy", Collection: "rbac_policies", Path: "rbac-policies", Kind: "rbac_policy", Parent: "object_id", Attrs: []*Attr{
		sorted(ro("id")),
		sorted(post("project_id", ProjectID, nil)),
		sorted(post("tenant_id", ProjectID, nil)),
		sorted(required("object_type", OneOf("network", "security_group", "subnetpool", "address_scope", "qos_policy", "address_group"))),
		sorted(required("object_id", UUID)),
		sorted(required("action", OneOf("access_as_shared", "access_as_external"))),
		sorted(&Attr{Name: "target_tenant", Post: true, Put: true, Required: true, Convert: ProjectID}),
	}}
)

// Metering labels and their rules (admin-only; neither can be updated).
var (
	MeteringLabel = &Resource{Member: "metering_label", Collection: "metering_labels", Path: "metering/metering-labels", Kind: "metering_label", Attrs: []*Attr{
		sorted(ro("id")),
		sorted(post("name", String(255), "")),
		sorted(post("description", String(1024), "")),
		sorted(post("shared", Bool, false)),
		sorted(post("project_id", ProjectID, nil)),
		sorted(post("tenant_id", ProjectID, nil)),
	}}

	MeteringLabelRule = &Resource{Member: "metering_label_rule", Collection: "metering_label_rules", Path: "metering/metering-label-rules", Kind: "metering_label_rule",
		Parent: "metering_label_id", Attrs: []*Attr{
			sorted(ro("id")),
			sorted(required("metering_label_id", UUID)),
			sorted(required("direction", OneOf("ingress", "egress"))),
			sorted(post("remote_ip_prefix", PrefixOrNull, nil)),
			sorted(post("source_ip_prefix", PrefixOrNull, nil)),
			sorted(post("destination_ip_prefix", PrefixOrNull, nil)),
			sorted(post("excluded", Bool, false)),
		}}
)

// Agent is a host agent, registered by its own reports (not created through
// the API); admins may change admin_state_up and description, or delete it.
var Agent = &Resource{Member: "agent", Collection: "agents", Kind: "agent", Attrs: []*Attr{
	sorted(ro("id")),
	sorted(ro("agent_type")),
	sorted(ro("binary")),
	sorted(ro("host")),
	sorted(ro("topic")),
	sorted(&Attr{Name: "admin_state_up", Put: true, Convert: Bool}),
	&Attr{Name: "description", Put: true, Convert: StringOrNull(255)},
	sorted(ro("alive")),
	sorted(ro("heartbeat_timestamp")),
	sorted(ro("created_at")),
	sorted(ro("started_at")),
	noFilter(ro("configurations")),
	sorted(ro("availability_zone")),
	ro("resources_synced"),
}}

// All lists every resource served through the generic collection routes.
var All = []*Resource{Network, Subnet, Port, SecurityGroup, SecurityGroupRule, SubnetPool, RBACPolicy, Agent, Router, FloatingIP, MeteringLabel, MeteringLabelRule}

func init() {
	Agent.index()
	SecurityGroup.Path = "security-groups"
	SecurityGroupRule.index()
	RBACPolicy.index()
	MeteringLabel.index()
	MeteringLabelRule.index()
}

// ByPath finds a resource by its URL collection segment.
func ByPath(name string) *Resource {
	for _, r := range All {
		if r.URLPath() == name {
			return r
		}
	}
	return nil
}

// URLPath is the collection's URL segment.
func (r *Resource) URLPath() string {
	if r.Path != "" {
		return r.Path
	}
	return r.Collection
}
