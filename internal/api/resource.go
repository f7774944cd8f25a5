package api

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"

	"neutrino/internal/core"
	"neutrino/internal/fault"
	"neutrino/internal/jsonx"
	"neutrino/internal/policy"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// collection serves /v2.0/<collection>[/<id>[/tags[/<tag>]]].
func (s *Server) collection(w http.ResponseWriter, r *http.Request, res *schema.Resource, rest []string) {
	var err error
	switch {
	case len(rest) == 0:
		switch r.Method {
		case http.MethodGet:
			err = s.list(w, r, res)
		case http.MethodPost:
			err = s.create(w, r, res)
		case http.MethodPut, http.MethodDelete:
			err = fault.NotFound(typeName(res), typeName(res), "None")
		default:
			err = methodNotAllowed()
		}
	case len(rest) == 1:
		switch r.Method {
		case http.MethodGet:
			err = s.show(w, r, res, rest[0])
		case http.MethodPut:
			err = s.update(w, r, res, rest[0])
		case http.MethodDelete:
			err = s.delete(w, r, res, rest[0])
		default:
			err = methodNotAllowed()
		}
	case rest[1] == "tags" && res.Standard:
		err = s.tags(w, r, res, rest[0], rest[2:])
	case res == schema.Agent && rest[1] == "dhcp-networks" || res == schema.Network && rest[1] == "dhcp-agents":
		err = s.agentScheduler(w, r, res, rest, s.dhcpScheduling())
	case res == schema.Agent && rest[1] == "l3-routers" || res == schema.Router && rest[1] == "l3-agents":
		err = s.agentScheduler(w, r, res, rest, s.l3Scheduling())
	case res == schema.Router && len(rest) == 2:
		err = s.routerAction(w, r, rest[0], rest[1])
	default:
		err = notFoundErr
	}
	if err != nil {
		s.writeError(w, r, err)
	}
}

func typeName(res *schema.Resource) string {
	switch res {
	case schema.Network:
		return "Network"
	case schema.Subnet:
		return "Subnet"
	case schema.Port:
		return "Port"
	}
	return res.Member
}

// renderMemo renders o, reusing the encoding kept with this version of the
// object when the view holds it (full objects only, one per visibility).
func (s *Server) renderMemo(c *core.Ctx, tx *store.Tx, res *schema.Resource, o schema.Object, fields []string) any {
	p := s.Core.Present(c, res, o)
	memo := tx.Memo(res.Kind, o)
	if len(fields) > 0 || memo == nil || !sameObject(p, o) {
		return s.render(c, res, o, fields)
	}
	key := "member"
	if c.Admin {
		key = "admin"
	}
	if b, ok := memo.Load(key); ok {
		return jsonx.Raw(b)
	}
	b, err := jsonx.Append(nil, res.Render(c.Caller, p, nil))
	if err != nil {
		return s.render(c, res, o, fields)
	}
	memo.Store(key, b)
	return jsonx.Raw(b)
}

func sameObject(a, b schema.Object) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

func (s *Server) render(c *core.Ctx, res *schema.Resource, o schema.Object, fields []string) schema.Ordered {
	return res.Render(c.Caller, s.Core.Present(c, res, o), fields)
}

