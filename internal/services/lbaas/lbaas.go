// Package lbaas is load balancing as a service, Octavia's v2 API (served
// on the load-balancer endpoint, and under /v2.0/lbaas/ on the network
// endpoint as neutron-lbaas did): load balancers with a VIP port on a
// tenant subnet, their listeners, pools, members, health monitors and L7
// policies and rules.
//
// Every object has a provisioning_status with Octavia's life cycle: a
// change puts the object (PENDING_CREATE, PENDING_UPDATE, PENDING_DELETE)
// and its load balancer (PENDING_UPDATE) in a pending state until the
// provider has applied it; while a load balancer is pending, no change to
// it or to anything under it is taken (409). The provider then completes:
// pending objects become ACTIVE, deleted ones go. The haproxy provider
// completes when a load-balancer agent reports the change applied
// (driver.go); noop_driver at once, for the API alone (Octavia's own
// leaves everything pending until something reports for it).
package lbaas

import (
	"context"
	"net/http"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/hostapi"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/services/agents"
	"neutrino/internal/services/ml2"
	"neutrino/internal/store"
)

// Provisioning and operating statuses (Octavia's).
const (
	active        = "ACTIVE"
	pendingCreate = "PENDING_CREATE"
	pendingUpdate = "PENDING_UPDATE"
	pendingDelete = "PENDING_DELETE"
	online        = "ONLINE"
	offline       = "OFFLINE"
	noMonitor     = "NO_MONITOR"
)

// Providers: the reference one (haproxy in network namespaces, applied by
// agents) and the no-op one.
const (
	ProviderNoop    = "noop_driver"
	ProviderHAProxy = "haproxy"
)

// Config is the service's configuration.
type Config struct {
	// DefaultProvider is the provider of a load balancer that names none.
	DefaultProvider string
}

// Service is the load-balancer service plugin.
type Service struct {
	cfg   Config
	sched *agents.Scheduler
}

// New returns the load-balancer service.
func New(cfg Config) *Service {
	if cfg.DefaultProvider == "" {
		cfg.DefaultProvider = ProviderHAProxy
	}
	return &Service{cfg: cfg}
}

// Name implements plugin.Service: "lbaas" (as neutron-lbaas's service
// plugin was named in service_plugins).
func (s *Service) Name() string { return "lbaas" }

// common are the attributes every object has (Octavia's), with a name
// and, where described, a description.
func common(described bool) []*schema.Attr {
	out := []*schema.Attr{
		schema.Sorted(schema.RO("id")),
		schema.Sorted(schema.Post("project_id", schema.ProjectID, nil)),
		schema.Sorted(schema.RW("name", schema.StringOrNull(255), "")),
		schema.Sorted(schema.RO("provisioning_status")),
		schema.Sorted(schema.RO("operating_status")),
		schema.Sorted(schema.RW("admin_state_up", schema.Bool, true)),
		schema.Sorted(schema.RO("created_at")),
		schema.Sorted(schema.RO("updated_at")),
		schema.NoFilter(schema.RW("tags", schema.NullAsEmpty(schema.ListOf(schema.String(255))), []any{})),
	}
	if described {
		out = append(out, schema.Sorted(schema.RW("description", schema.StringOrNull(255), "")))
	}
	return out
}

func define(member, collection, path, parent string, described bool, attrs ...*schema.Attr) *schema.Resource {
	return schema.Index(&schema.Resource{Member: member, Collection: collection, Path: path, Kind: "lb_" + member,
		Parent: parent, Attrs: append(common(described), attrs...)})
}

