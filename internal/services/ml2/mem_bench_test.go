package ml2_test

import (
	"fmt"
	"runtime"
	"testing"

	"neutrino/internal/schema"
	"neutrino/internal/services"
	"neutrino/internal/services/servicetest"
)

// BenchmarkPortMemory reports the server's live heap per port held (the
// view of the store, its indexes and memos, the change ring), with 20,000
// ports on one network: go test -run '^$' -bench PortMemory ./internal/services/ml2/
func BenchmarkPortMemory(b *testing.B) {
	const ports = 20000
	for i := 0; i < b.N; i++ {
		e := servicetest.New(b, services.Config{ServicePlugins: []string{}, Quotas: map[string]int{"port": -1}})
		net := e.Create(schema.Network, map[string]any{"name": "n"})
		e.Create(schema.Subnet, map[string]any{"network_id": net["id"], "ip_version": float64(4), "cidr": "10.64.0.0/16"})
		heap := func() uint64 {
			runtime.GC()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			return m.HeapAlloc
		}
		before := heap()
		for p := 0; p < ports; p++ {
			e.Create(schema.Port, map[string]any{"network_id": net["id"], "name": fmt.Sprint("port-", p), "binding:host_id": fmt.Sprint("host-", p%100)})
		}
		b.ReportMetric(float64(heap()-before)/ports, "heap-bytes/port")
	}
}
