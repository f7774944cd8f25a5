package identity

import (
	"context"
	"net/http"

	"neutrino/internal/store"
)

// Projects and users are both rows of an identity table served as a
// Keystone collection with the same calls: list (filtered by name),
// create, show, update, delete. A collection says what differs between
// the two; crud serves the calls once for both.
type collection struct {
	member, plural string // the JSON names: "project", "projects"
	table          string
	// ref is the column of id_assignments and id_tokens naming a row: its
	// role assignments and tokens go when it is deleted, its tokens when it
	// is disabled (as in Keystone, enabling it again does not revive them).
	ref string
	// texts are the string columns an update may set.
	texts []string
	// cols selects the table's columns; row scans one row of them and
	// renders it.
	cols string
	row  func(b *Builtin, r *http.Request, scan func(dest ...any) error) (map[string]any, error)
	// create returns a new member made of m, rendered, and the statement
	// that stores it. It runs before the write: slow work (hashing a
	// password) must not hold the store's writer lock.
	create func(b *Builtin, r *http.Request, m map[string]any) (map[string]any, func(tx *store.Tx) error, error)
	// update, if set, returns what an update does besides texts and
	// enabled; likewise it runs before the write.
	update func(b *Builtin, ctx context.Context, id string, m map[string]any) (func(tx *store.Tx) error, error)
	// conflict is Keystone's message for a name already taken.
	conflict func(name string) string
}

