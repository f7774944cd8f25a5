package api

import (
	"encoding/json"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"neutrino/internal/core"
	"neutrino/internal/fault"
)

// meters keeps the newest report of each host; /metrics exports them.
type meters struct {
	mu     sync.Mutex
	byHost map[string][]core.MeterCount
}

var (
	meterBytes = prometheus.NewDesc("neutrino_metering_label_bytes_total",
		"Bytes counted by a metering label at a router's external gateway.", []string{"label_id", "router_id", "direction", "host"}, nil)
	meterPackets = prometheus.NewDesc("neutrino_metering_label_packets_total",
		"Packets counted by a metering label at a router's external gateway.", []string{"label_id", "router_id", "direction", "host"}, nil)
)

func (m *meters) Describe(ch chan<- *prometheus.Desc) { ch <- meterBytes; ch <- meterPackets }

func (m *meters) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for host, counts := range m.byHost {
		for _, c := range counts {
			ch <- prometheus.MustNewConstMetric(meterBytes, prometheus.CounterValue, float64(c.Bytes), c.LabelID, c.RouterID, c.Direction, host)
			ch <- prometheus.MustNewConstMetric(meterPackets, prometheus.CounterValue, float64(c.Packets), c.LabelID, c.RouterID, c.Direction, host)
		}
	}
}

// hostMetering takes an L3 agent's counts: PUT /neutrino/v1/hosts/{host}/metering
// {"counters": [...]} replaces what that host reported before.
func (s *Server) hostMetering(w http.ResponseWriter, r *http.Request, host string) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var doc struct {
		Counters []core.MeterCount `json:"counters"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return fault.BadRequest("Malformed request body")
	}
	s.meters.mu.Lock()
	if len(doc.Counters) == 0 {
		delete(s.meters.byHost, host)
	} else {
		s.meters.byHost[host] = doc.Counters
	}
	s.meters.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
	return nil
}
