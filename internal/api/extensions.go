package api

import (
	"net/http"

	"neutrino/internal/fault"
	"neutrino/internal/policy"
	"neutrino/internal/store"
)

// extension is one entry of /v2.0/extensions. Only what is implemented is
// listed: clients and Tempest decide what to exercise from this list.
type extension struct{ alias, name, description, updated string }

var extensionList = []extension{
	{"agent", "agent", "The agent management extension.", "2013-02-03T10:00:00-00:00"},
	{"allowed-address-pairs", "Allowed Address Pairs", "Provides allowed address pairs", "2013-07-23T10:00:00-00:00"},
	{"binding", "Port Binding", "Expose port bindings of a virtual port to external application", "2014-02-03T10:00:00-00:00"},
	{"dvr", "Distributed Virtual Router", "Enables configuration of Distributed Virtual Routers.", "2014-06-1T10:00:00-00:00"},
	{"dhcp_agent_scheduler", "DHCP Agent Scheduler", "Schedule networks among dhcp agents", "2013-02-07T10:00:00-00:00"},
	{"default-subnetpools", "Default Subnetpools", "Provides ability to mark and use a subnetpool as the default.", "2016-02-18T18:00:00-00:00"},
	{"empty-string-filtering", "Empty String Filtering Extension", "Allow filtering by attributes with empty string value", "2018-05-01T10:00:00-00:00"},
	{"external-net", "Neutron external network", "Adds external network attribute to network resource.", "2013-01-14T10:00:00-00:00"},
	{"ext-gw-mode", "Neutron L3 Configurable external gateway mode", "Extension of the router abstraction for specifying whether SNAT should occur on the external gateway", "2013-03-28T10:00:00-00:00"},
	{"extra_dhcp_opt", "Neutron Extra DHCP options", "Extra options configuration for DHCP. For example PXE boot options to DHCP clients can be specified (e.g. tftp-server, server-ip-address, bootfile-name)", "2013-03-17T12:00:00-00:00"},
	{"extraroute", "Neutron Extra Route", "Extra routes configuration for L3 router", "2013-02-01T10:00:00-00:00"},
	{"extraroute-atomic", "Atomically add/remove extra routes", "Edit extra routes of a router on server side by atomically adding/removing extra routes", "2019-07-10T10:00:00-00:00"},
	{"fip-port-details", "Floating IP Port Details Extension", "Add port_details attribute to Floating IP resource", "2018-04-09T10:00:00-00:00"},
	{"filter-validation", "Filter parameters validation", "Provides validation on filter parameters.", "2018-07-04T10:00:00-00:00"},
	{"ip-substring-filtering", "IP address substring filtering", "Provides IP address substring filtering when listing ports", "2017-11-28T09:00:00-00:00"},
	{"ip_allocation", "IP Allocation", "IP allocation extension.", "2016-06-10T23:00:00-00:00"},
	{"l3_agent_scheduler", "L3 Agent Scheduler", "Schedule routers among l3 agents", "2013-02-07T10:00:00-00:00"},
	{"l3-ha", "HA Router extension", "Adds HA capability to routers.", "2014-04-26T00:00:00-00:00"},
	{"l2_adjacency", "L2 Adjacency", "Display L2 Adjacency for Neutron Networks.", "2016-04-12T16:00:00-00:00"},
	{"metering", "Neutron Metering", "Neutron Metering extension.", "2013-06-12T10:00:00-00:00"},
	{"metering_source_and_destination_fields", "Neutron Metering with source and destination filtering", "Neutron Metering extension that enables the use of source and destination IP prefixes to create metering label rules.", "2020-08-21T08:12:00-00:00"},
	{"multi-provider", "Multi Provider Network", "Expose mapping of virtual networks to multiple physical networks", "2013-06-27T10:00:00-00:00"},
	{"net-mtu", "Network MTU", "Provides MTU attribute for a network resource.", "2015-03-25T10:00:00-00:00"},
	{"net-mtu-writable", "Network MTU (writable)", "Provides a writable MTU attribute for a network resource.", "2017-07-12T00:00:00-00:00"},
	{"pagination", "Pagination support", "Extension that indicates that pagination is enabled.", "2016-06-12T00:00:00-00:00"},
	{"port-security", "Port Security", "Provides port security", "2012-07-23T10:00:00-00:00"},
	{"project-id", "project_id field enabled", "Extension that indicates that project_id field is enabled.", "2016-09-09T09:09:09-09:09"},
	{"provider", "Provider Network", "Expose mapping of virtual networks to physical networks", "2012-09-07T10:00:00-00:00"},
	{"quotas", "Quota management support", "Expose functions for quotas management per project", "2012-07-29T10:00:00-00:00"},
	{"quota_details", "Quota details management support", "Expose functions for quotas usage statistics per project", "2017-02-10T10:00:00-00:00"},
	{"quota-check-limit", "Quota engine limit check", "Support for checking the resource usage before applying a new quota limit", "2021-09-08T16:00:00-00:00"},
	{"rbac-policies", "RBAC Policies", "Allows creation and modification of policies that control tenant access to resources.", "2015-06-17T12:15:12-00:00"},
	{"rbac-security-groups", "Add security_group type to network RBAC", "Add security_group type to network RBAC", "2019-02-14T00:00:00-00:00"},
	{"rbac-subnetpool", "Add subnetpool type to RBAC", "Add subnetpool type to RBAC", "2020-02-05T00:00:00-00:00"},
	{"router", "Neutron L3 Router", "Router abstraction for basic L3 forwarding between L2 Neutron networks and access to external networks via a NAT gateway.", "2012-07-20T10:00:00-00:00"},
	{"revision-if-match", "If-Match constraints based on revision_number", "Extension indicating that If-Match based on revision_number is supported.", "2016-12-11T00:00:00-00:00"},
	{"security-group", "security-group", "The security groups extension.", "2012-10-05T10:00:00-00:00"},
	{"security-groups-normalized-cidr", "Normalized CIDR field for security group rules", "Add new field with normalized remote_ip_prefix cidr in SG rule", "2020-07-28T10:00:00-00:00"},
	{"security-groups-shared-filtering", "Security group filtering on the shared field", "Support filtering security groups on the shared field", "2021-10-05T09:00:00-00:00"},
	{"sorting", "Sorting support", "Extension that indicates that sorting is enabled.", "2016-06-12T00:00:00-00:00"},
	{"standard-attr-description", "standard-attr-description", "Extension to add descriptions to standard attributes", "2016-02-10T10:00:00-00:00"},
	{"standard-attr-revisions", "Resource revision numbers", "This extension will display the revision number of neutron resources.", "2016-04-11T10:00:00-00:00"},
	{"standard-attr-tag", "Tag support for resources with standard attribute: port, subnet, subnetpool, network, security_group", "Enables to set tag on resources with standard attribute.", "2017-01-01T00:00:00-00:00"},
	{"standard-attr-timestamp", "Resource timestamps", "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes.", "2016-09-12T10:00:00-00:00"},
	{"stateful-security-group", "Stateful security group", "Indicates if the security group is stateful or not", "2019-11-26T09:00:00-00:00"},
	{"subnet_allocation", "Subnet Allocation", "Enables allocation of subnets from a subnet pool", "2015-03-30T10:00:00-00:00"},
	{"subnet-service-types", "Subnet service types", "Provides ability to set the subnet service_types field", "2016-03-15T18:00:00-00:00"},
}