// The load-balancer API's resources.
var (
	LoadBalancer = define("loadbalancer", "loadbalancers", "lbaas/loadbalancers", "", true,
		schema.Sorted(schema.Post("vip_subnet_id", schema.UUIDOrNull, nil)),
		schema.Sorted(schema.Post("vip_network_id", schema.UUIDOrNull, nil)),
		schema.Sorted(schema.Post("vip_port_id", schema.UUIDOrNull, nil)),
		schema.Sorted(schema.Post("vip_address", schema.IPOrNull, nil)),
		schema.Sorted(schema.RW("vip_qos_policy_id", schema.UUIDOrNull, nil)),
		schema.Sorted(schema.Post("provider", schema.StringOrNull(64), nil)),
		schema.Sorted(schema.Post("flavor_id", schema.UUIDOrNull, nil)),
		schema.Sorted(schema.Post("availability_zone", schema.StringOrNull(255), nil)),
		schema.NoFilter(schema.RO("listeners")),
		schema.NoFilter(schema.RO("pools")),
		schema.NoFilter(schema.RO("additional_vips")),
		schema.NoFilter(schema.RO("tenant_id")),
	)
	Listener = define("listener", "listeners", "lbaas/listeners", "loadbalancer_id", true,
		schema.Sorted(schema.Req("protocol", schema.OneOf("HTTP", "HTTPS", "TCP", "TERMINATED_HTTPS", "UDP", "SCTP", "PROMETHEUS"))),
		schema.Sorted(schema.Req("protocol_port", schema.IntRange(1, 65535))),
		schema.Hidden(schema.Req("loadbalancer_id", schema.UUID)),
		schema.Sorted(schema.RW("connection_limit", schema.IntRange(-1, 1<<31-1), float64(-1))),
		schema.Sorted(schema.RW("default_pool_id", schema.UUIDOrNull, nil)),
		schema.RW("default_tls_container_ref", schema.StringOrNull(255), nil),
		schema.NoFilter(schema.RW("sni_container_refs", schema.NullAsEmpty(schema.ListOf(schema.String(255))), []any{})),
		schema.NoFilter(schema.RW("insert_headers", schema.NullAsEmpty(schema.Dict), map[string]any{})),
		schema.Sorted(schema.RW("timeout_client_data", schema.IntRange(0, 86400000), float64(50000))),
		schema.Sorted(schema.RW("timeout_member_connect", schema.IntRange(0, 86400000), float64(5000))),
		schema.Sorted(schema.RW("timeout_member_data", schema.IntRange(0, 86400000), float64(50000))),
		schema.Sorted(schema.RW("timeout_tcp_inspect", schema.IntRange(0, 86400000), float64(0))),
		schema.NoFilter(schema.RW("allowed_cidrs", schema.OrNull(schema.ListOf(schema.CIDR)), nil)),
		schema.RW("client_ca_tls_container_ref", schema.StringOrNull(255), nil),
		schema.RW("client_authentication", schema.OneOf("NONE", "OPTIONAL", "MANDATORY"), "NONE"),
		schema.RW("client_crl_container_ref", schema.StringOrNull(255), nil),
		schema.NoFilter(schema.RO("loadbalancers")),
		schema.NoFilter(schema.RO("l7policies")),
	)
	Pool = define("pool", "pools", "lbaas/pools", "loadbalancer_id", true,
		schema.Sorted(schema.Req("protocol", schema.OneOf("HTTP", "HTTPS", "PROXY", "PROXYV2", "TCP", "UDP", "SCTP"))),
		schema.Sorted(schema.Req("lb_algorithm", schema.OneOf("ROUND_ROBIN", "LEAST_CONNECTIONS", "SOURCE_IP", "SOURCE_IP_PORT"))),
		schema.Hidden(schema.Post("loadbalancer_id", schema.UUIDOrNull, nil)),
		schema.Hidden(schema.Post("listener_id", schema.UUIDOrNull, nil)),
		schema.NoFilter(schema.RW("session_persistence", schema.DictOrNull, nil)),
		schema.Sorted(schema.RW("tls_enabled", schema.Bool, false)),
		schema.RW("tls_container_ref", schema.StringOrNull(255), nil),
		schema.RW("ca_tls_container_ref", schema.StringOrNull(255), nil),
		schema.RW("crl_container_ref", schema.StringOrNull(255), nil),
		schema.Sorted(schema.RO("healthmonitor_id")),
		schema.NoFilter(schema.RO("loadbalancers")),
		schema.NoFilter(schema.RO("listeners")),
		schema.NoFilter(schema.RO("members")),
	)
	Member = func() *schema.Resource {
		r := define("member", "members", "members", "pool_id", false,
			schema.Sorted(schema.Req("address", schema.IP)),
			schema.Sorted(schema.Req("protocol_port", schema.IntRange(1, 65535))),
			schema.Sorted(schema.RW("weight", schema.IntRange(0, 256), float64(1))),
			schema.Sorted(schema.RW("backup", schema.Bool, false)),
			schema.Sorted(schema.Post("subnet_id", schema.UUIDOrNull, nil)),
			schema.Sorted(schema.RW("monitor_address", schema.IPOrNull, nil)),
			schema.Sorted(schema.RW("monitor_port", schema.OrNull(schema.IntRange(1, 65535)), nil)),
			schema.Hidden(schema.RO("pool_id")),
		)
		r.ChildOf = "lb_pool"
		return r
	}()
	HealthMonitor = define("healthmonitor", "healthmonitors", "lbaas/healthmonitors", "pool_id", false,
		schema.Hidden(schema.Req("pool_id", schema.UUID)),
		schema.Sorted(schema.Req("type", schema.OneOf("HTTP", "HTTPS", "PING", "TCP", "TLS-HELLO", "UDP-CONNECT", "SCTP"))),
		schema.Sorted(schema.Req("delay", schema.IntRange(0, 1<<31-1))),
		schema.Sorted(schema.Req("timeout", schema.IntRange(0, 1<<31-1))),
		schema.Sorted(schema.Req("max_retries", schema.IntRange(1, 10))),
		schema.Sorted(schema.RW("max_retries_down", schema.IntRange(1, 10), float64(3))),
		schema.Sorted(schema.Computed("http_method", true, schema.OneOfOrNull("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"))),
		schema.Sorted(schema.Computed("url_path", true, schema.StringOrNull(2048))),
		schema.Sorted(schema.Computed("expected_codes", true, schema.StringOrNull(64))),
		schema.Sorted(schema.RW("http_version", schema.OrNull(schema.OneOf("1.0", "1.1")), nil)),
		schema.Sorted(schema.RW("domain_name", schema.StringOrNull(255), nil)),
		schema.NoFilter(schema.RO("pools")),
	)
)

