package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// The whole workload, small, against an embedded server.
func TestBenchEmbedded(t *testing.T) {
	if err := bench([]string{"--networks", "3", "--ports", "3", "--gets", "3"}); err != nil {
		t.Fatal(err)
	}
}

// The client reads bodies whole, reports HTTP errors with their body, and
// reconnects when the server closes the connection (as eventlet and uwsgi
// servers do), without repeating a request the server answered.
func TestBenchClient(t *testing.T) {
	var hits, conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Header.Get("X-Auth-Token") != "tok" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/close":
			w.Header().Set("Connection", "close")
		case "/big": // chunked, larger than the read buffer
			w.Write([]byte(`{"items": "` + strings.Repeat("x", 200<<10) + `"}`))
			return
		case "/fail":
			w.WriteHeader(http.StatusConflict)
			w.Write([]byte(`{"NeutronError": {"type": "Conflict"}}`))
			return
		}
		w.Write([]byte(`{"echo": ` + string(body) + `}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	c := newBenchClient(srv.URL, "tok")
	var out struct{ Echo struct{ N int } }
	for i := 1; i <= 3; i++ {
		if err := c.do("POST", "/close", map[string]any{"n": i}, &out); err != nil {
			t.Fatal(err)
		}
		if out.Echo.N != i {
			t.Fatalf("echo %d, want %d", out.Echo.N, i)
		}
	}
	var raw []byte
	if err := c.do("GET", "/big", nil, &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw) != 200<<10+13 {
		t.Fatalf("big body: %d bytes", len(raw))
	}
	err := c.do("DELETE", "/fail", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "HTTP 409") || !strings.Contains(err.Error(), "Conflict") {
		t.Fatalf("want a 409 with its body, got %v", err)
	}
	// An idle connection the server dropped without a word: the request
	// goes out again on a new one.
	srv.CloseClientConnections()
	if err := c.do("POST", "/", map[string]any{"n": 7}, &out); err != nil || out.Echo.N != 7 {
		t.Fatalf("after the server dropped the connection: %v, echo %d", err, out.Echo.N)
	}
	if n := hits.Load(); n != 6 {
		t.Fatalf("server saw %d requests, want 6 (none repeated)", n)
	}
	if n := conns.Load(); n != 5 {
		t.Fatalf("%d connections, want 5 (three closed by the server, one dropped)", n)
	}
}