func (b *Builtin) crud(w http.ResponseWriter, r *http.Request, seg []string, c *collection) {
	switch {
	case len(seg) == 1 && r.Method == http.MethodGet:
		where, args := "", []any{}
		if n := r.URL.Query().Get("name"); n != "" {
			where, args = " WHERE name = ?", append(args, n)
		}
		b.list(w, r, c, where+" ORDER BY name", args...)
	case len(seg) == 1 && r.Method == http.MethodPost:
		m, ok := readMember(r, c.member)
		if !ok || s(m, "name") == "" {
			keystoneError(w, http.StatusBadRequest, "Bad Request", "Invalid "+c.member+".")
			return
		}
		obj, insert, err := c.create(b, r, m)
		if err != nil {
			b.internalError(w, r, err)
			return
		}
		if err := b.change(r.Context(), insert); err != nil {
			b.writeFailed(w, r, err, c.conflict(s(m, "name")))
			return
		}
		writeJSON(w, http.StatusCreated, map[string]any{c.member: obj})
	case len(seg) == 2 && (r.Method == http.MethodGet || r.Method == http.MethodPatch):
		if r.Method == http.MethodPatch && !b.patch(w, r, c, seg[1]) {
			return
		}
		out, err := c.query(b, r, " WHERE id = ?", seg[1])
		if err != nil {
			b.internalError(w, r, err)
			return
		}
		if len(out) == 0 {
			keystoneError(w, http.StatusNotFound, "Not Found", "Could not find "+c.member+": "+seg[1]+".")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{c.member: out[0]})
	case len(seg) == 2 && r.Method == http.MethodDelete:
		var found bool
		err := b.change(r.Context(), func(tx *store.Tx) error {
			res, err := tx.Exec("DELETE FROM "+c.table+" WHERE id = ?", seg[1])
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			found = n > 0
			if _, err := tx.Exec("DELETE FROM id_assignments WHERE "+c.ref+" = ?", seg[1]); err != nil {
				return err
			}
			_, err = tx.Exec("DELETE FROM id_tokens WHERE "+c.ref+" = ?", seg[1])
			return err
		})
		if err != nil {
			b.internalError(w, r, err)
			return
		}
		if !found {
			keystoneError(w, http.StatusNotFound, "Not Found", "Could not find "+c.member+": "+seg[1]+".")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		keystoneError(w, http.StatusMethodNotAllowed, "Method Not Allowed", "The method is not allowed.")
	}
}

// patch applies an update to row id; it answers the request itself and
// returns false when it failed.
func (b *Builtin) patch(w http.ResponseWriter, r *http.Request, c *collection, id string) bool {
	m, ok := readMember(r, c.member)
	if !ok {
		keystoneError(w, http.StatusBadRequest, "Bad Request", "Invalid "+c.member+".")
		return false
	}
	var extra func(tx *store.Tx) error
	if c.update != nil {
		var err error
		if extra, err = c.update(b, r.Context(), id, m); err != nil {
			b.internalError(w, r, err)
			return false
		}
	}
	err := b.change(r.Context(), func(tx *store.Tx) error {
		for _, col := range c.texts {
			if v, ok := m[col].(string); ok {
				if _, err := tx.Exec("UPDATE "+c.table+" SET "+col+" = ? WHERE id = ?", v, id); err != nil {
					return err
				}
			}
		}
		if v, ok := m["enabled"].(bool); ok {
			if _, err := tx.Exec("UPDATE "+c.table+" SET enabled = ? WHERE id = ?", v, id); err != nil {
				return err
			}
			if !v {
				if _, err := tx.Exec("DELETE FROM id_tokens WHERE "+c.ref+" = ?", id); err != nil {
					return err
				}
			}
		}
		if extra != nil {
			return extra(tx)
		}
		return nil
	})
	if err != nil {
		b.writeFailed(w, r, err, c.conflict(s(m, "name")))
		return false
	}
	return true
}

// list answers with the rows of c that where selects.
func (b *Builtin) list(w http.ResponseWriter, r *http.Request, c *collection, where string, args ...any) {
	out, err := c.query(b, r, where, args...)
	if err != nil {
		b.internalError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{c.plural: out})
}

// query returns the rendered rows of c that where (SQL after the table's
// name) selects.
func (c *collection) query(b *Builtin, r *http.Request, where string, args ...any) ([]any, error) {
	out := []any{}
	err := b.eachRow(r.Context(), c.cols+where, args, func(scan func(...any) error) error {
		m, err := c.row(b, r, scan)
		if err != nil {
			return err
		}
		out = append(out, m)
		return nil
	})
	return out, err
}

// eachRow runs q in a read and calls row with each result row's Scan.
func (b *Builtin) eachRow(ctx context.Context, q string, args []any, row func(scan func(dest ...any) error) error) error {
	return b.DB.Read(ctx, func(tx *store.Tx) error { return tx.EachRow(q, args, row) })
}

// enabledFrom is m's "enabled", true when m does not say.
func enabledFrom(m map[string]any) bool {
	e, ok := m["enabled"].(bool)
	return e || !ok
}

// --- projects ----------------------------------------------------------------

var projects = &collection{
	member: "project", plural: "projects", table: "id_projects", ref: "project_id",
	texts: []string{"name", "description"},
	cols:  projectCols,
	row: func(b *Builtin, r *http.Request, scan func(...any) error) (map[string]any, error) {
		var p projectRow
		if err := scan(&p.ID, &p.Name, &p.Domain, &p.Description, &p.Enabled, &p.Parent, &p.IsDomain); err != nil {
			return nil, err
		}
		return b.renderProject(r, p), nil
	},
	create: func(b *Builtin, r *http.Request, m map[string]any) (map[string]any, func(tx *store.Tx) error, error) {
		p := projectRow{ID: newID(), Name: s(m, "name"), Domain: DefaultDomain, Description: s(m, "description"),
			Parent: DefaultDomain, Enabled: enabledFrom(m)}
		return b.renderProject(r, p), func(tx *store.Tx) error {
			_, err := tx.Exec("INSERT INTO id_projects (id, name, domain_id, description, enabled, parent_id, is_domain) VALUES (?, ?, ?, ?, ?, ?, ?)",
				p.ID, p.Name, p.Domain, p.Description, p.Enabled, p.Parent, false)
			return err
		}, nil
	},
	conflict: func(name string) string {
		return "Conflict occurred attempting to store project - it is not permitted to have two projects with the same name in the same domain : " + name + "."
	},
}

const projectCols = "SELECT id, name, domain_id, description, enabled, parent_id, is_domain FROM id_projects"

// projectsOf is the where clause of a user's projects (those it has a role in).
const projectsOf = " WHERE id IN (SELECT project_id FROM id_assignments WHERE user_id = ?) ORDER BY name"

type projectRow struct {
	ID, Name, Domain, Description, Parent string
	Enabled, IsDomain                     bool
}

func (b *Builtin) renderProject(r *http.Request, p projectRow) map[string]any {
	return map[string]any{"id": p.ID, "name": p.Name, "domain_id": p.Domain, "description": p.Description, "enabled": p.Enabled,
		"parent_id": p.Parent, "is_domain": p.IsDomain, "tags": []any{}, "options": map[string]any{},
		"links": map[string]any{"self": b.base(r) + "/v3/projects/" + p.ID}}
}

// --- users -------------------------------------------------------------------

var users = &collection{
	member: "user", plural: "users", table: "id_users", ref: "user_id",
	texts: []string{"name", "description", "email", "default_project_id"},
	cols:  userCols,
	row: func(b *Builtin, r *http.Request, scan func(...any) error) (map[string]any, error) {
		var u userRow
		if err := scan(&u.ID, &u.Name, &u.Domain, &u.Project, &u.Description, &u.Email, &u.Enabled); err != nil {
			return nil, err
		}
		return b.renderUser(r, u), nil
	},
	create: func(b *Builtin, r *http.Request, m map[string]any) (map[string]any, func(tx *store.Tx) error, error) {
		u := userRow{ID: newID(), Name: s(m, "name"), Domain: DefaultDomain, Project: s(m, "default_project_id"),
			Description: s(m, "description"), Email: s(m, "email"), Enabled: enabledFrom(m)}
		// A user created without a password cannot log in with one (an
		// empty hash matches nothing).
		var h string
		if pw := s(m, "password"); pw != "" {
			var err error
			if h, err = b.pw.hash(r.Context(), pw); err != nil {
				return nil, nil, err
			}
		}
		return b.renderUser(r, u), func(tx *store.Tx) error {
			_, err := tx.Exec("INSERT INTO id_users (id, name, domain_id, password_hash, enabled, default_project_id, description, email) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
				u.ID, u.Name, u.Domain, h, u.Enabled, u.Project, u.Description, u.Email)
			return err
		}, nil
	},
	// A new password ends the user's tokens.
	update: func(b *Builtin, ctx context.Context, id string, m map[string]any) (func(tx *store.Tx) error, error) {
		pw, ok := m["password"].(string)
		if !ok {
			return nil, nil
		}
		var h string // none: as at creation, an empty password is none
		if pw != "" {
			var err error
			if h, err = b.pw.hash(ctx, pw); err != nil {
				return nil, err
			}
		}
		return func(tx *store.Tx) error {
			if _, err := tx.Exec("DELETE FROM id_tokens WHERE user_id = ?", id); err != nil {
				return err
			}
			_, err := tx.Exec("UPDATE id_users SET password_hash = ? WHERE id = ?", h, id)
			return err
		}, nil
	},
	conflict: func(name string) string {
		return "Conflict occurred attempting to store user - Duplicate entry found with name " + name + " at domain ID default."
	},
}

const userCols = "SELECT id, name, domain_id, default_project_id, description, email, enabled FROM id_users"

type userRow struct {
	ID, Name, Domain, Project, Description, Email string
	Enabled                                       bool
}

func (b *Builtin) renderUser(r *http.Request, u userRow) map[string]any {
	m := map[string]any{"id": u.ID, "name": u.Name, "domain_id": u.Domain, "enabled": u.Enabled, "password_expires_at": nil,
		"options": map[string]any{}, "links": map[string]any{"self": b.base(r) + "/v3/users/" + u.ID}}
	for k, v := range map[string]string{"default_project_id": u.Project, "description": u.Description, "email": u.Email} {
		if v != "" {
			m[k] = v
		}
	}
	return m
}
