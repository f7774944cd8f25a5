package identity

import (
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"neutrino/internal/store"
)

// route dispatches the Keystone v3 subset.
func (b *Builtin) route(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v3"), "/")
	seg := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if path == "" {
		writeJSON(w, http.StatusOK, map[string]any{"version": b.versionDoc(r)})
		return
	}
	if seg[0] == "auth" && len(seg) >= 2 {
		switch seg[1] {
		case "tokens":
			b.tokensHandler(w, r)
			return
		case "catalog":
			if _, ok := b.authenticated(w, r); !ok {
				return
			}
			writeJSON(w, http.StatusOK, map[string]any{"catalog": b.catalog(r), "links": map[string]any{"self": b.base(r) + "/v3/auth/catalog"}})
			return
		case "projects":
			t, ok := b.authenticated(w, r)
			if !ok {
				return
			}
			b.list(w, r, projects, projectsOf, t.UserID)
			return
		}
	}
	t, ok := b.authenticated(w, r)
	if !ok {
		return
	}
	c := t.caller()
	admin := c.Admin
	forbid := func() { forbidden(w) }
	switch {
	case seg[0] == "domains":
		b.domains(w, r, seg)
	case seg[0] == "roles":
		if r.Method != http.MethodGet && !admin {
			forbid()
			return
		}
		b.roles(w, r, seg)
	case seg[0] == "projects" && len(seg) == 6 && seg[2] == "users" && seg[4] == "roles":
		if !admin {
			forbid()
			return
		}
		b.assignment(w, r, seg[1], seg[3], seg[5])
	case seg[0] == "projects" && len(seg) == 5 && seg[2] == "users" && seg[4] == "roles":
		if !admin && c.UserID != seg[3] {
			forbid()
			return
		}
		b.listUserRoles(w, r, seg[1], seg[3])
	case seg[0] == "projects":
		if !admin && !(r.Method == http.MethodGet && len(seg) == 2 && seg[1] == c.ProjectID) {
			forbid()
			return
		}
		b.crud(w, r, seg, projects)
	case seg[0] == "users" && len(seg) == 3 && seg[2] == "projects":
		if !admin && c.UserID != seg[1] {
			forbid()
			return
		}
		b.list(w, r, projects, projectsOf, seg[1])
	case seg[0] == "users":
		if !admin && !(len(seg) == 2 && seg[1] == c.UserID && r.Method == http.MethodGet) {
			forbid()
			return
		}
		b.crud(w, r, seg, users)
	case seg[0] == "role_assignments":
		if !admin {
			forbid()
			return
		}
		b.roleAssignments(w, r)
	case seg[0] == "services" || seg[0] == "endpoints" || seg[0] == "regions":
		b.catalogResources(w, r, seg[0])
	default:
		keystoneError(w, http.StatusNotFound, "Not Found", "The resource could not be found.")
	}
}

// authenticated returns the caller's token, or answers 401 (or 500 when the
// store failed) and returns false.
func (b *Builtin) authenticated(w http.ResponseWriter, r *http.Request) (*token, bool) {
	t, err := b.lookup(r.Context(), r.Header.Get("X-Auth-Token"))
	if errors.Is(err, errUnauthorized) {
		unauthorized(w)
		return nil, false
	}
	if err != nil {
		b.internalError(w, r, err)
		return nil, false
	}
	return t, true
}