func notFound(what string) func(id string) error {
	return func(id string) error {
		return fault.New(http.StatusNotFound, "NotFound", "%s %s not found.", what, id)
	}
}

func init() {
	LoadBalancer.NotFound = notFound("Load Balancer")
	Listener.NotFound = notFound("Listener")
	Pool.NotFound = notFound("Pool")
	Member.NotFound = notFound("Member")
	HealthMonitor.NotFound = notFound("Health Monitor")
}

// Register implements plugin.Service.
func (s *Service) Register(r *plugin.Registry) error {
	ag, err := agentsOf(r)
	if err != nil {
		return err
	}
	s.sched = ag.Scheduler("lb_binding", hostapi.LBAgentType, "loadbalancer_id")
	s.sched.Moved = func(c *plugin.Ctx, id string, _, _ plugin.Object) error { return s.bindVIP(c, id) }
	r.Subscribe(agents.Agent.Kind, plugin.Report, plugin.After, s.agentReported)
	r.HostSpan(s.hostPart)
	r.Route(&plugin.Route{Method: "PUT", Path: "hosts/{}/loadbalancers", Internal: true, Serve: s.serveReport})
	r.Route(&plugin.Route{Method: "GET", Path: "lbaas/providers", Serve: serveProviders})
	for _, h := range []*plugin.Handler{
		{Res: LoadBalancer, Create: s.createLB, Update: updateObject(LoadBalancer), Delete: deleteLB, Present: presentLB,
			Views: map[string]plugin.View{"status": statusTree, "stats": lbStats}, Actions: map[string]plugin.Action{"failover": s.failover}},
		{Res: Listener, Create: s.createListener, Update: updateObject(Listener), Delete: deleteObject(Listener), Present: presentListener,
			Views: map[string]plugin.View{"stats": listenerStats}},
		{Res: Pool, Create: s.createPool, Update: updateObject(Pool), Delete: deleteObject(Pool), Present: presentPool},
		{Res: Member, Create: s.createMember, Update: updateObject(Member), Delete: deleteObject(Member), Present: presentMember,
			Replace: s.replaceMembers},
		{Res: HealthMonitor, Create: s.createHM, Update: updateObject(HealthMonitor), Delete: deleteObject(HealthMonitor), Present: presentHM},
		{Res: L7Policy, Create: s.createL7Policy, Update: updateObject(L7Policy), Delete: deleteObject(L7Policy), Present: presentL7Policy},
		{Res: L7Rule, Create: s.createL7Rule, Update: updateObject(L7Rule), Delete: deleteObject(L7Rule), Present: presentL7Rule},
	} {
		h.OthersForbidden = true // another project's: 403, as Octavia
		if err := r.Resource(h); err != nil {
			return err
		}
	}
	for _, h := range flavorHandlers() {
		if err := r.Resource(h); err != nil {
			return err
		}
	}
	return nil
}

// lbOf is the load balancer an object belongs to.
func lbOf(c *plugin.Ctx, res *schema.Resource, o plugin.Object) (plugin.Object, error) {
	switch res {
	case LoadBalancer:
		return o, nil
	case Member, HealthMonitor:
		p, err := c.Tx.Get(Pool.Kind, attr.Str(o, "pool_id"))
		if err != nil {
			return nil, err
		}
		return c.Tx.Get(LoadBalancer.Kind, attr.Str(p, "loadbalancer_id"))
	case L7Rule:
		p, err := c.Tx.Get(L7Policy.Kind, attr.Str(o, "l7policy_id"))
		if err != nil {
			return nil, err
		}
		return lbOf(c, L7Policy, p)
	case L7Policy:
		l, err := c.Tx.Get(Listener.Kind, attr.Str(o, "listener_id"))
		if err != nil {
			return nil, err
		}
		return c.Tx.Get(LoadBalancer.Kind, attr.Str(l, "loadbalancer_id"))
	}
	return c.Tx.Get(LoadBalancer.Kind, attr.Str(o, "loadbalancer_id"))
}

