package identity

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestChangesEndTokensAtOnceOnEveryServer: disabling or deleting a project
// or user, removing a role assignment and revoking a token refuse the token
// on the very next request, on the server that made the change and on
// another one sharing the database.
func TestChangesEndTokensAtOnceOnEveryServer(t *testing.T) {
	cases := []struct {
		name   string
		change step
		undo   step // if any, reverses the change: the token must stay refused
	}{
		{"disable project", patch("project", map[string]any{"enabled": false}), patch("project", map[string]any{"enabled": true})},
		{"delete project", remove("project"), nil},
		{"disable user", patch("user", map[string]any{"enabled": false}), patch("user", map[string]any{"enabled": true})},
		{"delete user", remove("user"), nil},
		{"remove role assignment", unassign, nil},
		{"change password", patch("user", map[string]any{"password": "new"}), nil},
	}
	for _, separate := range []bool{false, true} {
		for _, c := range cases {
			name := c.name + "/shared store.DB"
			if separate {
				name = c.name + "/separate store.DB"
			}
			t.Run(name, func(t *testing.T) {
				s1, s2 := servers(t, separate)
				admin := loginToken(t, s1, "admin", "adminpw", "admin")
				m := newMember(t, s1, admin, "victim")
				use := func(s *httptest.Server) int {
					st, _ := request(t, s, "GET", "/v3/auth/catalog", map[string]string{"X-Auth-Token": m.token}, nil)
					return st
				}
				// Both servers have the token cached now.
				for i, s := range []*httptest.Server{s1, s2} {
					if st := use(s); st != http.StatusOK {
						t.Fatalf("token on server %d before the change: %d", i+1, st)
					}
				}
				for _, do := range []step{c.change, c.undo} {
					if do == nil {
						continue
					}
					method, path, body := do(m, member{})
					if st, out := request(t, s1, method, path, map[string]string{"X-Auth-Token": admin}, body); st >= 300 {
						t.Fatalf("%s %s: %d %v", method, path, st, out)
					}
					for i, s := range []*httptest.Server{s1, s2} {
						if st := use(s); st != http.StatusUnauthorized {
							t.Errorf("token on server %d right after %s %s: %d, want 401", i+1, method, path, st)
						}
					}
				}
			})
		}
		t.Run(map[bool]string{false: "revoke/shared store.DB", true: "revoke/separate store.DB"}[separate], func(t *testing.T) {
			s1, s2 := servers(t, separate)
			tok := loginToken(t, s1, "demo", "demopw", "demo")
			if st, _ := subject(t, s2, "GET", tok, tok); st != http.StatusOK {
				t.Fatalf("token on server 2 before revocation: %d", st)
			}
			if st, _ := subject(t, s1, "DELETE", tok, tok); st != http.StatusNoContent {
				t.Fatalf("revoke on server 1: %d", st)
			}
			st, _ := request(t, s2, "GET", "/v3/auth/catalog", map[string]string{"X-Auth-Token": tok}, nil)
			if st != http.StatusUnauthorized {
				t.Errorf("revoked token on server 2: %d, want 401", st)
			}
		})
	}
}
