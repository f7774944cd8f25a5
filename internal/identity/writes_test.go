package identity

import (
	"net/http"
	"testing"
)

// TestFailedWritesAreReported: a write that does not happen is never
// answered with 2xx.
func TestFailedWritesAreReported(t *testing.T) {
	cases := []struct {
		name string
		// fail sets up the failure; do returns the request that must fail
		// and then a request (path) whose answer shows nothing changed.
		fail   func(t *testing.T, b *Builtin)
		do     func(m, other member) (method, path string, body any)
		want   int
		intact string // GET path that must still answer 200 (or "")
	}{
		{"rename a project to a taken name", nil,
			func(m, other member) (string, string, any) {
				return "PATCH", "/v3/projects/" + m.project, map[string]any{"project": map[string]any{"name": "other"}}
			}, http.StatusConflict, ""},
		{"rename a user to a taken name", nil,
			func(m, other member) (string, string, any) {
				return "PATCH", "/v3/users/" + m.user, map[string]any{"user": map[string]any{"name": "other"}}
			}, http.StatusConflict, ""},
		{"create a project", func(t *testing.T, b *Builtin) { failOn(t, b, "INSERT", "id_projects") },
			func(m, other member) (string, string, any) {
				return "POST", "/v3/projects", map[string]any{"project": map[string]any{"name": "new"}}
			}, http.StatusInternalServerError, ""},
		{"create a user", func(t *testing.T, b *Builtin) { failOn(t, b, "INSERT", "id_users") },
			func(m, other member) (string, string, any) {
				return "POST", "/v3/users", map[string]any{"user": map[string]any{"name": "new", "password": "x"}}
			}, http.StatusInternalServerError, ""},
		{"create a role", func(t *testing.T, b *Builtin) { failOn(t, b, "INSERT", "id_roles") },
			func(m, other member) (string, string, any) {
				return "POST", "/v3/roles", map[string]any{"role": map[string]any{"name": "new"}}
			}, http.StatusInternalServerError, ""},
		{"disable a project", func(t *testing.T, b *Builtin) { failOn(t, b, "UPDATE", "id_projects") },
			func(m, other member) (string, string, any) {
				return "PATCH", "/v3/projects/" + m.project, map[string]any{"project": map[string]any{"enabled": false}}
			}, http.StatusInternalServerError, "/v3/auth/catalog"},
		{"disable a user", func(t *testing.T, b *Builtin) { failOn(t, b, "UPDATE", "id_users") },
			func(m, other member) (string, string, any) {
				return "PATCH", "/v3/users/" + m.user, map[string]any{"user": map[string]any{"enabled": false}}
			}, http.StatusInternalServerError, "/v3/auth/catalog"},
		{"delete a project", func(t *testing.T, b *Builtin) { failOn(t, b, "DELETE", "id_projects") },
			func(m, other member) (string, string, any) { return "DELETE", "/v3/projects/" + m.project, nil },
			http.StatusInternalServerError, "/v3/auth/catalog"},
		{"delete a user", func(t *testing.T, b *Builtin) { failOn(t, b, "DELETE", "id_users") },
			func(m, other member) (string, string, any) { return "DELETE", "/v3/users/" + m.user, nil },
			http.StatusInternalServerError, "/v3/auth/catalog"},
		{"delete a role", func(t *testing.T, b *Builtin) { failOn(t, b, "DELETE", "id_roles") },
			func(m, other member) (string, string, any) { return "DELETE", "/v3/roles/" + m.role, nil },
			http.StatusInternalServerError, "/v3/auth/catalog"},
		{"assign a role", func(t *testing.T, b *Builtin) { failOn(t, b, "INSERT", "id_assignments") },
			func(m, other member) (string, string, any) {
				return "PUT", "/v3/projects/" + other.project + "/users/" + m.user + "/roles/" + m.role, nil
			}, http.StatusInternalServerError, ""},
		{"remove a role assignment", func(t *testing.T, b *Builtin) { failOn(t, b, "DELETE", "id_assignments") },
			func(m, other member) (string, string, any) {
				return "DELETE", "/v3/projects/" + m.project + "/users/" + m.user + "/roles/" + m.role, nil
			}, http.StatusInternalServerError, "/v3/auth/catalog"},
		{"revoke a token", func(t *testing.T, b *Builtin) { failOn(t, b, "DELETE", "id_tokens") },
			func(m, other member) (string, string, any) { return "DELETE", "/v3/auth/tokens", nil },
			http.StatusInternalServerError, "/v3/auth/catalog"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, srv := newBuiltin(t)
			admin := loginToken(t, srv, "admin", "adminpw", "admin")
			m := newMember(t, srv, admin, "victim")
			other := newMember(t, srv, admin, "other")
			if c.fail != nil {
				c.fail(t, b)
			}
			method, path, body := c.do(m, other)
			st, out := request(t, srv, method, path, map[string]string{"X-Auth-Token": admin, "X-Subject-Token": m.token}, body)
			if st != c.want {
				t.Errorf("%s %s: %d %v, want %d", method, path, st, out, c.want)
			}
			if c.intact != "" {
				if st, _ := request(t, srv, "GET", c.intact, map[string]string{"X-Auth-Token": m.token}, nil); st != http.StatusOK {
					t.Errorf("the member's token after the failed write: %d", st)
				}
			}
		})
	}
}