func (e extension) render() map[string]any {
	return map[string]any{"alias": e.alias, "name": e.name, "description": e.description, "updated": e.updated, "links": []any{}}
}

// Extensions lists the aliases served (for tooling and tests).
func Extensions() []string {
	out := make([]string, 0, len(extensionList))
	for _, e := range extensionList {
		out = append(out, e.alias)
	}
	return out
}

func (s *Server) extensions(w http.ResponseWriter, r *http.Request, rest []string) {
	if r.Method != http.MethodGet {
		s.writeError(w, r, methodNotAllowed())
		return
	}
	if len(rest) == 0 {
		out := make([]any, 0, len(extensionList))
		for _, e := range extensionList {
			out = append(out, e.render())
		}
		writeJSON(w, http.StatusOK, map[string]any{"extensions": out})
		return
	}
	for _, e := range extensionList {
		if e.alias == rest[0] {
			writeJSON(w, http.StatusOK, map[string]any{"extension": e.render()})
			return
		}
	}
	s.writeError(w, r, fault.New(http.StatusNotFound, "HTTPNotFound", "Extension with alias %s does not exist", rest[0]))
}

// quotas serves /v2.0/quotas[/<project>[/default|/details]].
func (s *Server) quotas(w http.ResponseWriter, r *http.Request, rest []string) {
	c := policy.From(r.Context())
	err := func() error {
		if len(rest) == 0 {
			if r.Method != http.MethodGet {
				return methodNotAllowed()
			}
			if !c.Admin {
				return fault.Forbidden("rule:get_quota is disallowed by policy")
			}
			var out []any
			err := s.DB.Read(r.Context(), func(tx *store.Tx) error {
				cc := s.Core.NewCtx(r.Context(), tx)
				projects, err := cc.QuotaProjects()
				if err != nil {
					return err
				}
				for _, p := range projects {
					q, err := cc.Quotas(p)
					if err != nil {
						return err
					}
					q["project_id"], q["tenant_id"] = p, p
					out = append(out, q)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if out == nil {
				out = []any{}
			}
			writeJSON(w, http.StatusOK, map[string]any{"quotas": out})
			return nil
		}
		project := rest[0]
		if project == "tenant" || project == "project" {
			writeJSON(w, http.StatusOK, map[string]any{project: map[string]any{project + "_id": c.ProjectID}})
			return nil
		}
		if project != c.ProjectID && !c.Admin {
			return fault.Forbidden("rule:get_quota is disallowed by policy")
		}
		sub := ""
		if len(rest) > 1 {
			sub = rest[1]
		}
		switch {
		case r.Method == http.MethodGet && sub == "default":
			writeJSON(w, http.StatusOK, map[string]any{"quota": s.Core.DefaultQuotas()})
			return nil
		case r.Method == http.MethodGet && (sub == "details" || sub == ""):
			var q map[string]any
			err := s.DB.Read(r.Context(), func(tx *store.Tx) error {
				cc := s.Core.NewCtx(r.Context(), tx)
				var err error
				if sub == "details" {
					q, err = cc.QuotaDetails(project)
				} else {
					q, err = cc.Quotas(project)
				}
				return err
			})
			if err != nil {
				return err
			}
			writeJSON(w, http.StatusOK, map[string]any{"quota": q})
			return nil
		case r.Method == http.MethodPut && sub == "":
			if !c.Admin {
				return fault.Forbidden("rule:update_quota is disallowed by policy")
			}
			body, err := readBody(r)
			if err != nil {
				return err
			}
			var in map[string]any
			if m, err := decodeMember(body, "quota"); err != nil {
				return err
			} else {
				in = m
			}
			var q map[string]any
			_, err = s.DB.Write(r.Context(), func(tx *store.Tx) error {
				var err error
				q, err = s.Core.NewCtx(r.Context(), tx).SetQuotas(project, in)
				return err
			})
			if err != nil {
				return err
			}
			writeJSON(w, http.StatusOK, map[string]any{"quota": q})
			return nil
		case r.Method == http.MethodDelete && sub == "":
			if !c.Admin {
				return fault.Forbidden("rule:delete_quota is disallowed by policy")
			}
			_, err := s.DB.Write(r.Context(), func(tx *store.Tx) error {
				return s.Core.NewCtx(r.Context(), tx).ResetQuotas(project)
			})
			if err != nil {
				return err
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
		if sub != "" && sub != "default" && sub != "details" {
			return notFoundErr
		}
		return methodNotAllowed()
	}()
	if err != nil {
		s.writeError(w, r, err)
	}
}
