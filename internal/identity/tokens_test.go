package identity

import (
	"net/http"
	"testing"
)

// TestTokenValidationNeedsSubjectOrPrivilege: only admins, service users
// and the token's own user may validate or revoke a token.
func TestTokenValidationNeedsSubjectOrPrivilege(t *testing.T) {
	_, srv := newBuiltin(t)
	admin := loginToken(t, srv, "admin", "adminpw", "admin")
	service := loginToken(t, srv, "neutrino", "adminpw", "service")
	a := loginToken(t, srv, "demo", "demopw", "demo")
	a2 := loginToken(t, srv, "demo", "demopw", "demo") // the same user's second token
	b := newMember(t, srv, admin, "bob").token

	for _, method := range []string{"GET", "HEAD"} {
		st, body := subject(t, srv, method, a, b)
		if method == "GET" {
			isForbidden(t, "A validating B's token", st, body)
		} else if st != http.StatusForbidden {
			t.Errorf("A checking B's token with HEAD: %d", st)
		}
	}
	// A non-privileged caller learns nothing about tokens that are not
	// its own: a bad token is refused the same way as another's.
	st, body := subject(t, srv, "GET", a, "nt-no-such-token")
	isForbidden(t, "A validating a token that does not exist", st, body)

	st, body = subject(t, srv, "DELETE", a, b)
	isForbidden(t, "A revoking B's token", st, body)
	if st, _ := subject(t, srv, "GET", b, b); st != http.StatusOK {
		t.Fatalf("B's token after A's refused revocation: %d", st)
	}

	for _, c := range []struct {
		name, caller, subject string
	}{
		{"a token validating itself", a, a},
		{"a token of the same user", a, a2},
		{"admin validating B", admin, b},
		{"a service user validating B", service, b},
	} {
		st, body := subject(t, srv, "GET", c.caller, c.subject)
		tok, _ := body["token"].(map[string]any)
		if st != http.StatusOK || tok == nil {
			t.Errorf("%s: %d %v", c.name, st, body)
		}
	}
	// In order: a token may revoke itself, and an admin any; a revoked
	// token is gone for everyone else.
	for _, c := range []struct {
		name                    string
		method, caller, subject string
		want                    int
	}{
		{"admin validating a token that does not exist", "GET", admin, "nt-no-such-token", http.StatusNotFound},
		{"A revoking its own token", "DELETE", a2, a2, http.StatusNoContent},
		{"admin validating A's revoked token", "GET", admin, a2, http.StatusNotFound},
		{"A's other token after revoking one", "GET", a, a, http.StatusOK},
		{"admin revoking B's token", "DELETE", admin, b, http.StatusNoContent},
		{"admin validating B's revoked token", "GET", admin, b, http.StatusNotFound},
		{"admin revoking a token that is gone", "DELETE", admin, b, http.StatusNotFound},
	} {
		if st, body := subject(t, srv, c.method, c.caller, c.subject); st != c.want {
			t.Errorf("%s: %d %v, want %d", c.name, st, body, c.want)
		}
	}
}
