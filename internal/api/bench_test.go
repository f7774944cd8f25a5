package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"neutrino/internal/services"
)

// The API benchmarks mirror shared/peer/bench-api.sh's workload; `neutrino
// bench` runs the same over real HTTP with real tokens.

func benchEnv(b *testing.B) *testEnv {
	return newEnv(b, filepath.Join(b.TempDir(), "bench.db"), services.Config{Quotas: map[string]int{"network": -1, "port": -1}})
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

// BenchmarkAgentFeed measures what each of 20 host agents receives per
// port change: bytes (watch answers and the state listings they lead to)
// and wake-ups (watch answers), with the host-scoped watch each agent uses
// ("host") and with the whole change feed ("global", what agents watched
// before). Each of 10 networks has ports on two hosts; each change is a new
// port on one network. Run with -benchtime 200x or so; docs/benchmarks.md.
func BenchmarkAgentFeed(b *testing.B) {
	for _, mode := range []string{"host", "global"} {
		b.Run(mode, func(b *testing.B) { benchAgentFeed(b, mode) })
	}
}

func benchAgentFeed(b *testing.B, mode string) {
	const hosts, nets = 20, 10
	const kinds = "agent,network,port,security_group,subnet"
	e := benchEnv(b)
	e.api.Repoll = time.Hour // one server: a commit wakes the polls
	for h := 0; h < hosts; h++ {
		e.must(200, e.do(admin, "POST", "/neutrino/v1/agents/report", map[string]any{"agent": map[string]any{"agent_type": "Neutrino host agent",
			"binary": "neutrino-agent", "host": fmt.Sprint("h", h), "configurations": map[string]any{"tunnel_types": []any{"vxlan"},
				"tunneling_ip": fmt.Sprintf("10.0.0.%d", h+1)}}}), "agent")
	}
	var netIDs []string
	for n := 0; n < nets; n++ {
		id := e.network(admin, nil)["id"].(string)
		netIDs = append(netIDs, id)
		for _, h := range []int{2 * n, 2*n + 1} {
			e.must(201, e.do(admin, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": id,
				"binding:host_id": fmt.Sprint("h", h), "port_security_enabled": false}}), "port")
		}
	}
	type counts struct{ bytes, wakeups int64 }
	got := make([]counts, hosts)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	get := func(path string) ([]byte, error) {
		req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+path, nil)
		req.Header.Set("X-Project-Id", admin.project)
		req.Header.Set("X-Roles", "admin")
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer r.Body.Close()
		return io.ReadAll(r.Body)
	}
	ready := make(chan struct{}, hosts)
	for h := 0; h < hosts; h++ {
		wg.Add(1)
		go func(h int) {
			defer wg.Done()
			host := fmt.Sprint("h", h)
			list := func() int64 {
				raw, err := get("/neutrino/v1/hosts/" + host + "/state?kinds=" + kinds)
				if err != nil {
					return -1
				}
				got[h].bytes += int64(len(raw))
				var st struct{ Revision int64 }
				json.Unmarshal(raw, &st)
				return st.Revision
			}
			span := list()
			after := span
			got[h] = counts{}
			ready <- struct{}{}
			for ctx.Err() == nil {
				path := fmt.Sprintf("/neutrino/v1/hosts/%s/changes?after=%d&span=%d&kinds=%s&wait=30", host, after, span, kinds)
				if mode == "global" {
					path = fmt.Sprintf("/neutrino/v1/changes?after=%d&wait=30", after)
				}
				raw, err := get(path)
				if err != nil {
					return
				}
				var ans struct {
					Changes []struct {
						Revision int64
					}
					Revision int64
				}
				json.Unmarshal(raw, &ans)
				got[h].bytes += int64(len(raw))
				got[h].wakeups++
				for _, c := range ans.Changes {
					after = max(after, c.Revision)
				}
				after = max(after, ans.Revision)
				if len(ans.Changes) > 0 {
					// As the agent does: list the state again.
					if r := list(); r >= 0 {
						span, after = r, max(after, r)
					}
				}
			}
		}(h)
	}
	for h := 0; h < hosts; h++ {
		<-ready
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n := i % nets
		e.must(201, e.do(admin, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": netIDs[n],
			"binding:host_id": fmt.Sprint("h", 2*n), "port_security_enabled": false}}), "port")
		time.Sleep(2 * time.Millisecond) // let the watchers answer, as changes spaced in time would be
	}
	b.StopTimer()
	time.Sleep(100 * time.Millisecond)
	cancel()
	wg.Wait()
	var total counts
	for _, c := range got {
		total.bytes += c.bytes
		total.wakeups += c.wakeups
	}
	per := float64(b.N * hosts)
	b.ReportMetric(float64(total.bytes)/per, "bytes/change/host")
	b.ReportMetric(float64(total.wakeups)/per, "wakeups/change/host")
}