// changeAnswered makes an identity change (see change) and answers 204,
// or 500 when it failed.
func (b *Builtin) changeAnswered(w http.ResponseWriter, r *http.Request, fn func(tx *store.Tx) error) {
	if err := b.change(r.Context(), fn); err != nil {
		b.internalError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// internalError answers a request that failed for a reason of the server's
// (the database), logging the cause: it is no business of the client's.
func (b *Builtin) internalError(w http.ResponseWriter, r *http.Request, err error) {
	b.log().Error("identity: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	keystoneError(w, http.StatusInternalServerError, "Internal Server Error",
		"An unexpected error prevented the server from fulfilling your request.")
}

// writeFailed answers a write that did not happen: 409 with conflict when
// it broke a uniqueness rule (a name taken), else 500.
func (b *Builtin) writeFailed(w http.ResponseWriter, r *http.Request, err error, conflict string) {
	if store.IsUniqueViolation(err) {
		keystoneError(w, http.StatusConflict, "Conflict", conflict)
		return
	}
	b.internalError(w, r, err)
}

func forbidden(w http.ResponseWriter) {
	keystoneError(w, http.StatusForbidden, "Forbidden", "You are not authorized to perform the requested action.")
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", "Keystone uri=\"/v3\"")
	keystoneError(w, http.StatusUnauthorized, "Unauthorized", "The request you have made requires authentication.")
}

func (b *Builtin) base(r *http.Request) string {
	if b.PublicURL != nil {
		return strings.TrimSuffix(b.PublicURL(r), "/")
	}
	return "http://" + r.Host
}

func (b *Builtin) versionDoc(r *http.Request) map[string]any {
	return map[string]any{
		"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
		"links":       []any{map[string]any{"rel": "self", "href": b.base(r) + "/v3/"}},
		"media-types": []any{map[string]any{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}},
	}
}

// VersionsDoc is Keystone's multiple-choice answer, served at /identity.
func (b *Builtin) VersionsDoc(r *http.Request) map[string]any {
	return map[string]any{"versions": map[string]any{"values": []any{b.versionDoc(r)}}}
}

func (b *Builtin) catalog(r *http.Request) []any {
	base := b.base(r)
	ep := func(id, url, iface string) map[string]any {
		return map[string]any{"id": id, "url": url, "interface": iface, "region": b.Region, "region_id": b.Region}
	}
	out := []any{
		map[string]any{"id": "neutrino-network", "type": "network", "name": "neutron", "endpoints": []any{
			ep("neutrino-network-public", base+"/", "public"), ep("neutrino-network-internal", base+"/", "internal"), ep("neutrino-network-admin", base+"/", "admin")}},
		map[string]any{"id": "neutrino-identity", "type": "identity", "name": "keystone", "endpoints": []any{
			ep("neutrino-identity-public", base+"/v3/", "public"), ep("neutrino-identity-internal", base+"/v3/", "internal"), ep("neutrino-identity-admin", base+"/v3/", "admin")}},
	}
	if lb := b.LoadBalancerURL; lb != "" {
		out = append(out, map[string]any{"id": "neutrino-load-balancer", "type": "load-balancer", "name": "octavia", "endpoints": []any{
			ep("neutrino-load-balancer-public", lb, "public"), ep("neutrino-load-balancer-internal", lb, "internal"), ep("neutrino-load-balancer-admin", lb, "admin")}})
	}
	if km := b.KeyManagerURL; km != "" {
		out = append(out, map[string]any{"id": "neutrino-key-manager", "type": "key-manager", "name": "barbican", "endpoints": []any{
			ep("neutrino-key-manager-public", km, "public"), ep("neutrino-key-manager-internal", km, "internal"), ep("neutrino-key-manager-admin", km, "admin")}})
	}
	return out
}

func (b *Builtin) catalogResources(w http.ResponseWriter, r *http.Request, kind string) {
	var services, endpoints []any
	for _, s := range b.catalog(r) {
		m := s.(map[string]any)
		services = append(services, map[string]any{"id": m["id"], "type": m["type"], "name": m["name"], "enabled": true, "description": ""})
		for _, e := range m["endpoints"].([]any) {
			em := e.(map[string]any)
			endpoints = append(endpoints, map[string]any{"id": em["id"], "url": em["url"], "interface": em["interface"],
				"region": b.Region, "region_id": b.Region, "service_id": m["id"], "enabled": true})
		}
	}
	switch kind {
	case "services":
		writeJSON(w, http.StatusOK, map[string]any{"services": services})
	case "endpoints":
		writeJSON(w, http.StatusOK, map[string]any{"endpoints": endpoints})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"regions": []any{map[string]any{"id": b.Region, "description": "", "parent_region_id": nil}}})
	}
}

