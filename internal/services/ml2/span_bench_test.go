package ml2_test

import (
	"context"
	"fmt"
	"testing"

	"neutrino/internal/hostapi"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/services"
	"neutrino/internal/services/servicetest"
)

// BenchmarkHostSpan builds one host's span in a cloud of 100 hosts with
// 100 ports each (10 networks, each on 10 hosts; every port in its
// project's default security group, whose rules admit the group): what an
// agent's listing costs the server. docs/benchmarks.md.
func BenchmarkHostSpan(b *testing.B) {
	e := servicetest.New(b, services.Config{ServicePlugins: []string{}, Quotas: map[string]int{"port": -1, "network": -1}})
	const hosts, perHost, nets = 100, 100, 10
	for h := 0; h < hosts; h++ {
		err := e.Write(func(c *plugin.Ctx) error {
			return c.Tx.Put(agentKind, "", plugin.Object{"id": fmt.Sprint("agent-", h), "agent_type": hostapi.HostAgentType,
				"host": fmt.Sprint("h", h), "admin_state_up": true, "alive": true, "heartbeat_timestamp": "2999-01-01 00:00:00",
				"configurations": map[string]any{"tunnel_types": []any{"vxlan"}, "tunneling_ip": fmt.Sprint("10.1.0.", h)}})
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	var netIDs []string
	for n := 0; n < nets; n++ {
		id := e.Create(schema.Network, map[string]any{"name": fmt.Sprint("n", n)})["id"].(string)
		e.Create(schema.Subnet, map[string]any{"network_id": id, "ip_version": float64(4), "cidr": fmt.Sprintf("10.%d.0.0/16", 100+n)})
		netIDs = append(netIDs, id)
	}
	for h := 0; h < hosts; h++ {
		for i := 0; i < perHost; i++ {
			e.Create(schema.Port, map[string]any{"network_id": netIDs[h/nets], "binding:host_id": fmt.Sprint("h", h)})
		}
	}
	span := func(host string) int {
		var size int
		if err := e.Reg.Read(context.Background(), func(c *plugin.Ctx) error {
			span, err := e.Reg.Span(c, host, plugin.SpanOptions{})
			size = len(span.Ports) + len(span.Peers)
			return err
		}); err != nil {
			b.Fatal(err)
		}
		return size
	}
	b.Run("one host", func(b *testing.B) {
		var size int
		for i := 0; i < b.N; i++ {
			e.Create(schema.Port, map[string]any{"network_id": netIDs[i%nets]}) // a new revision
			b.StartTimer()
			size = span("h42")
			b.StopTimer()
		}
		b.ReportMetric(float64(size), "ports+peers")
	})
	// What one change costs when every host lists its state again after
	// it (a new member of the default group concerns them all).
	b.Run("every host", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			e.Create(schema.Port, map[string]any{"network_id": netIDs[i%nets]})
			b.StartTimer()
			for h := 0; h < hosts; h++ {
				span(fmt.Sprint("h", h))
			}
			b.StopTimer()
		}
	})
}

const agentKind = "agent"
