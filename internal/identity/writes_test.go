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
		do     step
		want   int
		intact string // GET path that must still answer 200 (or "")
	}{
		{"rename a project to a taken name", nil, patch("project", map[string]any{"name": "other"}), http.StatusConflict, ""},
		{"rename a user to a taken name", nil, patch("user", map[string]any{"name": "other"}), http.StatusConflict, ""},
		{"create a project", failing("INSERT", "id_projects"), create("project", map[string]any{"name": "new"}), http.StatusInternalServerError, ""},
		{"create a user", failing("INSERT", "id_users"), create("user", map[string]any{"name": "new", "password": "x"}), http.StatusInternalServerError, ""},
		{"create a role", failing("INSERT", "id_roles"), create("role", map[string]any{"name": "new"}), http.StatusInternalServerError, ""},
		{"disable a project", failing("UPDATE", "id_projects"), patch("project", map[string]any{"enabled": false}), http.StatusInternalServerError, "/v3/auth/catalog"},
		{"disable a user", failing("UPDATE", "id_users"), patch("user", map[string]any{"enabled": false}), http.StatusInternalServerError, "/v3/auth/catalog"},
		{"delete a project", failing("DELETE", "id_projects"), remove("project"), http.StatusInternalServerError, "/v3/auth/catalog"},
		{"delete a user", failing("DELETE", "id_users"), remove("user"), http.StatusInternalServerError, "/v3/auth/catalog"},
		{"delete a role", failing("DELETE", "id_roles"), remove("role"), http.StatusInternalServerError, "/v3/auth/catalog"},
		{"assign a role", failing("INSERT", "id_assignments"),
			func(m, other member) (string, string, any) {
				return "PUT", "/v3/projects/" + other.project + "/users/" + m.user + "/roles/" + m.role, nil
			}, http.StatusInternalServerError, ""},
		{"remove a role assignment", failing("DELETE", "id_assignments"), unassign, http.StatusInternalServerError, "/v3/auth/catalog"},
		{"revoke a token", failing("DELETE", "id_tokens"),
			func(member, member) (string, string, any) { return "DELETE", "/v3/auth/tokens", nil },
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