type authRequest struct {
	Auth struct {
		Identity struct {
			Methods  []string `json:"methods"`
			Password struct {
				User struct {
					ID       string         `json:"id"`
					Name     string         `json:"name"`
					Password string         `json:"password"`
					Domain   map[string]any `json:"domain"`
				} `json:"user"`
			} `json:"password"`
			Token struct {
				ID string `json:"id"`
			} `json:"token"`
		} `json:"identity"`
		Scope json.RawMessage `json:"scope"`
	} `json:"auth"`
}

func (b *Builtin) tokensHandler(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		var req authRequest
		if err := json.Unmarshal(body, &req); err != nil {
			keystoneError(w, http.StatusBadRequest, "Bad Request", "Malformed request body.")
			return
		}
		var scope struct {
			Project struct {
				ID   string         `json:"id"`
				Name string         `json:"name"`
				Dom  map[string]any `json:"domain"`
			} `json:"project"`
		}
		if len(req.Auth.Scope) > 0 && string(req.Auth.Scope) != "null" {
			json.Unmarshal(req.Auth.Scope, &scope)
		}
		var tok string
		var t *token
		var err error
		methods := req.Auth.Identity.Methods
		if len(methods) == 1 && methods[0] == "token" {
			tok, t, err = b.rescope(r.Context(), req.Auth.Identity.Token.ID, scope.Project.ID, scope.Project.Name)
		} else {
			u := req.Auth.Identity.Password.User
			tok, t, err = b.passwordLogin(r.Context(), r, u.Name, u.ID, u.Password, scope.Project.Name, scope.Project.ID)
		}
		if errors.Is(err, errUnauthorized) {
			unauthorized(w)
			return
		}
		if err != nil {
			b.internalError(w, r, err)
			return
		}
		w.Header().Set("X-Subject-Token", tok)
		writeJSON(w, http.StatusCreated, map[string]any{"token": b.tokenBody(r, t)})
	case http.MethodGet, http.MethodHead:
		sub, t, ok := b.subjectToken(w, r)
		if !ok {
			return
		}
		w.Header().Set("X-Subject-Token", sub)
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusOK)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"token": b.tokenBody(r, t)})
	case http.MethodDelete:
		sub, _, ok := b.subjectToken(w, r)
		if !ok {
			return
		}
		if err := b.Revoke(r.Context(), sub); err != nil {
			b.internalError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		keystoneError(w, http.StatusMethodNotAllowed, "Method Not Allowed", "The method is not allowed.")
	}
}

// subjectToken authenticates the caller of a request about the token in
// X-Subject-Token (validation, revocation) and returns that token. As in
// Keystone's policy, only admins, service users and the token's own user
// may see or revoke it; anyone else is refused whether or not the token
// exists, so that the answer tells nothing about other users' tokens. It
// answers the request itself and returns false when it may go no further.
func (b *Builtin) subjectToken(w http.ResponseWriter, r *http.Request) (string, *token, bool) {
	caller, ok := b.authenticated(w, r)
	if !ok {
		return "", nil, false
	}
	sub := r.Header.Get("X-Subject-Token")
	t, err := b.lookup(r.Context(), sub)
	if err != nil && !errors.Is(err, errUnauthorized) {
		b.internalError(w, r, err)
		return "", nil, false
	}
	c := caller.caller()
	if !c.Admin && !c.Service && (err != nil || t.UserID != caller.UserID) {
		forbidden(w)
		return "", nil, false
	}
	if err != nil {
		keystoneError(w, http.StatusNotFound, "Not Found", "Could not find token: "+sub+".")
		return "", nil, false
	}
	return sub, t, true
}

