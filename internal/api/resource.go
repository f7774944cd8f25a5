package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"

	"neutrino/internal/fault"
	"neutrino/internal/jsonx"
	"neutrino/internal/plugin"
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
		case http.MethodPut:
			if h := s.Reg.Handler(res); h.Replace != nil {
				err = s.replace(w, r, h.Replace)
			} else {
				err = res.NotFoundError("None")
			}
		case http.MethodDelete:
			err = res.NotFoundError("None")
		default:
			err = fault.MethodNotAllowed()
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
			err = fault.MethodNotAllowed()
		}
	case rest[1] == "tags" && res.Standard:
		err = s.tags(w, r, res, rest[0], rest[2:])
	case s.Reg.NestedOf(res, rest[1]) != nil:
		err = s.nested(w, r, s.Reg.NestedOf(res, rest[1]), rest[0], rest[2:])
	case s.Reg.ChildOf(res, rest[1]) != nil:
		err = s.child(w, r, res, s.Reg.ChildOf(res, rest[1]), rest[0], rest[2:])
	case len(rest) == 2 && s.Reg.Handler(res).Actions[rest[1]] != nil:
		err = s.action(w, r, res, s.Reg.Handler(res).Actions[rest[1]], rest[0])
	case len(rest) == 2 && s.Reg.Handler(res).Views[rest[1]] != nil:
		err = s.view(w, r, s.Reg.Handler(res).Views[rest[1]], rest[0])
	default:
		err = notFoundErr
	}
	if err != nil {
		s.writeError(w, r, err)
	}
}

// scopeKey carries, for a child collection's request, its parent's id.
type scopeKey struct{}

func scopeOf(r *http.Request) string { s, _ := r.Context().Value(scopeKey{}).(string); return s }

