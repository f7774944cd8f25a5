package identity

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"neutrino/internal/store"
)

func newBuiltin(t *testing.T) (*Builtin, *httptest.Server) {
	t.Helper()
	return newBuiltinWith(t, nil)
}

// newBuiltinWith is newBuiltin with configure (if set) applied before the
// server starts.
func newBuiltinWith(t *testing.T, configure func(b *Builtin)) (*Builtin, *httptest.Server) {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "id.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	b := testBuiltin(db)
	if configure != nil {
		configure(b)
	}
	if _, err := b.Bootstrap(context.Background(), "adminpw", "demopw"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(b)
	t.Cleanup(func() { srv.Close(); db.Close() })
	return b, srv
}

func call(t *testing.T, srv *httptest.Server, method, path, token string, body any) (int, http.Header, map[string]any) {
	t.Helper()
	headers := map[string]string{}
	if token != "" {
		headers["X-Auth-Token"] = token
	}
	return send(t, srv, method, path, headers, body)
}

func login(user, pw, project string) map[string]any {
	return map[string]any{"auth": map[string]any{
		"identity": map[string]any{"methods": []any{"password"}, "password": map[string]any{"user": map[string]any{"name": user, "password": pw, "domain": map[string]any{"name": "Default"}}}},
		"scope":    map[string]any{"project": map[string]any{"name": project, "domain": map[string]any{"name": "Default"}}}}}
}

// TestTempestCredentialFlow walks the calls Tempest's dynamic credentials
// make: admin login, domain lookup, project and user creation, role
// assignment, the new user's login, and cleanup.
func TestTempestCredentialFlow(t *testing.T) {
	b, srv := newBuiltin(t)
	st, h, body := call(t, srv, "POST", "/v3/auth/tokens", "", login("admin", "adminpw", "admin"))
	admin := h.Get("X-Subject-Token")
	if st != 201 || admin == "" {
		t.Fatalf("admin login: %d %v", st, body)
	}
	tok := body["token"].(map[string]any)
	if len(tok["catalog"].([]any)) == 0 || tok["expires_at"] == "" {
		t.Fatalf("token body: %v", tok)
	}
	if st, _, _ := call(t, srv, "POST", "/v3/auth/tokens", "", login("admin", "wrong", "admin")); st != 401 {
		t.Fatalf("bad password: %d", st)
	}
	if st, _, d := call(t, srv, "GET", "/v3/domains?name=Default", admin, nil); st != 200 || len(d["domains"].([]any)) != 1 {
		t.Fatalf("domains: %d %v", st, d)
	}
	_, _, p := call(t, srv, "POST", "/v3/projects", admin, map[string]any{"project": map[string]any{"name": "t1", "domain_id": "default"}})
	pid := p["project"].(map[string]any)["id"].(string)
	_, _, u := call(t, srv, "POST", "/v3/users", admin, map[string]any{"user": map[string]any{"name": "u1", "password": "pw1", "domain_id": "default"}})
	uid := u["user"].(map[string]any)["id"].(string)
	_, _, roles := call(t, srv, "GET", "/v3/roles", admin, nil)
	member := ""
	for _, r := range roles["roles"].([]any) {
		if r.(map[string]any)["name"] == "member" {
			member = r.(map[string]any)["id"].(string)
		}
	}
	if st, _, _ := call(t, srv, "PUT", "/v3/projects/"+pid+"/users/"+uid+"/roles/"+member, admin, nil); st != 204 {
		t.Fatalf("assign: %d", st)
	}
	byID := map[string]any{"auth": map[string]any{
		"identity": map[string]any{"methods": []any{"password"}, "password": map[string]any{"user": map[string]any{"id": uid, "password": "pw1"}}},
		"scope":    map[string]any{"project": map[string]any{"id": pid}}}}
	st, h, _ = call(t, srv, "POST", "/v3/auth/tokens", "", byID)
	user := h.Get("X-Subject-Token")
	if st != 201 {
		t.Fatalf("user login: %d", st)
	}
	req := httptest.NewRequest("GET", "/v2.0/networks", nil)
	req.Header.Set("X-Auth-Token", user)
	c, err := b.Authenticate(context.Background(), req)
	if err != nil || c.ProjectID != pid || c.Admin {
		t.Fatalf("caller: %+v %v", c, err)
	}
	// Rescoping with the token method keeps the original expiry.
	rescope := map[string]any{"auth": map[string]any{"identity": map[string]any{"methods": []any{"token"}, "token": map[string]any{"id": user}},
		"scope": map[string]any{"project": map[string]any{"id": pid}}}}
	st, _, rb := call(t, srv, "POST", "/v3/auth/tokens", "", rescope)
	if st != 201 {
		t.Fatalf("rescope: %d", st)
	}
	first, _ := b.lookup(context.Background(), user)
	if rb["token"].(map[string]any)["expires_at"] != fmtTime(first.Expires) {
		t.Fatalf("rescoped token outlives its origin: %v vs %v", rb["token"].(map[string]any)["expires_at"], fmtTime(first.Expires))
	}
	// A member cannot administer identity.
	if st, _, _ := call(t, srv, "POST", "/v3/projects", user, map[string]any{"project": map[string]any{"name": "x"}}); st != 403 {
		t.Fatalf("member creating a project: %d", st)
	}
	// Disabling the user ends its tokens; enabling does not bring them back.
	call(t, srv, "PATCH", "/v3/users/"+uid, admin, map[string]any{"user": map[string]any{"enabled": false}})
	if _, err := b.Authenticate(context.Background(), req); err == nil {
		t.Fatal("token of a disabled user still valid")
	}
	call(t, srv, "PATCH", "/v3/users/"+uid, admin, map[string]any{"user": map[string]any{"enabled": true}})
	if _, err := b.Authenticate(context.Background(), req); err == nil {
		t.Fatal("token revived by re-enabling the user")
	}
	// Deleting the user ends its tokens.
	if st, _, _ := call(t, srv, "DELETE", "/v3/users/"+uid, admin, nil); st != 204 {
		t.Fatalf("delete user: %d", st)
	}
	if _, err := b.Authenticate(context.Background(), req); err == nil {
		t.Fatal("token of a deleted user still valid")
	}
	if st, _, _ := call(t, srv, "DELETE", "/v3/projects/"+pid, admin, nil); st != 204 {
		t.Fatalf("delete project: %d", st)
	}
	// Tokens are validated through GET /v3/auth/tokens too.
	hreq, _ := http.NewRequest("GET", srv.URL+"/v3/auth/tokens", nil)
	hreq.Header.Set("X-Auth-Token", admin)
	hreq.Header.Set("X-Subject-Token", "nonsense")
	r, _ := http.DefaultClient.Do(hreq)
	if r.StatusCode != 404 {
		t.Fatalf("validating a bad token: %d", r.StatusCode)
	}
}

// TestKeystoneValidation runs against a real Keystone when one is given:
// NEUTRINO_TEST_KEYSTONE=http://127.0.0.1:5000/v3 with the service user in
// NEUTRINO_TEST_KEYSTONE_USER/_PASSWORD/_PROJECT and a user to log in as in
// NEUTRINO_TEST_KEYSTONE_LOGIN (user:password:project).
func TestKeystoneValidation(t *testing.T) {
	url := os.Getenv("NEUTRINO_TEST_KEYSTONE")
	if url == "" {
		t.Skip("NEUTRINO_TEST_KEYSTONE not set")
	}
	k := NewKeystone(url, os.Getenv("NEUTRINO_TEST_KEYSTONE_USER"), os.Getenv("NEUTRINO_TEST_KEYSTONE_PASSWORD"), os.Getenv("NEUTRINO_TEST_KEYSTONE_PROJECT"))
	var user, pw, project string
	parts := bytes.Split([]byte(os.Getenv("NEUTRINO_TEST_KEYSTONE_LOGIN")), []byte(":"))
	if len(parts) == 3 {
		user, pw, project = string(parts[0]), string(parts[1]), string(parts[2])
	}
	raw, _ := json.Marshal(login(user, pw, project))
	r, err := http.Post(url+"/auth/tokens", "application/json", bytes.NewReader(raw))
	if err != nil || r.StatusCode != 201 {
		t.Fatalf("login to keystone: %v %v", r, err)
	}
	tok := r.Header.Get("X-Subject-Token")
	req := httptest.NewRequest("GET", "/v2.0/networks", nil)
	req.Header.Set("X-Auth-Token", tok)
	c, err := k.Authenticate(context.Background(), req)
	if err != nil || c.ProjectID == "" || len(c.Roles) == 0 {
		t.Fatalf("validated caller: %+v %v", c, err)
	}
	// Cached: a second validation does not need Keystone.
	k.URL = "http://127.0.0.1:1"
	if c2, err := k.Authenticate(context.Background(), req); err != nil || c2.ProjectID != c.ProjectID {
		t.Fatalf("cached validation: %v", err)
	}
	req.Header.Set("X-Auth-Token", "garbage")
	k.URL = url
	if _, err := k.Authenticate(context.Background(), req); err == nil {
		t.Fatal("garbage token accepted")
	}
}
