package api

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"neutrino/internal/identity"
	"neutrino/internal/services"
	"neutrino/internal/store"
)

// testEnv is a real server on a real store, spoken to over HTTP.
type testEnv struct {
	t   testing.TB
	srv *httptest.Server
	db  *testDB
	api *Server
}

// testDB is the store with a test's conveniences.
type testDB struct{ *store.DB }

// Revision is the store's current revision.
func (db *testDB) Revision(t testing.TB) int64 {
	t.Helper()
	var rev int64
	if err := db.Read(context.Background(), func(tx *store.Tx) error {
		var err error
		rev, err = tx.ViewRevision()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return rev
}

// dsns are the stores every API test runs against: SQLite always, and the
// PostgreSQL of NEUTRINO_TEST_POSTGRES when set (a fresh schema per test).
func dsns(t testing.TB) map[string]string {
	out := map[string]string{"sqlite": filepath.Join(t.TempDir(), "neutrino.db")}
	if pg := os.Getenv("NEUTRINO_TEST_POSTGRES"); pg != "" {
		out["postgres"] = pg
	}
	return out
}

func newEnv(t testing.TB, dsn string, cfg services.Config) *testEnv {
	t.Helper()
	if strings.HasPrefix(dsn, "postgres") {
		resetPostgres(t, dsn)
	}
	db, err := store.Open(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	reg, err := services.Build(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := New(reg, identity.NoAuth{}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	e := &testEnv{t: t, srv: httptest.NewServer(s), db: &testDB{db}, api: s}
	t.Cleanup(func() { e.srv.Close(); db.Close() })
	return e
}

// resetPostgres drops every table so each test starts from an empty schema.
func resetPostgres(t testing.TB, dsn string) {
	t.Helper()
	c, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Exec("DROP SCHEMA public CASCADE; CREATE SCHEMA public"); err != nil {
		t.Fatal(err)
	}
}

// forEachStore runs fn against a fresh server on every configured store.
func forEachStore(t *testing.T, fn func(t *testing.T, e *testEnv)) {
	for name, dsn := range dsns(t) {
		t.Run(name, func(t *testing.T) { fn(t, newEnv(t, dsn, services.Config{})) })
	}
}

const (
	projA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	projB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

type as struct {
	project string
	admin   bool
	roles   string // X-Roles when not the default ("member", or "admin,member")
}

var (
	admin = as{project: "adminproject", admin: true}
	userA = as{project: projA}
	userB = as{project: projB}
)

type resp struct {
	Status int
	Body   map[string]any
	Raw    []byte
	Header http.Header
}

func (e *testEnv) do(who as, method, path string, body any, hdr ...string) resp {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		if s, ok := body.(string); ok {
			rd = bytes.NewBufferString(s)
		} else {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Project-Id", who.project)
	switch {
	case who.roles != "":
		req.Header.Set("X-Roles", who.roles)
	case who.admin:
		req.Header.Set("X-Roles", "admin,member")
	default:
		req.Header.Set("X-Roles", "member")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Body.Close()
	raw, _ := io.ReadAll(r.Body)
	out := resp{Status: r.StatusCode, Raw: raw, Header: r.Header}
	if len(raw) > 0 {
		json.Unmarshal(raw, &out.Body)
	}
	return out
}

// must asserts the status and returns the member object of the body.
func (e *testEnv) must(status int, r resp, member string) map[string]any {
	e.t.Helper()
	if r.Status != status {
		e.t.Fatalf("status %d, want %d: %s", r.Status, status, r.Raw)
	}
	if member == "" {
		return r.Body
	}
	m, _ := r.Body[member].(map[string]any)
	return m
}

// fault asserts a Neutron error of the given status and type.
func (e *testEnv) fault(r resp, status int, typ string) {
	e.t.Helper()
	if r.Status != status {
		e.t.Fatalf("status %d, want %d: %s", r.Status, status, r.Raw)
	}
	ne, _ := r.Body["NeutronError"].(map[string]any)
	if ne == nil || ne["type"] != typ {
		e.t.Fatalf("error type %v, want %s: %s", ne["type"], typ, r.Raw)
	}
}

func (e *testEnv) network(who as, body map[string]any) map[string]any {
	e.t.Helper()
	if body == nil {
		body = map[string]any{}
	}
	return e.must(201, e.do(who, "POST", "/v2.0/networks", map[string]any{"network": body}), "network")
}

func (e *testEnv) subnet(who as, body map[string]any) map[string]any {
	e.t.Helper()
	return e.must(201, e.do(who, "POST", "/v2.0/subnets", map[string]any{"subnet": body}), "subnet")
}

func (e *testEnv) list(who as, path, key string) []any {
	e.t.Helper()
	r := e.must(200, e.do(who, "GET", path, nil), "")
	l, _ := r[key].([]any)
	return l
}

// rows counts a table's rows (allocation tables, which the API does not show).
func (e *testEnv) rows(table string) int {
	e.t.Helper()
	var n int
	err := e.db.Read(context.Background(), func(tx *store.Tx) error {
		return tx.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}