// beforeSecurityGroups creates the caller's default group on its first
// security group request, as Neutron does.
func (s *Server) beforeSecurityGroups(r *http.Request, res *schema.Resource) error {
	if res != schema.SecurityGroup && res != schema.SecurityGroupRule {
		return nil
	}
	c := policy.From(r.Context())
	return s.Core.EnsureDefaultSG(r.Context(), c.ProjectID)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, res *schema.Resource) error {
	c := policy.From(r.Context())
	q := r.URL.Query()
	lq, err := parseList(res, c, q)
	if err != nil {
		return err
	}
	if err := s.beforeSecurityGroups(r, res); err != nil {
		return err
	}
	var out []any
	var links []map[string]any
	err = s.DB.Read(r.Context(), func(tx *store.Tx) error {
		cc := s.Core.NewCtx(r.Context(), tx)
		var marker schema.Object
		if lq.marker != "" {
			m, err := s.Core.Get(cc, res, lq.marker)
			if err != nil {
				return err
			}
			marker = m
		}
		objs, err := s.Core.List(cc, res, lq.pushdown(res))
		if err != nil {
			return err
		}
		matched := make([]schema.Object, 0, len(objs))
		for _, o := range objs {
			if lq.match(res, s.Core.Present(cc, res, o)) {
				matched = append(matched, o)
			}
		}
		page, l := lq.page(matched, marker, s.baseURL(r)+r.URL.Path, q)
		links = l
		out = make([]any, 0, len(page))
		for _, o := range page {
			out = append(out, s.renderMemo(cc, tx, res, o, lq.fields))
		}
		return nil
	})
	if err != nil {
		return err
	}
	body := map[string]any{res.Collection: out}
	if len(links) > 0 {
		body[res.Collection+"_links"] = links
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

func fieldsOf(q url.Values) []string {
	var out []string
	for _, f := range q["fields"] {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

func (s *Server) show(w http.ResponseWriter, r *http.Request, res *schema.Resource, id string) error {
	if err := s.beforeSecurityGroups(r, res); err != nil {
		return err
	}
	var out schema.Ordered
	err := s.DB.Read(r.Context(), func(tx *store.Tx) error {
		cc := s.Core.NewCtx(r.Context(), tx)
		o, err := s.Core.Get(cc, res, id)
		if err != nil {
			return err
		}
		out = s.render(cc, res, o, fieldsOf(r.URL.Query()))
		return nil
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{res.Member: out})
	return nil
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, res *schema.Resource) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	items, bulk, err := res.ParseBody(body)
	if err != nil {
		return err
	}
	c := policy.From(r.Context())
	parsed := make([]schema.Object, 0, len(items))
	for _, it := range items {
		p, err := res.ParseCreate(c, it)
		if err != nil {
			return err
		}
		parsed = append(parsed, p)
	}
	var out []any
	_, err = s.DB.Write(r.Context(), func(tx *store.Tx) error {
		cc := s.Core.NewCtx(r.Context(), tx)
		out = out[:0]
		for _, p := range parsed {
			// A write may run more than once (see store.Write): each run
			// gets its own copy of the input, which Create may consume.
			o, err := s.Core.Create(cc, res, jsonx.Copy(p).(schema.Object))
			if err != nil {
				return err
			}
			out = append(out, s.render(cc, res, o, nil))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if bulk {
		writeJSON(w, http.StatusCreated, map[string]any{res.Collection: out})
	} else {
		writeJSON(w, http.StatusCreated, map[string]any{res.Member: out[0]})
	}
	return nil
}

func (s *Server) update(w http.ResponseWriter, r *http.Request, res *schema.Resource, id string) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	in, err := res.ParseMember(body)
	if err != nil {
		return err
	}
	c := policy.From(r.Context())
	upd, err := res.ParseUpdate(c, in)
	if err != nil {
		return err
	}
	want, err := ifMatch(r)
	if err != nil {
		return err
	}
	var out schema.Ordered
	_, err = s.DB.Write(r.Context(), func(tx *store.Tx) error {
		cc := s.Core.NewCtx(r.Context(), tx)
		o, err := s.Core.Update(cc, res, id, jsonx.Copy(upd).(schema.Object), want)
		if err != nil {
			return err
		}
		out = s.render(cc, res, o, nil)
		return nil
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{res.Member: out})
	return nil
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, res *schema.Resource, id string) error {
	want, err := ifMatch(r)
	if err != nil {
		return err
	}
	_, err = s.DB.Write(r.Context(), func(tx *store.Tx) error {
		return s.Core.Delete(s.Core.NewCtx(r.Context(), tx), res, id, want)
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// tags serves the tag sub-resource of standard resources.
func (s *Server) tags(w http.ResponseWriter, r *http.Request, res *schema.Resource, id string, rest []string) error {
	if len(rest) > 1 {
		return notFoundErr
	}
	if r.Method == http.MethodGet {
		var tags []any
		err := s.DB.Read(r.Context(), func(tx *store.Tx) error {
			o, err := s.Core.Get(s.Core.NewCtx(r.Context(), tx), res, id)
			if err != nil {
				return err
			}
			tags, _ = o["tags"].([]any)
			return nil
		})
		if err != nil {
			return err
		}
		if len(rest) == 1 {
			for _, t := range tags {
				if t == rest[0] {
					w.WriteHeader(http.StatusNoContent)
					return nil
				}
			}
			return fault.New(http.StatusNotFound, "TagNotFound", "Tag %s could not be found for %s %s.", rest[0], res.Member, id)
		}
		if tags == nil {
			tags = []any{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"tags": tags})
		return nil
	}
	var op string
	var tags []any
	switch {
	case r.Method == http.MethodPut && len(rest) == 0:
		body, err := readBody(r)
		if err != nil {
			return err
		}
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(body, &doc); err != nil {
			return fault.BadRequest("Malformed request body")
		}
		raw, ok := doc["tags"]
		if !ok || json.Unmarshal(raw, &tags) != nil {
			return fault.BadRequest("Invalid input for tags. Reason: '%s' is not a list.", string(raw))
		}
		op = "replace"
	case r.Method == http.MethodPut:
		op, tags = "add", []any{rest[0]}
	case r.Method == http.MethodDelete && len(rest) == 0:
		op = "clear"
	case r.Method == http.MethodDelete:
		op, tags = "remove", []any{rest[0]}
	default:
		return methodNotAllowed()
	}
	var out schema.Object
	_, err := s.DB.Write(r.Context(), func(tx *store.Tx) error {
		o, err := s.Core.SetTags(s.Core.NewCtx(r.Context(), tx), res, id, op, tags)
		out = o
		return err
	})
	if err != nil {
		return err
	}
	switch op {
	case "replace":
		writeJSON(w, http.StatusOK, map[string]any{"tags": out["tags"]})
	case "add":
		writeJSON(w, http.StatusCreated, nil)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
	return nil
}

// routerAction serves PUT /routers/{id}/add_router_interface,
// remove_router_interface, add_extraroutes and remove_extraroutes.
func (s *Server) routerAction(w http.ResponseWriter, r *http.Request, id, action string) error {
	switch action {
	case "add_router_interface", "remove_router_interface", "add_extraroutes", "remove_extraroutes":
	default:
		return notFoundErr
	}
	if r.Method != http.MethodPut {
		return methodNotAllowed()
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var in map[string]any
	if json.Unmarshal(body, &in) != nil || in == nil {
		return fault.BadRequest("Malformed request body")
	}
	var out any
	_, err = s.DB.Write(r.Context(), func(tx *store.Tx) error {
		cc := s.Core.NewCtx(r.Context(), tx)
		switch action {
		case "add_router_interface", "remove_router_interface":
			add := action == "add_router_interface"
			var ri *core.RouterInterface
			var err error
			in := jsonx.Copy(in).(map[string]any)
			if add {
				ri, err = s.Core.AddRouterInterface(cc, id, in)
			} else {
				ri, err = s.Core.RemoveRouterInterface(cc, id, in)
			}
			if err != nil {
				return err
			}
			out = ri.Render()
		default:
			o, err := s.Core.ExtraRoutes(cc, id, jsonx.Copy(in).(map[string]any), action == "add_extraroutes")
			if err != nil {
				return err
			}
			out = map[string]any{"router": s.render(cc, schema.Router, o, nil)}
		}
		return nil
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// scheduling describes one agent scheduler extension: which objects an
// agent hosts and how they are listed, added and removed.
type scheduling struct {
	object   *schema.Resource // what agents host (networks, routers)
	idField  string           // the body key naming one on add
	hosted   func(c *core.Ctx, agentID string) ([]schema.Object, error)
	hosting  func(c *core.Ctx, objectID string) ([]schema.Object, error)
	add, del func(c *core.Ctx, agentID, objectID string) error
}

func (s *Server) dhcpScheduling() scheduling {
	return scheduling{object: schema.Network, idField: "network_id", hosted: s.Core.DHCPAgentNetworks,
		hosting: func(c *core.Ctx, id string) ([]schema.Object, error) {
			if !c.Admin {
				return nil, fault.Forbidden("rule:get_dhcp-agents is disallowed by policy")
			}
			return s.Core.NetworkDHCPAgents(c, id)
		}, add: s.Core.AddDHCPNetwork, del: s.Core.RemoveDHCPNetwork}
}

func (s *Server) l3Scheduling() scheduling {
	return scheduling{object: schema.Router, idField: "router_id", hosted: s.Core.L3AgentRouters,
		hosting: s.Core.RouterL3Agents, add: s.Core.AddL3Router, del: s.Core.RemoveL3Router}
}

// agentScheduler serves /agents/{id}/<hosted>[/{object}] (list, add,
// remove) and /<objects>/{id}/<agents> (list), for the DHCP and L3 agent
// scheduler extensions.
func (s *Server) agentScheduler(w http.ResponseWriter, r *http.Request, res *schema.Resource, rest []string, sc scheduling) error {
	id := rest[0]
	switch {
	case r.Method == http.MethodGet && len(rest) == 2:
		var out []any
		err := s.DB.Read(r.Context(), func(tx *store.Tx) error {
			cc := s.Core.NewCtx(r.Context(), tx)
			list, target := sc.hosted, sc.object
			if res != schema.Agent {
				list, target = sc.hosting, schema.Agent
			}
			objs, err := list(cc, id)
			out = make([]any, 0, len(objs))
			for _, o := range objs {
				out = append(out, s.render(cc, target, o, nil))
			}
			return err
		})
		if err != nil {
			return err
		}
		key := sc.object.Collection
		if res != schema.Agent {
			key = schema.Agent.Collection
		}
		writeJSON(w, http.StatusOK, map[string]any{key: out})
		return nil
	case res == schema.Agent && r.Method == http.MethodPost && len(rest) == 2:
		body, err := readBody(r)
		if err != nil {
			return err
		}
		var in map[string]any
		var objectID string
		if json.Unmarshal(body, &in) == nil {
			objectID, _ = in[sc.idField].(string)
		}
		if objectID == "" {
			return fault.BadRequest("Invalid input: %s is required", sc.idField)
		}
		_, err = s.DB.Write(r.Context(), func(tx *store.Tx) error {
			return sc.add(s.Core.NewCtx(r.Context(), tx), id, objectID)
		})
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, nil)
		return nil
	case res == schema.Agent && r.Method == http.MethodDelete && len(rest) == 3:
		_, err := s.DB.Write(r.Context(), func(tx *store.Tx) error {
			return sc.del(s.Core.NewCtx(r.Context(), tx), id, rest[2])
		})
		if err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return methodNotAllowed()
}