// lock refuses a change under a load balancer that is not ACTIVE
// (Octavia's ImmutableObject), and marks it PENDING_UPDATE.
func lock(c *plugin.Ctx, lb plugin.Object) error {
	if st := attr.Str(lb, "provisioning_status"); st != active {
		return fault.New(http.StatusConflict, "ImmutableObject", "Load Balancer %s is immutable and cannot be updated.", attr.Str(lb, "id"))
	}
	lb = schema.CloneObject(lb)
	lb["provisioning_status"] = pendingUpdate
	if err := c.Touch(LoadBalancer, lb); err != nil {
		return err
	}
	provide(c, attr.Str(lb, "id"))
	return nil
}

// provide hands a load balancer's pending change to its provider: the
// noop driver completes it once the change is committed.
func provide(c *plugin.Ctx, lbID string) {
	lb, err := c.Tx.Get(LoadBalancer.Kind, lbID)
	if err != nil || attr.Str(lb, "provider") != ProviderNoop {
		return
	}
	reg := c.Reg
	c.AfterCommit(func() {
		reg.Write(context.Background(), func(c *plugin.Ctx) error { return Complete(c, lbID) })
	})
}

// kinds under a load balancer, children first.
var under = []*schema.Resource{L7Rule, L7Policy, Member, HealthMonitor, Pool, Listener}

// Complete applies what a provider reports done for a load balancer:
// every pending object under it becomes ACTIVE (an OFFLINE one ONLINE,
// until health checks say otherwise), those pending delete go, and the
// load balancer is ACTIVE again (or gone, with its VIP port).
func Complete(c *plugin.Ctx, lbID string) error {
	lb, err := c.Tx.Get(LoadBalancer.Kind, lbID)
	if err != nil {
		return nil // gone already
	}
	for _, res := range under {
		objs, err := objectsUnder(c, res, lbID)
		if err != nil {
			return err
		}
		for _, o := range objs {
			switch attr.Str(o, "provisioning_status") {
			case pendingDelete:
				if err := c.Tx.Delete(res.Kind, attr.Str(o, "id")); err != nil {
					return err
				}
			case pendingCreate, pendingUpdate:
				o = schema.CloneObject(o)
				o["provisioning_status"] = active
				if attr.Str(o, "operating_status") == offline {
					o["operating_status"] = online
				}
				if err := c.Put(res, o); err != nil {
					return err
				}
			}
		}
	}
	if attr.Str(lb, "provisioning_status") == pendingDelete {
		if err := releaseVIP(c, lb); err != nil {
			return err
		}
		if _, err := c.Tx.Get(statsKind, lbID); err == nil {
			if err := c.Tx.Delete(statsKind, lbID); err != nil {
				return err
			}
		}
		return c.Tx.Delete(LoadBalancer.Kind, lbID)
	}
	lb = schema.CloneObject(lb)
	lb["provisioning_status"], lb["operating_status"] = active, online
	return c.Put(LoadBalancer, lb)
}

// objectsUnder lists a load balancer's objects of one kind.
func objectsUnder(c *plugin.Ctx, res *schema.Resource, lbID string) ([]plugin.Object, error) {
	switch res {
	case Listener, Pool:
		return c.Tx.List(res.Kind, store.Filter{Parent: lbID})
	case L7Policy, L7Rule:
		return l7Under(c, res, lbID)
	}
	pools, err := c.Tx.List(Pool.Kind, store.Filter{Parent: lbID})
	if err != nil {
		return nil, err
	}
	var out []plugin.Object
	for _, p := range pools {
		l, err := c.Tx.List(res.Kind, store.Filter{Parent: attr.Str(p, "id")})
		if err != nil {
			return nil, err
		}
		out = append(out, l...)
	}
	return out, nil
}

// releaseVIP deletes the VIP port made for a load balancer, or gives back
// the one its user gave.
func releaseVIP(c *plugin.Ctx, lb plugin.Object) error {
	p, err := c.Tx.Get(schema.Port.Kind, attr.Str(lb, "vip_port_id"))
	if err != nil || attr.Str(p, "device_id") != "lb-"+attr.Str(lb, "id") {
		return nil
	}
	if attr.Str(p, "name") == "octavia-lb-"+attr.Str(lb, "id") {
		return ml2.RemovePort(c, p)
	}
	p = schema.CloneObject(p)
	p["device_owner"], p["device_id"] = "", ""
	return c.Touch(schema.Port, p)
}
