package api

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"neutrino/internal/policy"
	"neutrino/internal/services"
	"neutrino/internal/services/servicetest"
)

// tokenAuth accepts "admin-token" (an admin) and "user-token" (a member
// of project p1), nothing else.
type tokenAuth struct{}

func (tokenAuth) Authenticate(ctx context.Context, r *http.Request) (*policy.Caller, error) {
	switch r.Header.Get("X-Auth-Token") {
	case "admin-token":
		return &policy.Caller{ProjectID: "admin", Admin: true, Roles: []string{"admin"}}, nil
	case "user-token":
		return &policy.Caller{ProjectID: "p1", Roles: []string{"member"}}, nil
	}
	return nil, errors.New("no such token")
}

// authServer is a server that checks tokens, and its address.
func authServer(t *testing.T) (*Server, string) {
	t.Helper()
	s := New(servicetest.New(t, services.Config{}).Reg, tokenAuth{}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.BodyTimeout = 300 * time.Millisecond
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv.Listener.Addr().String()
}

// stalled sends a request whose body never comes and returns the status
// the server answers (0 for none) and whether it then closed the
// connection, waiting at most 5 s for either.
func stalled(t *testing.T, addr, token string) (int, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "POST /v2.0/networks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
	if token != "" {
		req += "X-Auth-Token: " + token + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n{\"network\":"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, false
	}
	io.Copy(io.Discard, resp.Body)
	_, err = br.ReadByte()
	return resp.StatusCode, errors.Is(err, io.EOF)
}

// TestStalledBodies: a request whose body stalls does not hold its
// connection: without a token it is answered 401 at once and closed; with
// one, the server gives up on the body when its time is up.
func TestStalledBodies(t *testing.T) {
	_, addr := authServer(t)
	if code, closed := stalled(t, addr, ""); code != 401 || !closed {
		t.Errorf("unauthenticated stalled body: status %d, closed %v", code, closed)
	}
	if code, closed := stalled(t, addr, "user-token"); code != http.StatusRequestTimeout || !closed {
		t.Errorf("authenticated stalled body: status %d, closed %v", code, closed)
	}
}

// TestConnectionsPerClient: one client holds at most n connections.
func TestConnectionsPerClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(LimitPerClient(ln, 2))
	t.Cleanup(func() { srv.Close() })
	get := func(c net.Conn) error {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	var conns []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	if get(conns[0]) != nil || get(conns[1]) != nil {
		t.Fatal("the first two connections are refused")
	}
	if err := get(conns[2]); err == nil {
		t.Fatal("a third connection of the same client is served")
	}
	conns[0].Close()
	time.Sleep(50 * time.Millisecond) // the server sees the close
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := get(c); err != nil {
		t.Fatalf("a connection after one closed: %v", err)
	}
}

// TestRolesAndPolicy: Neutron's default policy by role: a reader reads
// but does not write (and nothing is created), a member writes, a role
// that is neither does neither; with the legacy policy any role writes.
func TestRolesAndPolicy(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		reader := as{project: projA, roles: "reader"}
		other := as{project: projA, roles: "heat_stack_owner"}
		e.network(userA, map[string]any{"name": "mine"})
		before := e.db.Revision(t)
		if l := e.list(reader, "/v2.0/networks", "networks"); len(l) != 1 {
			t.Fatalf("a reader lists %d networks", len(l))
		}
		e.fault(e.do(reader, "POST", "/v2.0/networks", map[string]any{"network": map[string]any{"name": "no"}}), 403, "PolicyNotAuthorized")
		e.fault(e.do(other, "GET", "/v2.0/networks", nil), 403, "PolicyNotAuthorized")
		e.fault(e.do(other, "POST", "/v2.0/networks", map[string]any{"network": map[string]any{"name": "no"}}), 403, "PolicyNotAuthorized")
		if after := e.db.Revision(t); after != before {
			t.Fatalf("refused writes moved the revision from %d to %d", before, after)
		}
		// Tempest's users hold "Member": role names are case-insensitive.
		e.network(as{project: projA, roles: "Member"}, map[string]any{"name": "tempest"})
		e.api.LegacyPolicy = true
		e.must(201, e.do(reader, "POST", "/v2.0/networks", map[string]any{"network": map[string]any{"name": "legacy"}}), "network")
	})
}

