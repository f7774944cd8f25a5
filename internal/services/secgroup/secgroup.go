// Package secgroup is the security-group extension: groups and their
// rules, each project's default group, the groups of ports (filled in and
// checked when ML2 builds a port), and the part of a host's span that its
// agent's filters are made from.
package secgroup

import (
	"context"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/plugin"
	"neutrino/internal/policy"
	"neutrino/internal/schema"
	"neutrino/internal/services/ml2"
	"neutrino/internal/services/rbac"
	"neutrino/internal/store"
)

// protocolNumbers are the names Neutron accepts for security group rules.
var protocolNumbers = map[string]int{
	"ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "hopopt": 0, "icmp": 1, "igmp": 2, "ip": 0, "ipip": 4,
	"ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58, "icmpv6": 58, "ipv6-nonxt": 59, "ipv6-opts": 60,
	"ipv6-route": 43, "ospf": 89, "pgm": 113, "rsvp": 46, "sctp": 132, "tcp": 6, "udp": 17, "udplite": 136, "vrrp": 112,
}

const protocolList = "[None, 'ah', 'dccp', 'egp', 'esp', 'gre', 'hopopt', 'icmp', 'igmp', 'ip', 'ipip', 'ipv6-encap', 'ipv6-frag', 'ipv6-icmp', 'icmpv6', 'ipv6-nonxt', 'ipv6-opts', 'ipv6-route', 'ospf', 'pgm', 'rsvp', 'sctp', 'tcp', 'udp', 'udplite', 'vrrp']"

// Service is the security-group extension.
type Service struct {
	cache memberCache
}

// New returns the security-group extension.
func New() *Service { return &Service{} }

// Name implements plugin.Service.
func (*Service) Name() string { return "security-group" }

// Register implements plugin.Service.
func (s *Service) Register(r *plugin.Registry) error {
	r.Extension(
		plugin.Extension{Alias: "security-group", Name: "security-group", Description: "The security groups extension.", Updated: "2012-10-05T10:00:00-00:00"},
		plugin.Extension{Alias: "security-groups-normalized-cidr", Name: "Normalized CIDR field for security group rules", Description: "Add new field with normalized remote_ip_prefix cidr in SG rule", Updated: "2020-07-28T10:00:00-00:00"},
		plugin.Extension{Alias: "security-groups-shared-filtering", Name: "Security group filtering on the shared field", Description: "Support filtering security groups on the shared field", Updated: "2021-10-05T09:00:00-00:00"},
		plugin.Extension{Alias: "stateful-security-group", Name: "Stateful security group", Description: "Indicates if the security group is stateful or not", Updated: "2019-11-26T09:00:00-00:00"},
		plugin.Extension{Alias: "rbac-security-groups", Name: "Add security_group type to network RBAC", Description: "Add security_group type to network RBAC", Updated: "2019-02-14T00:00:00-00:00"},
	)
	if err := rbac.Share(r, &rbac.Type{Name: "security_group", Res: schema.SecurityGroup, Actions: []string{"access_as_shared"},
		Users: func(c *plugin.Ctx, sg plugin.Object) (map[string]bool, error) {
			return rbac.Projects(groupMembers(c, attr.Str(sg, "id")))
		}}); err != nil {
		return err
	}
	if r.DB != nil {
		r.DB.IndexAttr(schema.Port.Kind, "security_groups") // a group's members
	}
	r.Subscribe(schema.Port.Kind, plugin.Create, plugin.Precommit, portCreated)
	r.Subscribe(schema.Port.Kind, plugin.Update, plugin.Precommit, portUpdated)
	r.HostSpan(s.hostGroups)
	r.HostSpanMembers(s.fillMembers)
	if err := r.Resource(&plugin.Handler{Res: schema.SecurityGroup, Create: createSecurityGroup, Update: updateSecurityGroup,
		Delete: deleteSecurityGroup, Visible: securityGroupVisible, Present: rbac.Present, Prepare: ensureDefault, Quota: "security_group"}); err != nil {
		return err
	}
	return r.Resource(&plugin.Handler{Res: schema.SecurityGroupRule, Create: createRule, Delete: deleteRule, Visible: ruleVisible,
		MayDelete: ruleGroupOwner, Prepare: ensureDefault, Quota: "security_group_rule"})
}