func (b *Builtin) tokenBody(r *http.Request, t *token) map[string]any {
	dom := map[string]any{"id": DefaultDomain, "name": "Default"}
	roles := []any{}
	for _, ro := range t.Roles {
		roles = append(roles, map[string]any{"id": ro.ID, "name": ro.Name})
	}
	return map[string]any{
		"methods": t.Methods, "user": map[string]any{"id": t.UserID, "name": t.UserName, "domain": dom, "password_expires_at": nil},
		"audit_ids": []any{newID()[:22]}, "expires_at": fmtTime(t.Expires), "issued_at": fmtTime(t.Issued),
		"project": map[string]any{"id": t.ProjectID, "name": t.ProjectName, "domain": dom}, "is_domain": false,
		"roles": roles, "catalog": b.catalog(r),
	}
}

func (b *Builtin) domains(w http.ResponseWriter, r *http.Request, seg []string) {
	d := map[string]any{"id": DefaultDomain, "name": "Default", "description": "The default domain", "enabled": true,
		"tags": []any{}, "options": map[string]any{}, "links": map[string]any{"self": b.base(r) + "/v3/domains/" + DefaultDomain}}
	if len(seg) == 2 {
		if seg[1] != DefaultDomain {
			keystoneError(w, http.StatusNotFound, "Not Found", "Could not find domain: "+seg[1]+".")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"domain": d})
		return
	}
	list := []any{d}
	if n := r.URL.Query().Get("name"); n != "" && n != "Default" {
		list = []any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"domains": list})
}

func readMember(r *http.Request, key string) (map[string]any, bool) {
	var doc map[string]map[string]any
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err := json.Unmarshal(body, &doc); err != nil || doc[key] == nil {
		return nil, false
	}
	return doc[key], true
}

func s(m map[string]any, k string) string { v, _ := m[k].(string); return v }

func (b *Builtin) roles(w http.ResponseWriter, r *http.Request, seg []string) {
	ctx := r.Context()
	render := func(id, name string) map[string]any {
		return map[string]any{"id": id, "name": name, "domain_id": nil, "description": nil, "options": map[string]any{},
			"links": map[string]any{"self": b.base(r) + "/v3/roles/" + id}}
	}
	switch {
	case len(seg) == 1 && r.Method == http.MethodGet:
		q, args := "SELECT id, name FROM id_roles", []any{}
		if n := r.URL.Query().Get("name"); n != "" {
			q += " WHERE name = ?"
			args = append(args, n)
		}
		out := []any{}
		err := b.eachRow(ctx, q+" ORDER BY name", args, func(scan func(...any) error) error {
			var id, name string
			if err := scan(&id, &name); err != nil {
				return err
			}
			out = append(out, render(id, name))
			return nil
		})
		if err != nil {
			b.internalError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"roles": out})
	case len(seg) == 1 && r.Method == http.MethodPost:
		m, ok := readMember(r, "role")
		if !ok || s(m, "name") == "" {
			keystoneError(w, http.StatusBadRequest, "Bad Request", "Invalid role.")
			return
		}
		id := newID()
		err := b.change(ctx, func(tx *store.Tx) error {
			_, err := tx.Exec("INSERT INTO id_roles (id, name) VALUES (?, ?)", id, s(m, "name"))
			return err
		})
		if err != nil {
			b.writeFailed(w, r, err, "Duplicate entry.")
			return
		}
		writeJSON(w, http.StatusCreated, map[string]any{"role": render(id, s(m, "name"))})
	case len(seg) == 2 && r.Method == http.MethodGet:
		var name string
		err := b.DB.Read(ctx, func(tx *store.Tx) error {
			return tx.QueryRow("SELECT name FROM id_roles WHERE id = ?", seg[1]).Scan(&name)
		})
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			b.internalError(w, r, err)
			return
		}
		if err != nil {
			keystoneError(w, http.StatusNotFound, "Not Found", "Could not find role: "+seg[1]+".")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"role": render(seg[1], name)})
	case len(seg) == 2 && r.Method == http.MethodDelete:
		b.changeAnswered(w, r, func(tx *store.Tx) error {
			if _, err := tx.Exec("DELETE FROM id_assignments WHERE role_id = ?", seg[1]); err != nil {
				return err
			}
			_, err := tx.Exec("DELETE FROM id_roles WHERE id = ?", seg[1])
			return err
		})
	default:
		keystoneError(w, http.StatusMethodNotAllowed, "Method Not Allowed", "The method is not allowed.")
	}
}

