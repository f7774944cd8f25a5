package api

import (
	"fmt"
	"path/filepath"
	"testing"

	"neutrino/internal/services"
)

// The API benchmarks mirror shared/peer/bench-api.sh's workload; `neutrino
// bench` runs the same over real HTTP with real tokens.

func benchEnv(b *testing.B) *testEnv {
	t := &testing.T{}
	e := newEnv(t, filepath.Join(b.TempDir(), "bench.db"), services.Config{Quotas: map[string]int{"network": -1, "port": -1}})
	e.t = t
	b.Cleanup(func() { e.srv.Close(); e.db.Close() })
	return e
}

func BenchmarkCreateNetwork(b *testing.B) {
	e := benchEnv(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := e.do(admin, "POST", "/v2.0/networks", map[string]any{"network": map[string]any{"name": fmt.Sprint("n", i)}}); r.Status != 201 {
			b.Fatal(r.Status)
		}
	}
}

func benchPortNet(b *testing.B, e *testEnv) string {
	r := e.do(admin, "POST", "/v2.0/networks", map[string]any{"network": map[string]any{}})
	nid := r.Body["network"].(map[string]any)["id"].(string)
	e.do(admin, "POST", "/v2.0/subnets", map[string]any{"subnet": map[string]any{"network_id": nid, "ip_version": 4, "cidr": "10.201.0.0/16"}})
	return nid
}

func BenchmarkCreatePort(b *testing.B) {
	e := benchEnv(b)
	nid := benchPortNet(b, e)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := e.do(admin, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": nid}}); r.Status != 201 {
			b.Fatal(r.Status, string(r.Raw))
		}
	}
}

func BenchmarkListPortsLimit50(b *testing.B) {
	e := benchEnv(b)
	nid := benchPortNet(b, e)
	for i := 0; i < 200; i++ {
		e.do(admin, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": nid}})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := e.do(admin, "GET", "/v2.0/ports?limit=50", nil); r.Status != 200 {
			b.Fatal(r.Status)
		}
	}
}