// portCreated gives a new port its groups: those asked for (which must
// exist and be usable by the caller), else the project's default group
// when the port has port security and is not a network device's.
func portCreated(c *plugin.Ctx, p *plugin.Payload) error {
	port, in := p.New, p.Request
	ps := port["port_security_enabled"] == true
	sgs, given := in["security_groups"].([]any)
	switch {
	case given && len(sgs) > 0 && !ps:
		return ml2.PortSecurityRequired()
	case given:
		if err := checkGroups(c, sgs); err != nil {
			return err
		}
	case ps && !strings.HasPrefix(attr.Str(port, "device_owner"), "network:"):
		sg, err := ensureDefaultSG(c, attr.Str(port, "project_id"))
		if err != nil {
			return err
		}
		sgs = []any{sg}
	default:
		sgs = []any{}
	}
	port["security_groups"] = sgs
	return nil
}

// portUpdated checks a port's new groups, and that port security goes off
// only with no group left.
func portUpdated(c *plugin.Ctx, p *plugin.Payload) error {
	port := p.New
	ps := port["port_security_enabled"] == true
	if v, ok := p.Request["security_groups"]; ok {
		sgs, _ := v.([]any)
		if len(sgs) > 0 && !ps {
			return ml2.PortSecurityRequired()
		}
		if err := checkGroups(c, sgs); err != nil {
			return err
		}
		if sgs == nil {
			sgs = []any{}
		}
		port["security_groups"] = sgs
	} else if !ps && len(attr.List(p.Old, "security_groups")) > 0 {
		return fault.New(http.StatusConflict, "PortSecurityPortHasSecurityGroup",
			"Port has security group associated. Cannot disable port security or IP address until security group is removed.")
	}
	return nil
}

func sgNotFound(id string) error {
	return fault.New(http.StatusNotFound, "SecurityGroupNotFound", "Security group %s does not exist", id)
}

func securityGroupVisible(c *plugin.Ctx, o plugin.Object) bool {
	return rbac.SharedWith(o, "access_as_shared", c.ProjectID)
}

func ruleVisible(c *plugin.Ctx, o plugin.Object) bool {
	sg, err := c.Tx.Get(schema.SecurityGroup.Kind, attr.Str(o, "security_group_id"))
	return err == nil && (attr.Str(sg, "project_id") == c.ProjectID || securityGroupVisible(c, sg))
}

// checkGroups verifies that every group exists and is usable by the caller.
func checkGroups(c *plugin.Ctx, ids []any) error {
	for _, v := range ids {
		id, _ := v.(string)
		sg, err := c.Tx.Get(schema.SecurityGroup.Kind, id)
		if err != nil || !c.CanSee(schema.SecurityGroup, sg) {
			return sgNotFound(id)
		}
	}
	return nil
}

func newGroup(c *plugin.Ctx, id, project, name, description string, stateful bool) plugin.Object {
	o := plugin.Object{"id": id, "project_id": project, "name": name, "description": description, "stateful": stateful,
		"shared": false, "security_group_rules": []any{}, rbac.Key: map[string]any{}}
	c.Stamp(o)
	return o
}

func newRule(c *plugin.Ctx, sg plugin.Object, direction, ethertype string, remoteGroup any, description any) plugin.Object {
	r := plugin.Object{"id": plugin.NewID(), "project_id": sg["project_id"], "security_group_id": sg["id"], "direction": direction,
		"ethertype": ethertype, "protocol": nil, "port_range_min": nil, "port_range_max": nil, "remote_ip_prefix": nil,
		"normalized_cidr": nil, "remote_group_id": remoteGroup, "description": description}
	c.Stamp(r)
	r["revision_number"] = float64(0)
	return r
}

// embed is the form of a rule inside its group's security_group_rules.
func embed(r plugin.Object) map[string]any {
	m := map[string]any{}
	for _, a := range schema.SecurityGroupRule.Attrs {
		if v, ok := r[a.Name]; ok {
			m[a.Name] = v
		}
	}
	m["tenant_id"] = r["project_id"]
	return m
}

// storeGroupWithRules writes a new group and its rules.
func storeGroupWithRules(c *plugin.Ctx, sg plugin.Object, rules []plugin.Object) error {
	l := make([]any, 0, len(rules))
	for _, r := range rules {
		if err := c.Put(schema.SecurityGroupRule, r); err != nil {
			return err
		}
		l = append(l, embed(r))
	}
	sg["security_group_rules"] = l
	return c.Put(schema.SecurityGroup, sg)
}

