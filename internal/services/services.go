// Package services is the ordered list of Neutrino's services, as
// CoreDNS's plugin.cfg: a service is one package and one line here. The
// core services always run; the optional ones (Neutron's service_plugins)
// run when --service-plugins names them, and a service left out is absent
// from the API and from /v2.0/extensions. Order matters: a service comes
// after those it builds on (ML2 after RBAC and IPAM, metering after the
// router service), and quotas last, to see every resource with a quota.
package services

import (
	"context"
	"fmt"
	"strings"
	"time"

	"neutrino/internal/plugin"
	"neutrino/internal/services/agents"
	"neutrino/internal/services/dhcp"
	"neutrino/internal/services/ipam"
	"neutrino/internal/services/keymanager"
	"neutrino/internal/services/l3"
	"neutrino/internal/services/lbaas"
	"neutrino/internal/services/metering"
	"neutrino/internal/services/ml2"
	"neutrino/internal/services/quota"
	"neutrino/internal/services/rbac"
	"neutrino/internal/services/secgroup"
	"neutrino/internal/store"
)

// Config is every service's configuration.
type Config struct {
	ML2 ml2.Config
	// Quotas are the default limits by quota name (-1: unlimited).
	Quotas               map[string]int
	DHCPAgentsPerNetwork int
	// L3HA makes new routers highly available by default; HA routers go
	// to MaxL3AgentsPerRouter L3 agents (0: 3).
	L3HA                 bool
	MaxL3AgentsPerRouter int
	// AgentDownTime is how long an agent may go without reporting before
	// it counts as dead.
	AgentDownTime time.Duration
	LBaaS         lbaas.Config
	KeyManager    keymanager.Config
	// ServicePlugins names the optional services to run; nil runs them all.
	ServicePlugins []string
	// Extra services run after the listed ones, before quotas (tests,
	// and services built outside this tree).
	Extra []plugin.Service
}

type entry struct {
	name     string
	optional bool
	make     func(cfg Config) (plugin.Service, error)
}

var list = []entry{
	{"standard", false, func(Config) (plugin.Service, error) { return plugin.Standard{}, nil }},
	{"agents", false, func(c Config) (plugin.Service, error) {
		return agents.New(agents.Config{DownTime: c.AgentDownTime}), nil
	}},
	{"rbac", false, func(Config) (plugin.Service, error) { return rbac.New(), nil }},
	{"ipam", false, func(Config) (plugin.Service, error) { return ipam.New(), nil }},
	{"ml2", false, func(c Config) (plugin.Service, error) { return ml2.New(c.ML2) }},
	{"security-group", false, func(Config) (plugin.Service, error) { return secgroup.New(), nil }},
	{"dhcp", false, func(c Config) (plugin.Service, error) {
		return dhcp.New(dhcp.Config{AgentsPerNetwork: c.DHCPAgentsPerNetwork}), nil
	}},
	{"router", true, func(c Config) (plugin.Service, error) {
		return l3.New(l3.Config{HA: c.L3HA, MaxAgents: c.MaxL3AgentsPerRouter}), nil
	}},
	{"metering", true, func(Config) (plugin.Service, error) { return metering.New(), nil }},
	{"key-manager", true, func(c Config) (plugin.Service, error) { return keymanager.New(c.KeyManager), nil }},
	{"lbaas", true, func(c Config) (plugin.Service, error) {
		if p := c.LBaaS.DefaultProvider; p != "" && !lbaas.Known(p) {
			return nil, fmt.Errorf("unknown load-balancer provider %q (haproxy, noop_driver)", p)
		}
		return lbaas.New(c.LBaaS), nil
	}},
	{"quotas", false, func(c Config) (plugin.Service, error) { return quota.New(c.Quotas), nil }},
}

// Optional lists the optional services' names, in order.
func Optional() []string {
	var out []string
	for _, e := range list {
		if e.optional {
			out = append(out, e.name)
		}
	}
	return out
}

// Build registers the enabled services over db and applies their own
// migrations.
func Build(db *store.DB, cfg Config) (*plugin.Registry, error) {
	want := map[string]bool{}
	for _, n := range cfg.ServicePlugins {
		want[strings.TrimSpace(n)] = true
	}
	for n := range want {
		found := false
		for _, e := range list {
			found = found || e.optional && e.name == n
		}
		if !found && n != "" {
			return nil, fmt.Errorf("unknown service plugin %q (known: %s)", n, strings.Join(Optional(), ", "))
		}
	}
	var svcs []plugin.Service
	for _, e := range list {
		if e.optional && cfg.ServicePlugins != nil && !want[e.name] {
			continue
		}
		if e.name == "quotas" {
			svcs = append(svcs, cfg.Extra...)
		}
		s, err := e.make(cfg)
		if err != nil {
			return nil, err
		}
		svcs = append(svcs, s)
	}
	reg, err := plugin.NewRegistry(db, svcs...)
	if err != nil || db == nil {
		return reg, err
	}
	return reg, reg.Migrate(context.Background())
}