// TestMetricsNeedAnAdmin: /metrics on the API's listener needs an admin's
// token; the metrics handler for a listener of its own needs none.
func TestMetricsNeedAnAdmin(t *testing.T) {
	s, addr := authServer(t)
	get := func(token string) int {
		req, _ := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
		if token != "" {
			req.Header.Set("X-Auth-Token", token)
		}
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode
	}
	if a, u, n := get("admin-token"), get("user-token"), get(""); a != 200 || u != 403 || n != 401 {
		t.Fatalf("metrics: admin %d, member %d, no token %d", a, u, n)
	}
	rec := httptest.NewRecorder()
	s.Metrics().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "go_goroutines") {
		t.Fatalf("metrics listener: %d", rec.Code)
	}
}

// TestBadInputChangesNothing: requests Neutron refuses get a Neutron 4xx
// here too, and change nothing.
func TestBadInputChangesNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		nid := e.network(userA, nil)["id"].(string)
		sid := e.subnet(userA, map[string]any{"network_id": nid, "ip_version": 4, "cidr": "10.77.0.0/24"})["id"].(string)
		pid := e.must(201, e.do(userA, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": nid}}), "port")["id"].(string)
		ext := e.network(admin, map[string]any{"router:external": true})["id"].(string)
		e.subnet(admin, map[string]any{"network_id": ext, "ip_version": 4, "cidr": "203.0.113.0/24", "enable_dhcp": false})
		rid := e.must(201, e.do(userA, "POST", "/v2.0/routers", map[string]any{"router": map[string]any{"name": "r"}}), "router")["id"].(string)
		huge := strings.Repeat("x", 4<<20-64)
		for _, c := range []struct {
			name, method, path string
			body               any
			hdr                []string
			status             int
			typ                string
		}{
			{"a null in a bulk create", "POST", "/v2.0/networks", `{"networks": [null]}`, nil, 400, "HTTPBadRequest"},
			{"both subnet and port", "PUT", "/v2.0/routers/" + rid + "/add_router_interface", map[string]any{"subnet_id": sid, "port_id": pid}, nil, 400, "HTTPBadRequest"},
			{"a fixed IP without a port", "POST", "/v2.0/floatingips", map[string]any{"floatingip": map[string]any{"floating_network_id": ext, "fixed_ip_address": "10.77.0.5"}}, nil, 400, "HTTPBadRequest"},
			{"a negative default quota", "POST", "/v2.0/subnetpools", map[string]any{"subnetpool": map[string]any{"name": "p", "prefixes": []any{"10.200.0.0/16"}, "default_quota": -5}}, nil, 400, "HTTPBadRequest"},
			{"a huge default quota", "POST", "/v2.0/subnetpools", map[string]any{"subnetpool": map[string]any{"name": "p", "prefixes": []any{"10.200.0.0/16"}, "default_quota": 1e30}}, nil, 400, "HTTPBadRequest"},
			{"a negative If-Match", "PUT", "/v2.0/networks/" + nid, map[string]any{"network": map[string]any{"name": "n"}}, []string{"If-Match", "revision_number=-5"}, 400, "HTTPBadRequest"},
			{"invalid UTF-8", "POST", "/v2.0/networks", "{\"network\": {\"name\": \"a\xff\xfeb\"}}", nil, 400, "HTTPBadRequest"},
			{"a 4 MB name", "POST", "/v2.0/networks", map[string]any{"network": map[string]any{"name": huge}}, nil, 400, "HTTPBadRequest"},
		} {
			t.Run(c.name, func(t *testing.T) {
				before := e.db.Revision(t)
				r := e.do(userA, c.method, c.path, c.body, c.hdr...)
				e.fault(r, c.status, c.typ)
				if len(r.Raw) > 4096 {
					t.Errorf("the error is %d bytes long", len(r.Raw))
				}
				if after := e.db.Revision(t); after != before {
					t.Errorf("the refused request moved the revision from %d to %d", before, after)
				}
			})
		}
	})
}