// ensureDefaultSG returns the id of project's default group, creating it
// with Neutron's default rules when missing.
func ensureDefaultSG(c *plugin.Ctx, project string) (string, error) {
	if id, err := defaultSG(c.Tx, project); err != nil || id != "" {
		return id, err
	}
	sg := newGroup(c, plugin.NewID(), project, "default", "Default security group", true)
	sg["revision_number"] = float64(1)
	var rules []plugin.Object
	for _, et := range []string{"IPv4", "IPv6"} {
		rules = append(rules, newRule(c, sg, "egress", et, nil, nil), newRule(c, sg, "ingress", et, sg["id"], nil))
	}
	if err := storeGroupWithRules(c, sg, rules); err != nil {
		return "", err
	}
	return attr.Str(sg, "id"), nil
}

// defaultSG finds project's default group ("" if none).
func defaultSG(tx *store.Tx, project string) (string, error) {
	groups, err := tx.List(schema.SecurityGroup.Kind, store.Filter{Projects: []string{project}})
	if err != nil {
		return "", err
	}
	for _, g := range groups {
		if attr.Str(g, "name") == "default" {
			return attr.Str(g, "id"), nil
		}
	}
	return "", nil
}

// ensureDefault creates the caller's default group on its first security
// group request, as Neutron does.
func ensureDefault(ctx context.Context, reg *plugin.Registry, caller *policy.Caller) error {
	project := caller.ProjectID
	if project == "" {
		return nil
	}
	found := false
	err := reg.DB.Read(ctx, func(tx *store.Tx) error {
		id, err := defaultSG(tx, project)
		found = id != ""
		return err
	})
	if err != nil || found {
		return err
	}
	_, err = reg.Write(ctx, func(c *plugin.Ctx) error {
		_, err := ensureDefaultSG(c, project)
		return err
	})
	return err
}

func createSecurityGroup(c *plugin.Ctx, in plugin.Object) (plugin.Object, error) {
	project := attr.Str(in, "project_id")
	if attr.Str(in, "name") == "default" {
		if _, err := ensureDefaultSG(c, project); err != nil {
			return nil, err
		}
		return nil, fault.Conflict("SecurityGroupDefaultAlreadyExists", "Default security group already exists.")
	}
	if _, err := ensureDefaultSG(c, project); err != nil {
		return nil, err
	}
	sg := newGroup(c, attr.Str(in, "id"), project, attr.Str(in, "name"), attr.Str(in, "description"), attr.Bool(in, "stateful"))
	var rules []plugin.Object
	for _, et := range []string{"IPv4", "IPv6"} {
		rules = append(rules, newRule(c, sg, "egress", et, nil, nil))
	}
	if err := storeGroupWithRules(c, sg, rules); err != nil {
		return nil, err
	}
	return sg, nil
}

func updateSecurityGroup(c *plugin.Ctx, cur, in plugin.Object) (plugin.Object, error) {
	if attr.Str(cur, "name") == "default" {
		if n, ok := in["name"]; ok && n != "default" {
			return nil, fault.Conflict("SecurityGroupCannotUpdateDefault", "Updating default security group not allowed.")
		}
	} else if in["name"] == "default" {
		return nil, fault.Conflict("SecurityGroupDefaultAlreadyExists", "Default security group already exists.")
	}
	if v, ok := in["stateful"].(bool); ok && v != attr.Bool(cur, "stateful") {
		if used, err := groupPorts(c, attr.Str(cur, "id")); err != nil || used {
			if err != nil {
				return nil, err
			}
			return nil, fault.Conflict("SecurityGroupInUse", "Security Group %s in use.", attr.Str(cur, "id"))
		}
	}
	return attr.Merge(cur, in), nil
}

// groupPorts reports whether any port uses group id.
func groupPorts(c *plugin.Ctx, id string) (bool, error) {
	ports, err := groupMembers(c, id)
	return len(ports) > 0, err
}

// groupMembers lists the ports in security group id.
func groupMembers(c *plugin.Ctx, id string) ([]plugin.Object, error) {
	return c.Tx.List(schema.Port.Kind, store.Filter{Attr: "security_groups", Values: []string{id}})
}

func deleteSecurityGroup(c *plugin.Ctx, cur plugin.Object) error {
	id := attr.Str(cur, "id")
	if attr.Str(cur, "name") == "default" && !c.Admin {
		return fault.Conflict("SecurityGroupCannotRemoveDefault", "Insufficient rights for removing default security group.")
	}
	if used, err := groupPorts(c, id); err != nil {
		return err
	} else if used {
		return fault.Conflict("SecurityGroupInUse", "Security Group %s in use.", id)
	}
	if _, err := c.Tx.DeleteChildren(schema.SecurityGroupRule.Kind, id); err != nil {
		return err
	}
	// Rules of other groups that admit this group's members go with it.
	all, err := c.Tx.List(schema.SecurityGroupRule.Kind, store.Filter{})
	if err != nil {
		return err
	}
	for _, r := range all {
		if attr.Str(r, "remote_group_id") == id && attr.Str(r, "security_group_id") != id {
			if err := deleteRule(c, r); err != nil {
				return err
			}
		}
	}
	return c.Tx.Delete(schema.SecurityGroup.Kind, id)
}