// child serves a child collection, /<parent>/{pid}/<child>[/{id}...]:
// the parent must be one the caller sees, a child named must be the
// parent's, and what is listed or created is the parent's.
func (s *Server) child(w http.ResponseWriter, r *http.Request, parent, child *schema.Resource, pid string, rest []string) error {
	err := s.Reg.Read(r.Context(), func(cc *plugin.Ctx) error {
		if _, err := cc.Get(parent, pid); err != nil {
			return err
		}
		if len(rest) > 0 {
			o, err := cc.Get(child, rest[0])
			if err != nil {
				return err
			}
			if p, _ := o[child.Parent].(string); p != pid {
				return child.NotFoundError(rest[0])
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.collection(w, r.WithContext(context.WithValue(r.Context(), scopeKey{}, pid)), child, rest)
	return nil
}

// renderMemo renders o, reusing the encoding kept with this version of the
// object when the view holds it (full objects only, one per visibility).
func (s *Server) renderMemo(c *plugin.Ctx, tx *store.Tx, res *schema.Resource, o schema.Object, fields []string) any {
	p := c.Present(res, o)
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

func (s *Server) render(c *plugin.Ctx, res *schema.Resource, o schema.Object, fields []string) schema.Ordered {
	return res.Render(c.Caller, c.Present(res, o), fields)
}

// prepare runs what the resource's handler asks before any request on
// its collection (the caller's default security group, for instance).
func (s *Server) prepare(r *http.Request, res *schema.Resource) error {
	if h := s.Reg.Handler(res); h.Prepare != nil {
		return h.Prepare(r.Context(), s.Reg, policy.From(r.Context()))
	}
	return nil
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, res *schema.Resource) error {
	c := policy.From(r.Context())
	q := r.URL.Query()
	lq, err := parseList(res, c, q)
	if err != nil {
		return err
	}
	if err := s.prepare(r, res); err != nil {
		return err
	}
	var out []any
	var links []map[string]any
	err = s.DB.Read(r.Context(), func(tx *store.Tx) error {
		cc := s.Reg.NewCtx(r.Context(), tx)
		var marker schema.Object
		if lq.marker != "" {
			m, err := cc.Get(res, lq.marker)
			if err != nil {
				return err
			}
			marker = m
		}
		f := lq.pushdown(res)
		if pid := scopeOf(r); pid != "" {
			f.Parent, f.Parents = pid, nil
		}
		objs, err := cc.List(res, f)
		if err != nil {
			return err
		}
		matched := make([]schema.Object, 0, len(objs))
		for _, o := range objs {
			if lq.match(res, cc.Present(res, o)) {
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
	size := 0
	for _, o := range out {
		if raw, ok := o.(jsonx.Raw); ok {
			size += len(raw) + 1
		}
	}
	writeJSONSized(w, http.StatusOK, body, size+4096)
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
	if err := s.prepare(r, res); err != nil {
		return err
	}
	var out schema.Ordered
	err := s.Reg.Read(r.Context(), func(cc *plugin.Ctx) error {
		o, err := cc.Get(res, id)
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
		if pid := scopeOf(r); pid != "" {
			p[res.Parent] = pid
		}
		parsed = append(parsed, p)
	}
	var out []any
	_, err = s.Reg.Write(r.Context(), func(cc *plugin.Ctx) error {
		out = out[:0]
		for _, p := range parsed {
			// A write may run more than once (see store.Write): each run
			// gets its own copy of the input, which Create may consume.
			o, err := cc.Create(res, jsonx.Copy(p).(schema.Object))
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
	_, err = s.Reg.Write(r.Context(), func(cc *plugin.Ctx) error {
		o, err := cc.Update(res, id, jsonx.Copy(upd).(schema.Object), want)
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
	ctx := plugin.WithQuery(r.Context(), r.URL.Query())
	_, err = s.Reg.Write(ctx, func(cc *plugin.Ctx) error {
		return cc.Delete(res, id, want)
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
		err := s.Reg.Read(r.Context(), func(cc *plugin.Ctx) error {
			o, err := cc.Get(res, id)
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
		return fault.MethodNotAllowed()
	}
	var out schema.Object
	_, err := s.Reg.Write(r.Context(), func(cc *plugin.Ctx) error {
		o, err := cc.SetTags(res, id, op, tags)
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

// action serves a member action: PUT /<collection>/{id}/<action>.
func (s *Server) action(w http.ResponseWriter, r *http.Request, res *schema.Resource, act plugin.Action, id string) error {
	if r.Method != http.MethodPut {
		return fault.MethodNotAllowed()
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var in map[string]any
	if t := strings.TrimSpace(string(body)); t == "" || t == "null" {
		in = map[string]any{} // (Octavia's failover has none)
	} else if json.Unmarshal(body, &in) != nil || in == nil {
		return fault.BadRequest("Malformed request body")
	}
	var out any
	_, err = s.Reg.Write(r.Context(), func(cc *plugin.Ctx) error {
		var err error
		out, err = act(cc, id, jsonx.Copy(in).(map[string]any))
		return err
	})
	if err != nil {
		return err
	}
	writeOut(w, out)
	return nil
}

// writeOut answers 200 with out, or 202 with nothing for
// plugin.Accepted.
func writeOut(w http.ResponseWriter, out any) {
	if _, ok := out.(plugin.Accepted); ok {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// replace serves PUT on a collection (see plugin.Handler.Replace).
func (s *Server) replace(w http.ResponseWriter, r *http.Request, fn func(c *plugin.Ctx, scope string, body map[string]any) (any, error)) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var in map[string]any
	if json.Unmarshal(body, &in) != nil || in == nil {
		return fault.BadRequest("Request is not in valid JSON format")
	}
	var out any
	_, err = s.Reg.Write(plugin.WithQuery(r.Context(), r.URL.Query()), func(cc *plugin.Ctx) error {
		var err error
		out, err = fn(cc, scopeOf(r), jsonx.Copy(in).(map[string]any))
		return err
	})
	if err != nil {
		return err
	}
	writeOut(w, out)
	return nil
}

// view serves GET /<collection>/{id}/<name>.
func (s *Server) view(w http.ResponseWriter, r *http.Request, v plugin.View, id string) error {
	if r.Method != http.MethodGet {
		return fault.MethodNotAllowed()
	}
	var out any
	err := s.Reg.Read(r.Context(), func(cc *plugin.Ctx) error {
		var err error
		out, err = v(cc, id)
		return err
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// nested serves /<collection>/{id}/<name>[/{child}]: list, add, remove.
func (s *Server) nested(w http.ResponseWriter, r *http.Request, n *plugin.Nested, id string, rest []string) error {
	switch {
	case r.Method == http.MethodGet && len(rest) == 0 && n.List != nil:
		var out []any
		var key string
		err := s.Reg.Read(r.Context(), func(cc *plugin.Ctx) error {
			res, objs, err := n.List(cc, id)
			if err != nil {
				return err
			}
			key = res.Collection
			out = make([]any, 0, len(objs))
			for _, o := range objs {
				out = append(out, s.render(cc, res, o, nil))
			}
			return nil
		})
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{key: out})
		return nil
	case r.Method == http.MethodPost && len(rest) == 0 && n.Add != nil:
		body, err := readBody(r)
		if err != nil {
			return err
		}
		var in map[string]any
		if json.Unmarshal(body, &in) != nil || in == nil {
			in = map[string]any{}
		}
		_, err = s.Reg.Write(r.Context(), func(cc *plugin.Ctx) error {
			return n.Add(cc, id, jsonx.Copy(in).(map[string]any))
		})
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, nil)
		return nil
	case r.Method == http.MethodDelete && len(rest) == 1 && n.Remove != nil:
		_, err := s.Reg.Write(r.Context(), func(cc *plugin.Ctx) error {
			return n.Remove(cc, id, rest[0])
		})
		if err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return fault.MethodNotAllowed()
}
