package lbaas

import (
	"maps"
	"net/http"
	"slices"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/hostapi"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/services/agents"
	"neutrino/internal/services/ml2"
	"neutrino/internal/store"
)

// The haproxy provider: a load balancer is scheduled to a load-balancer
// agent (the least loaded live one), its VIP port is bound to that agent's
// host, and the agent runs it; the agent reports the revision of each load
// balancer it has applied (which completes its pending change) and its
// members' health (which sets the operating statuses).

// schedule places a haproxy load balancer on an agent and binds its VIP
// port there (none live: it waits, PENDING_CREATE, for one to report).
func (s *Service) schedule(c *plugin.Ctx, lb plugin.Object) error {
	if attr.Str(lb, "provider") != ProviderHAProxy {
		return nil
	}
	id := attr.Str(lb, "id")
	if _, err := s.sched.Schedule(c, id, 1); err != nil {
		return err
	}
	return s.bindVIP(c, id)
}

// bindVIP binds a load balancer's VIP port to its agent's host.
func (s *Service) bindVIP(c *plugin.Ctx, lbID string) error {
	lb, err := c.Tx.Get(LoadBalancer.Kind, lbID)
	if err != nil {
		return nil
	}
	hosts, err := s.sched.Hosts(c, lbID)
	if err != nil {
		return err
	}
	host := ""
	if len(hosts) > 0 {
		host = hosts[0]
	}
	p, err := c.Tx.Get(schema.Port.Kind, attr.Str(lb, "vip_port_id"))
	if err != nil || attr.Str(p, "binding:host_id") == host {
		return nil
	}
	return ml2.Rebind(c, schema.CloneObject(p), host)
}

// agentReported moves the load balancers of dead agents and schedules
// those waiting for one.
func (s *Service) agentReported(c *plugin.Ctx, p *plugin.Payload) error {
	if attr.Str(p.New, "agent_type") != hostapi.LBAgentType {
		return nil
	}
	if err := s.sched.Failover(c); err != nil {
		return err
	}
	bound, err := s.sched.Bindings(c, "")
	if err != nil {
		return err
	}
	hosted := map[string]bool{}
	for _, b := range bound {
		hosted[attr.Str(b, "loadbalancer_id")] = true
	}
	lbs, err := c.Tx.List(LoadBalancer.Kind, store.Filter{})
	if err != nil {
		return err
	}
	for _, lb := range lbs {
		if !hosted[attr.Str(lb, "id")] && attr.Str(lb, "provider") == ProviderHAProxy && attr.Str(lb, "provisioning_status") != pendingDelete {
			if err := s.schedule(c, lb); err != nil {
				return err
			}
		}
	}
	return nil
}

// hostPart is the load-balancer part of a host's span: the load
// balancers scheduled to its agent, each with what is under it.
func (s *Service) hostPart(c *plugin.Ctx, host string, span *hostapi.Span, _ plugin.SpanOptions) error {
	mine, err := s.sched.HostObjects(c, host)
	if err != nil || len(mine) == 0 {
		return err
	}
	for _, id := range slices.Sorted(maps.Keys(mine)) {
		lb, err := c.Tx.Get(LoadBalancer.Kind, id)
		if err != nil {
			continue
		}
		b, err := bundle(c, lb)
		if err != nil {
			return err
		}
		span.LoadBalancers = append(span.LoadBalancers, b)
	}
	return nil
}

// live leaves out the objects being deleted.
func live(objs []plugin.Object) []any {
	out := []any{}
	for _, o := range objs {
		if attr.Str(o, "provisioning_status") != pendingDelete {
			out = append(out, o)
		}
	}
	return out
}

// bundle is a load balancer with everything under it, for its agent.
func bundle(c *plugin.Ctx, lb plugin.Object) (plugin.Object, error) {
	id := attr.Str(lb, "id")
	out := schema.CloneObject(lb)
	ls, err := c.Tx.List(Listener.Kind, store.Filter{Parent: id})
	if err != nil {
		return nil, err
	}
	var listeners []any
	for _, l := range live(ls) {
		l := schema.CloneObject(l.(plugin.Object))
		ps, err := c.Tx.List(L7Policy.Kind, store.Filter{Parent: attr.Str(l, "id")})
		if err != nil {
			return nil, err
		}
		var policies []any
		for _, p := range live(ps) {
			p := schema.CloneObject(p.(plugin.Object))
			rs, err := c.Tx.List(L7Rule.Kind, store.Filter{Parent: attr.Str(p, "id")})
			if err != nil {
				return nil, err
			}
			p["_rules"] = live(rs)
			policies = append(policies, p)
		}
		l["_l7policies"] = attr.OrEmpty(policies)
		if attr.Str(l, "protocol") == "TERMINATED_HTTPS" {
			if l["_tls"], err = listenerTLS(c, l); err != nil {
				l["_tls_error"] = err.Error() // the agent leaves it out
			}
		}
		listeners = append(listeners, l)
	}
	out["_listeners"] = attr.OrEmpty(listeners)
	pools, err := c.Tx.List(Pool.Kind, store.Filter{Parent: id})
	if err != nil {
		return nil, err
	}
	var ps []any
	for _, p := range live(pools) {
		p := schema.CloneObject(p.(plugin.Object))
		ms, err := c.Tx.List(Member.Kind, store.Filter{Parent: attr.Str(p, "id")})
		if err != nil {
			return nil, err
		}
		p["_members"] = live(ms)
		hms, err := c.Tx.List(HealthMonitor.Kind, store.Filter{Parent: attr.Str(p, "id")})
		if err != nil {
			return nil, err
		}
		if p["tls_enabled"] == true {
			if p["_tls"], err = poolTLS(c, p); err != nil {
				p["_tls_error"] = err.Error()
			}
		}
		p["_healthmonitor"] = nil
		if l := live(hms); len(l) > 0 {
			p["_healthmonitor"] = l[0]
		}
		ps = append(ps, p)
	}
	out["_pools"] = attr.OrEmpty(ps)
	return out, nil
}