func (b *Builtin) assignment(w http.ResponseWriter, r *http.Request, project, user, roleID string) {
	ctx := r.Context()
	exists := func(tx *store.Tx, q, id string) bool {
		var x string
		return tx.QueryRow(q, id).Scan(&x) == nil
	}
	var missing string
	var has bool
	err := b.DB.Read(ctx, func(tx *store.Tx) error {
		switch {
		case !exists(tx, "SELECT id FROM id_projects WHERE id = ?", project):
			missing = "project: " + project
		case !exists(tx, "SELECT id FROM id_users WHERE id = ?", user):
			missing = "user: " + user
		case !exists(tx, "SELECT id FROM id_roles WHERE id = ?", roleID):
			missing = "role: " + roleID
		}
		var n int
		err := tx.QueryRow("SELECT COUNT(*) FROM id_assignments WHERE user_id = ? AND project_id = ? AND role_id = ?", user, project, roleID).Scan(&n)
		has = n > 0
		return err
	})
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		b.internalError(w, r, err)
		return
	}
	if missing != "" {
		keystoneError(w, http.StatusNotFound, "Not Found", "Could not find "+missing+".")
		return
	}
	switch r.Method {
	case http.MethodPut:
		b.changeAnswered(w, r, func(tx *store.Tx) error { return assign(tx, user, project, roleID) })
	case http.MethodHead, http.MethodGet:
		if !has {
			keystoneError(w, http.StatusNotFound, "Not Found", "Could not find role assignment.")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case http.MethodDelete:
		b.changeAnswered(w, r, func(tx *store.Tx) error {
			_, err := tx.Exec("DELETE FROM id_assignments WHERE user_id = ? AND project_id = ? AND role_id = ?", user, project, roleID)
			return err
		})
	default:
		keystoneError(w, http.StatusMethodNotAllowed, "Method Not Allowed", "The method is not allowed.")
	}
}

func (b *Builtin) listUserRoles(w http.ResponseWriter, r *http.Request, project, user string) {
	var out []any
	err := b.DB.Read(r.Context(), func(tx *store.Tx) error {
		roles, err := b.rolesOf(tx, user, project)
		for _, ro := range roles {
			out = append(out, map[string]any{"id": ro.ID, "name": ro.Name, "domain_id": nil,
				"links": map[string]any{"self": b.base(r) + "/v3/roles/" + ro.ID}})
		}
		return err
	})
	if err != nil {
		b.internalError(w, r, err)
		return
	}
	if out == nil {
		out = []any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"roles": out})
}

func (b *Builtin) roleAssignments(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sqlq, args := "SELECT a.user_id, a.project_id, a.role_id, r.name FROM id_assignments a JOIN id_roles r ON r.id = a.role_id WHERE 1 = 1", []any{}
	if v := q.Get("user.id"); v != "" {
		sqlq += " AND a.user_id = ?"
		args = append(args, v)
	}
	if v := q.Get("scope.project.id"); v != "" {
		sqlq += " AND a.project_id = ?"
		args = append(args, v)
	}
	if v := q.Get("role.id"); v != "" {
		sqlq += " AND a.role_id = ?"
		args = append(args, v)
	}
	out := []any{}
	err := b.eachRow(r.Context(), sqlq, args, func(scan func(...any) error) error {
		var u, p, rid, rname string
		if err := scan(&u, &p, &rid, &rname); err != nil {
			return err
		}
		out = append(out, map[string]any{"user": map[string]any{"id": u}, "scope": map[string]any{"project": map[string]any{"id": p}},
			"role": map[string]any{"id": rid, "name": rname}, "links": map[string]any{"assignment": b.base(r) + "/v3/projects/" + p + "/users/" + u + "/roles/" + rid}})
		return nil
	})
	if err != nil {
		b.internalError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"role_assignments": out})
}
