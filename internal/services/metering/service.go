package metering

import (
	"errors"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/hostapi"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// Metering labels and their rules (admin-only; neither can be updated).
var (
	Label = schema.Index(&schema.Resource{Member: "metering_label", Collection: "metering_labels", Path: "metering/metering-labels",
		Kind: "metering_label", Attrs: []*schema.Attr{
			schema.Sorted(schema.RO("id")),
			schema.Sorted(schema.Post("name", schema.String(255), "")),
			schema.Sorted(schema.Post("description", schema.String(1024), "")),
			schema.Sorted(schema.Post("shared", schema.Bool, false)),
			schema.Sorted(schema.Post("project_id", schema.ProjectID, nil)),
			schema.Sorted(schema.Post("tenant_id", schema.ProjectID, nil)),
		}, NotFound: func(id string) error {
			return fault.New(http.StatusNotFound, "MeteringLabelNotFound", "Metering label '%s' does not exist.", id)
		}})

	LabelRule = schema.Index(&schema.Resource{Member: "metering_label_rule", Collection: "metering_label_rules",
		Path: "metering/metering-label-rules", Kind: "metering_label_rule", Parent: "metering_label_id", Attrs: []*schema.Attr{
			schema.Sorted(schema.RO("id")),
			schema.Sorted(schema.Req("metering_label_id", schema.UUID)),
			schema.Sorted(schema.Req("direction", schema.OneOf("ingress", "egress"))),
			schema.Sorted(schema.Post("remote_ip_prefix", schema.PrefixOrNull, nil)),
			schema.Sorted(schema.Post("source_ip_prefix", schema.PrefixOrNull, nil)),
			schema.Sorted(schema.Post("destination_ip_prefix", schema.PrefixOrNull, nil)),
			schema.Sorted(schema.Post("excluded", schema.Bool, false)),
		}, NotFound: func(id string) error {
			return fault.New(http.StatusNotFound, "MeteringLabelRuleNotFound", "Metering label rule '%s' does not exist.", id)
		}})
)

// Service is the metering service plugin.
type Service struct {
	mu     sync.Mutex
	byHost map[string][]hostapi.MeterCount // each host's newest report
}

// New returns the metering service plugin.
func New() *Service { return &Service{byHost: map[string][]hostapi.MeterCount{}} }

// Name implements plugin.Service.
func (s *Service) Name() string { return "metering" }

// Register implements plugin.Service.
func (s *Service) Register(r *plugin.Registry) error {
	if !r.HasExtension("router") {
		return errors.New("metering counts at routers: it needs the router service before it")
	}
	r.Extension(
		plugin.Extension{Alias: "metering", Name: "Neutron Metering", Description: "Neutron Metering extension.", Updated: "2013-06-12T10:00:00-00:00"},
		plugin.Extension{Alias: "metering_source_and_destination_fields", Name: "Neutron Metering with source and destination filtering", Description: "Neutron Metering extension that enables the use of source and destination IP prefixes to create metering label rules.", Updated: "2020-08-21T08:12:00-00:00"},
	)
	if err := r.Resource(&plugin.Handler{Res: Label, Create: createMeteringLabel, Delete: deleteMeteringLabel, AdminOnly: true}); err != nil {
		return err
	}
	if err := r.Resource(&plugin.Handler{Res: LabelRule, Create: createMeteringRule, Delete: deleteMeteringRule, AdminOnly: true}); err != nil {
		return err
	}
	r.HostSpan(hostLabels)
	r.Route(&plugin.Route{Method: http.MethodPut, Path: "hosts/{}/metering", Internal: true, Serve: s.serveReport})
	r.Collector(s)
	return nil
}

// hostLabels adds the labels that apply to the span's routers (shared, or
// of a router's project), each with its "rules".
func hostLabels(c *plugin.Ctx, host string, span *hostapi.Span, _ plugin.SpanOptions) error {
	if len(span.Routers) == 0 {
		return nil
	}
	projects := map[string]bool{}
	for _, r := range span.Routers {
		projects[attr.Str(r, "project_id")] = true
	}
	labels, err := c.Tx.List(Label.Kind, store.Filter{})
	if err != nil {
		return err
	}
	for _, l := range labels {
		if l["shared"] != true && !projects[attr.Str(l, "project_id")] {
			continue
		}
		rules, err := c.Tx.List(LabelRule.Kind, store.Filter{Parent: attr.Str(l, "id")})
		if err != nil {
			return err
		}
		withRules := schema.CloneObject(l)
		rl := make([]any, 0, len(rules))
		for _, r := range rules {
			rl = append(rl, r)
		}
		withRules["rules"] = rl
		span.MeteringLabels = append(span.MeteringLabels, withRules)
	}
	return nil
}

var (
	meterBytes = prometheus.NewDesc("neutrino_metering_label_bytes_total",
		"Bytes counted by a metering label at a router's external gateway.", []string{"label_id", "router_id", "direction", "host"}, nil)
	meterPackets = prometheus.NewDesc("neutrino_metering_label_packets_total",
		"Packets counted by a metering label at a router's external gateway.", []string{"label_id", "router_id", "direction", "host"}, nil)
)

// Describe implements prometheus.Collector.
func (s *Service) Describe(ch chan<- *prometheus.Desc) { ch <- meterBytes; ch <- meterPackets }

// Collect implements prometheus.Collector.
func (s *Service) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for host, counts := range s.byHost {
		for _, c := range counts {
			ch <- prometheus.MustNewConstMetric(meterBytes, prometheus.CounterValue, float64(c.Bytes), c.LabelID, c.RouterID, c.Direction, host)
			ch <- prometheus.MustNewConstMetric(meterPackets, prometheus.CounterValue, float64(c.Packets), c.LabelID, c.RouterID, c.Direction, host)
		}
	}
}

// serveReport takes an L3 agent's counts: PUT /neutrino/v1/hosts/{host}/metering
// {"counters": [...]} replaces what that host reported before.
func (s *Service) serveReport(req *plugin.Request) (int, any, error) {
	var doc struct {
		Counters []hostapi.MeterCount `json:"counters"`
	}
	if err := req.Decode(&doc); err != nil {
		return 0, nil, err
	}
	host := req.Args[0]
	s.mu.Lock()
	if len(doc.Counters) == 0 {
		delete(s.byHost, host)
	} else {
		s.byHost[host] = doc.Counters
	}
	s.mu.Unlock()
	return http.StatusNoContent, nil, nil
}