// normalizeProtocol returns the rule's protocol as stored and its number
// (-1 for any).
func normalizeProtocol(v any, ethertype string) (any, int, error) {
	if v == nil {
		return nil, -1, nil
	}
	s := schema.Render(v)
	if s == "" || strings.EqualFold(s, "any") {
		return nil, -1, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 || n > 255 {
			return nil, 0, invalidProtocol(s)
		}
		if ethertype == "IPv6" && n == 1 {
			return "ipv6-icmp", 58, nil
		}
		return s, n, nil
	}
	n, ok := protocolNumbers[strings.ToLower(s)]
	if !ok {
		return nil, 0, invalidProtocol(s)
	}
	s = strings.ToLower(s)
	if ethertype == "IPv6" && (s == "icmp" || s == "icmpv6") {
		s = "ipv6-icmp"
	}
	return s, n, nil
}

func invalidProtocol(s string) error {
	return fault.New(http.StatusBadRequest, "SecurityGroupRuleInvalidProtocol",
		"Security group rule protocol %s not supported. Only protocol values %s and integer representations [0 to 255] are supported.", s, protocolList)
}

func createRule(c *plugin.Ctx, in plugin.Object) (plugin.Object, error) {
	sgID := attr.Str(in, "security_group_id")
	sg, err := c.Tx.Get(schema.SecurityGroup.Kind, sgID)
	if err != nil || !c.CanSee(schema.SecurityGroup, sg) {
		return nil, sgNotFound(sgID)
	}
	if !c.Owns(attr.Str(sg, "project_id")) {
		return nil, fault.Forbidden("(rule:create_security_group_rule) is disallowed by policy")
	}
	et := attr.Str(in, "ethertype")
	proto, pnum, err := normalizeProtocol(in["protocol"], et)
	if err != nil {
		return nil, err
	}
	pmin, hasMin := in["port_range_min"].(float64)
	pmax, hasMax := in["port_range_max"].(float64)
	switch {
	case (hasMin || hasMax) && pnum < 0:
		return nil, fault.New(http.StatusBadRequest, "SecurityGroupProtocolRequiredWithPorts", "Must also specify protocol if port range is given.")
	case pnum == 1 || pnum == 58:
		if hasMin && (pmin < 0 || pmin > 255) {
			return nil, fault.New(http.StatusBadRequest, "SecurityGroupInvalidIcmpValue", "Invalid value for ICMP %s (%s) %d. It must be 0 to 255.", "type", "port_range_min", int(pmin))
		}
		if hasMax && (pmax < 0 || pmax > 255) {
			return nil, fault.New(http.StatusBadRequest, "SecurityGroupInvalidIcmpValue", "Invalid value for ICMP %s (%s) %d. It must be 0 to 255.", "code", "port_range_max", int(pmax))
		}
		if hasMax && !hasMin {
			return nil, fault.New(http.StatusBadRequest, "SecurityGroupMissingIcmpType", "ICMP code (port-range-max) %d is provided but ICMP type (port-range-min) is missing.", int(pmax))
		}
	case pnum == 6 || pnum == 17 || pnum == 33 || pnum == 132 || pnum == 136:
		for _, p := range []struct {
			v  float64
			ok bool
		}{{pmin, hasMin}, {pmax, hasMax}} {
			if p.ok && (p.v < 1 || p.v > 65535) {
				return nil, fault.New(http.StatusBadRequest, "SecurityGroupInvalidPortValue", "Invalid value for port %d", int(p.v))
			}
		}
		if hasMin && hasMax && pmin > pmax {
			return nil, fault.New(http.StatusBadRequest, "SecurityGroupInvalidPortRange", "For TCP/UDP protocols, port_range_min must be <= port_range_max")
		}
		if hasMin != hasMax {
			if hasMin {
				pmax, hasMax = pmin, true
				in["port_range_max"] = pmin
			} else {
				return nil, fault.New(http.StatusBadRequest, "SecurityGroupInvalidPortRange", "For TCP/UDP protocols, port_range_min must be <= port_range_max")
			}
		}
	case hasMin || hasMax:
		return nil, fault.New(http.StatusBadRequest, "SecurityGroupInvalidProtocolForPortRange",
			"Invalid protocol %s for port range, only supported for TCP, UDP, UDPLITE, SCTP and DCCP.", schema.Render(proto))
	}
	var normalized any
	if rp, ok := in["remote_ip_prefix"].(string); ok && rp != "" {
		p, err := netip.ParsePrefix(rp)
		if err != nil {
			if a, err2 := netip.ParseAddr(rp); err2 == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			} else {
				return nil, fault.BadRequest("Invalid input for remote_ip_prefix. Reason: '%s' is not a valid IP subnet.", rp)
			}
		}
		if (et == "IPv4") != p.Addr().Is4() {
			return nil, fault.New(http.StatusBadRequest, "SecurityGroupRuleParameterConflict", "Conflicting value ethertype %s for CIDR %s", et, rp)
		}
		normalized = p.Masked().String()
		if rg := in["remote_group_id"]; rg != nil {
			return nil, fault.New(http.StatusBadRequest, "SecurityGroupMultipleRemoteEntites",
				"Only one of remote_ip_prefix or remote_group_id or remote_address_group_id may be provided.")
		}
	} else if v := in["remote_ip_prefix"]; v != nil && v != "" {
		return nil, fault.BadRequest("Invalid input for remote_ip_prefix. Reason: '%s' is not a valid IP subnet.", schema.Render(v))
	} else {
		in["remote_ip_prefix"] = nil
	}
	if rg, ok := in["remote_group_id"].(string); ok {
		g, err := c.Tx.Get(schema.SecurityGroup.Kind, rg)
		if err != nil || !c.CanSee(schema.SecurityGroup, g) {
			return nil, sgNotFound(rg)
		}
	}
	r := plugin.Object{"id": in["id"], "project_id": in["project_id"], "security_group_id": sgID, "direction": in["direction"],
		"ethertype": et, "protocol": proto, "port_range_min": in["port_range_min"], "port_range_max": in["port_range_max"],
		"remote_ip_prefix": in["remote_ip_prefix"], "normalized_cidr": normalized, "remote_group_id": in["remote_group_id"],
		"description": in["description"]}
	if !hasMin {
		r["port_range_min"] = nil
	}
	if !hasMax {
		r["port_range_max"] = nil
	}
	// Duplicates compare normalized values (protocol by number).
	sig := func(o plugin.Object) string {
		_, n, _ := normalizeProtocol(o["protocol"], attr.Str(o, "ethertype"))
		return strings.Join([]string{attr.Str(o, "direction"), attr.Str(o, "ethertype"), strconv.Itoa(n), schema.Render(o["port_range_min"]),
			schema.Render(o["port_range_max"]), schema.Render(o["normalized_cidr"]), schema.Render(o["remote_group_id"])}, "|")
	}
	mine := sig(r)
	for _, e := range attr.List(sg, "security_group_rules") {
		ex, _ := e.(map[string]any)
		if sig(ex) == mine {
			return nil, fault.Conflict("SecurityGroupRuleExists", "Security group rule already exists. Rule id is %s.", attr.Str(ex, "id"))
		}
	}
	c.Stamp(r)
	r["revision_number"] = float64(0)
	if err := c.Put(schema.SecurityGroupRule, r); err != nil {
		return nil, err
	}
	sg["security_group_rules"] = append(attr.List(sg, "security_group_rules"), embed(r))
	if err := c.Touch(schema.SecurityGroup, sg); err != nil {
		return nil, err
	}
	return r, nil
}

// ruleGroupOwner reports whether the caller owns the rule's group (who may
// delete any rule in it, as Neutron's sg_owner rule allows).
func ruleGroupOwner(c *plugin.Ctx, rule plugin.Object) bool {
	sg, err := c.Tx.Get(schema.SecurityGroup.Kind, attr.Str(rule, "security_group_id"))
	return err == nil && c.Owns(attr.Str(sg, "project_id"))
}

func deleteRule(c *plugin.Ctx, cur plugin.Object) error {
	id := attr.Str(cur, "id")
	sg, err := c.Tx.Get(schema.SecurityGroup.Kind, attr.Str(cur, "security_group_id"))
	if err != nil {
		sg = nil
	}
	if err := c.Tx.Delete(schema.SecurityGroupRule.Kind, id); err != nil {
		return err
	}
	if sg == nil {
		return nil
	}
	var keep []any
	for _, e := range attr.List(sg, "security_group_rules") {
		if m, _ := e.(map[string]any); attr.Str(m, "id") != id {
			keep = append(keep, e)
		}
	}
	sg["security_group_rules"] = attr.OrEmpty(keep)
	return c.Touch(schema.SecurityGroup, sg)
}