// LBReport is what a load-balancer agent reports of one load balancer.
type LBReport struct {
	// Revision is the load balancer's revision_number it has applied.
	Revision float64 `json:"revision"`
	// Members are haproxy's states of the members (UP, DOWN, MAINT, no
	// check), by member id.
	Members map[string]string `json:"members"`
	// Listeners are the listeners' counters, by listener id.
	Listeners map[string]any `json:"listeners"`
}

// serveReport takes an agent's report (PUT /neutrino/v1/hosts/{host}/
// loadbalancers {"loadbalancers": {id: LBReport}}).
func (s *Service) serveReport(req *plugin.Request) (int, any, error) {
	if !req.Caller.Admin && !req.Caller.Service {
		return 0, nil, fault.Forbidden("rule:update_loadbalancer_status is disallowed by policy")
	}
	var doc struct {
		LoadBalancers map[string]LBReport `json:"loadbalancers"`
	}
	if err := req.Decode(&doc); err != nil {
		return 0, nil, err
	}
	host := req.Args[0]
	_, err := req.Reg.Write(req.Context(), func(c *plugin.Ctx) error {
		mine, err := s.sched.HostObjects(c, host)
		if err != nil {
			return err
		}
		for _, id := range slices.Sorted(maps.Keys(doc.LoadBalancers)) {
			rep := doc.LoadBalancers[id]
			lb, err := c.Tx.Get(LoadBalancer.Kind, id)
			if err != nil || !mine[id] {
				continue
			}
			if st := attr.Str(lb, "provisioning_status"); st != active && attr.Num(lb["revision_number"], -1) == rep.Revision {
				if err := Complete(c, id); err != nil {
					return err
				}
				if st == pendingDelete {
					if err := s.sched.UnbindAll(c, id); err != nil {
						return err
					}
					continue
				}
			}
			if err := setHealth(c, id, rep.Members); err != nil {
				return err
			}
			if err := setStats(c, id, rep.Listeners); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{}, nil
}

// setHealth sets the operating statuses under a load balancer from its
// members' health: a member ONLINE (UP), ERROR (DOWN), OFFLINE (MAINT,
// administratively down) or NO_MONITOR (no health monitor); a pool ONLINE,
// DEGRADED (some members in ERROR) or ERROR (all); listeners and the load
// balancer DEGRADED when one of their pools is not ONLINE.
func setHealth(c *plugin.Ctx, lbID string, members map[string]string) error {
	set := func(res *schema.Resource, o plugin.Object, st string) error {
		if attr.Str(o, "operating_status") == st || attr.Str(o, "provisioning_status") == pendingDelete {
			return nil
		}
		o = schema.CloneObject(o)
		o["operating_status"] = st
		return c.Put(res, o)
	}
	pools, err := c.Tx.List(Pool.Kind, store.Filter{Parent: lbID})
	if err != nil {
		return err
	}
	poolState := map[string]string{}
	worst := online
	for _, p := range pools {
		pid := attr.Str(p, "id")
		hms, _ := c.Tx.List(HealthMonitor.Kind, store.Filter{Parent: pid})
		ms, err := c.Tx.List(Member.Kind, store.Filter{Parent: pid})
		if err != nil {
			return err
		}
		up, down := 0, 0
		for _, m := range ms {
			st := noMonitor
			switch {
			case m["admin_state_up"] != true || members[attr.Str(m, "id")] == "MAINT":
				st = offline
			case len(hms) == 0:
			case members[attr.Str(m, "id")] == "UP":
				st, up = online, up+1
			case members[attr.Str(m, "id")] == "DOWN":
				st, down = "ERROR", down+1
			default:
				continue // not checked yet
			}
			if err := set(Member, m, st); err != nil {
				return err
			}
		}
		ps := online
		switch {
		case down > 0 && up == 0:
			ps = "ERROR"
		case down > 0:
			ps = "DEGRADED"
		}
		if ps != online {
			worst = "DEGRADED"
		}
		poolState[pid] = ps
		if err := set(Pool, p, ps); err != nil {
			return err
		}
	}
	ls, err := c.Tx.List(Listener.Kind, store.Filter{Parent: lbID})
	if err != nil {
		return err
	}
	for _, l := range ls {
		st := online
		if ps, ok := poolState[attr.Str(l, "default_pool_id")]; ok && ps != online {
			st = "DEGRADED"
		}
		if err := set(Listener, l, st); err != nil {
			return err
		}
	}
	lb, err := c.Tx.Get(LoadBalancer.Kind, lbID)
	if err != nil {
		return nil
	}
	return set(LoadBalancer, lb, worst)
}

// agentsOf finds the agents service the scheduler needs.
func agentsOf(r *plugin.Registry) (*agents.Service, error) {
	ag, ok := plugin.Find[*agents.Service](r)
	if !ok {
		return nil, fault.New(http.StatusInternalServerError, "", "the load-balancer service needs the agents service before it")
	}
	return ag, nil
}
