package identity

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"neutrino/internal/store"
)

// send sends one request with the given headers and returns the status,
// the response's headers and its decoded body (nil when there is none).
func send(t *testing.T, srv *httptest.Server, method, path string, headers map[string]string, body any) (int, http.Header, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, resp.Header, out
}

// request is send without the response's headers.
func request(t *testing.T, srv *httptest.Server, method, path string, headers map[string]string, body any) (int, map[string]any) {
	t.Helper()
	st, _, out := send(t, srv, method, path, headers, body)
	return st, out
}

// subject sends method on /v3/auth/tokens as caller about subject.
func subject(t *testing.T, srv *httptest.Server, method, caller, subject string) (int, map[string]any) {
	t.Helper()
	return request(t, srv, method, "/v3/auth/tokens", map[string]string{"X-Auth-Token": caller, "X-Subject-Token": subject}, nil)
}

// loginToken logs user in to project by name and returns the token.
func loginToken(t *testing.T, srv *httptest.Server, user, pw, project string) string {
	t.Helper()
	st, h, body := call(t, srv, "POST", "/v3/auth/tokens", "", login(user, pw, project))
	tok := h.Get("X-Subject-Token")
	if st != http.StatusCreated || tok == "" {
		t.Fatalf("login %s/%s: %d %v", user, project, st, body)
	}
	return tok
}

// member is a user with the member role in a project of its own.
type member struct{ project, user, role, token string }

// step is a request an admin makes about member m (other is a second
// member, for the steps that involve one).
type step func(m, other member) (method, path string, body any)

// path is the address of m's project, user or role (kind).
func (m member) path(kind string) string {
	return map[string]string{"project": "/v3/projects/" + m.project, "user": "/v3/users/" + m.user, "role": "/v3/roles/" + m.role}[kind]
}

// create is the step that creates a project, user or role (kind) of attrs.
func create(kind string, attrs map[string]any) step {
	return func(member, member) (string, string, any) {
		return "POST", "/v3/" + kind + "s", map[string]any{kind: attrs}
	}
}

// patch is the step that sets attrs on m's project or user (kind).
func patch(kind string, attrs map[string]any) step {
	return func(m, _ member) (string, string, any) { return "PATCH", m.path(kind), map[string]any{kind: attrs} }
}

// remove is the step that deletes m's project, user or role (kind).
func remove(kind string) step {
	return func(m, _ member) (string, string, any) { return "DELETE", m.path(kind), nil }
}

// unassign is the step that removes m's role in its project.
func unassign(m, _ member) (string, string, any) {
	return "DELETE", "/v3/projects/" + m.project + "/users/" + m.user + "/roles/" + m.role, nil
}

// newMember creates project name, user name (password "pw-"+name) with the
// member role in it, and logs the user in.
func newMember(t *testing.T, srv *httptest.Server, admin, name string) member {
	t.Helper()
	var m member
	st, p := request(t, srv, "POST", "/v3/projects", map[string]string{"X-Auth-Token": admin}, map[string]any{"project": map[string]any{"name": name}})
	if st != http.StatusCreated {
		t.Fatalf("create project %s: %d %v", name, st, p)
	}
	m.project = p["project"].(map[string]any)["id"].(string)
	st, u := request(t, srv, "POST", "/v3/users", map[string]string{"X-Auth-Token": admin}, map[string]any{"user": map[string]any{"name": name, "password": "pw-" + name}})
	if st != http.StatusCreated {
		t.Fatalf("create user %s: %d %v", name, st, u)
	}
	m.user = u["user"].(map[string]any)["id"].(string)
	st, roles := request(t, srv, "GET", "/v3/roles?name=member", map[string]string{"X-Auth-Token": admin}, nil)
	if st != http.StatusOK || len(roles["roles"].([]any)) != 1 {
		t.Fatalf("member role: %d %v", st, roles)
	}
	m.role = roles["roles"].([]any)[0].(map[string]any)["id"].(string)
	if st, _ := request(t, srv, "PUT", "/v3/projects/"+m.project+"/users/"+m.user+"/roles/"+m.role, map[string]string{"X-Auth-Token": admin}, nil); st != http.StatusNoContent {
		t.Fatalf("assign member to %s: %d", name, st)
	}
	m.token = loginToken(t, srv, name, "pw-"+name, name)
	return m
}

// isForbidden checks a Keystone 403 body.
func isForbidden(t *testing.T, what string, st int, body map[string]any) {
	t.Helper()
	e, _ := body["error"].(map[string]any)
	if st != http.StatusForbidden || e == nil || e["code"] != float64(403) || e["title"] != "Forbidden" || e["message"] == "" {
		t.Errorf("%s: want Keystone's 403, got %d %v", what, st, body)
	}
}

// servers returns two built-in identities sharing one database, as two
// Neutrino servers would, each with its own HTTP server and token cache.
// With separate, each has its own store.DB over the database (separate
// processes); else they share one.
func servers(t *testing.T, separate bool) (*httptest.Server, *httptest.Server) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "id.db")
	open := func() *store.DB {
		db, err := store.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	db1 := open()
	if _, err := db1.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	db2 := db1
	if separate {
		db2 = open()
	}
	b1, b2 := testBuiltin(db1), testBuiltin(db2)
	if _, err := b1.Bootstrap(context.Background(), "adminpw", "demopw"); err != nil {
		t.Fatal(err)
	}
	s1, s2 := httptest.NewServer(b1), httptest.NewServer(b2)
	t.Cleanup(func() { s1.Close(); s2.Close() })
	return s1, s2
}

// failOn makes every statement of kind op (INSERT, UPDATE, DELETE) on
// table fail, as a full disk or a lost database would.
func failOn(t *testing.T, b *Builtin, op, table string) {
	t.Helper()
	_, err := b.DB.Write(context.Background(), func(tx *store.Tx) error {
		_, err := tx.Exec("CREATE TRIGGER fail_" + table + " BEFORE " + op + " ON " + table + " BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// failing is failOn as a test case's setup.
func failing(op, table string) func(t *testing.T, b *Builtin) {
	return func(t *testing.T, b *Builtin) { failOn(t, b, op, table) }
}

// testArgon2 makes password hashing cheap for tests (the real cost is
// the same code with larger numbers).
var testArgon2 = argon2Params{time: 1, memory: 64, threads: 1}

// testBuiltin is NewBuiltin as the tests use it: cheap password hashing,
// and the failures they cause on purpose are not logged.
func testBuiltin(db *store.DB) *Builtin {
	b := NewBuiltin(db)
	b.pw = newPasswords(testArgon2)
	b.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	return b
}
