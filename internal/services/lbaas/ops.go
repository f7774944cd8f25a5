package lbaas

import (
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// Octavia's operations beyond create, update and delete: the providers,
// statistics, failover and the batch member update.

// statsKind holds what the agents count for each load balancer, apart
// from the load balancer itself (counters change at every report; the
// hosts' state does not depend on them).
const statsKind = "lb_stats"

// serveProviders answers GET /lbaas/providers.
func serveProviders(req *plugin.Request) (int, any, error) {
	out := []any{}
	for _, name := range slices.Sorted(maps.Keys(providers)) {
		out = append(out, map[string]any{"name": name, "description": providers[name]})
	}
	return http.StatusOK, map[string]any{"providers": out}, nil
}

var statNames = []string{"active_connections", "bytes_in", "bytes_out", "request_errors", "total_connections"}

// stats sums the counters of a load balancer's listeners (one listener:
// only).
func stats(c *plugin.Ctx, lbID, listenerID string) map[string]any {
	out := map[string]any{}
	for _, k := range statNames {
		out[k] = float64(0)
	}
	o, err := c.Tx.Get(statsKind, lbID)
	if err != nil {
		return out
	}
	ls, _ := o["listeners"].(map[string]any)
	for id, v := range ls {
		m, _ := v.(map[string]any)
		if listenerID != "" && id != listenerID {
			continue
		}
		for _, k := range statNames {
			out[k] = out[k].(float64) + attr.Num(m[k], 0)
		}
	}
	return out
}

func lbStats(c *plugin.Ctx, id string) (any, error) {
	if _, err := c.Get(LoadBalancer, id); err != nil {
		return nil, err
	}
	return map[string]any{"stats": stats(c, id, "")}, nil
}

func listenerStats(c *plugin.Ctx, id string) (any, error) {
	l, err := c.Get(Listener, id)
	if err != nil {
		return nil, err
	}
	return map[string]any{"stats": stats(c, attr.Str(l, "loadbalancer_id"), id)}, nil
}

// setStats keeps an agent's counters of a load balancer.
func setStats(c *plugin.Ctx, lbID string, listeners map[string]any) error {
	if len(listeners) == 0 {
		return nil
	}
	if o, err := c.Tx.Get(statsKind, lbID); err == nil && schema.Render(o["listeners"]) == schema.Render(listeners) {
		return nil
	}
	return c.Tx.Put(statsKind, "", plugin.Object{"id": lbID, "listeners": listeners})
}

// failover (admin) rebuilds a load balancer: for the haproxy provider on
// the least loaded live agent (another one when there is), from scratch.
func (s *Service) failover(c *plugin.Ctx, id string, _ map[string]any) (any, error) {
	if !c.Admin {
		return nil, fault.Forbidden("Policy does not allow this request to be performed.")
	}
	lb, err := c.Get(LoadBalancer, id)
	if err != nil {
		return nil, err
	}
	if st := attr.Str(lb, "provisioning_status"); st != active && st != "ERROR" {
		return nil, invalidState(lb)
	}
	if err := lock(c, lb); err != nil {
		return nil, err
	}
	if attr.Str(lb, "provider") == ProviderHAProxy {
		hosts, err := s.sched.Hosts(c, id)
		if err != nil {
			return nil, err
		}
		if err := s.sched.UnbindAll(c, id); err != nil {
			return nil, err
		}
		if _, err := s.sched.ScheduleAvoiding(c, id, 1, hosts); err != nil {
			return nil, err
		}
		if err := s.bindVIP(c, id); err != nil {
			return nil, err
		}
	}
	return plugin.Accepted{}, nil
}

// replaceMembers is the batch member update (PUT /pools/{id}/members
// {"members": [...]}): members matched by address and port are updated,
// new ones made, and those not listed deleted (unless additive_only).
func (s *Service) replaceMembers(c *plugin.Ctx, poolID string, body map[string]any) (any, error) {
	pool, err := c.Get(Pool, poolID)
	if err != nil {
		return nil, err
	}
	list, ok := body["members"].([]any)
	if !ok {
		return nil, invalid("members must be a list.")
	}
	lb, err := loadBalancer(c, attr.Str(pool, "loadbalancer_id"))
	if err != nil {
		return nil, err
	}
	if err := lock(c, lb); err != nil {
		return nil, err
	}
	have, err := c.Tx.List(Member.Kind, store.Filter{Parent: poolID})
	if err != nil {
		return nil, err
	}
	key := func(addr any, port any) string {
		a, _ := netip.ParseAddr(schema.Render(addr))
		return a.String() + " " + strconv.Itoa(int(attr.Num(port, 0)))
	}
	byKey := map[string]plugin.Object{}
	for _, m := range have {
		byKey[key(m["address"], m["protocol_port"])] = m
	}
	hms, _ := c.Tx.List(HealthMonitor.Kind, store.Filter{Parent: poolID})
	seen := map[string]bool{}
	for _, e := range list {
		raw, ok := e.(map[string]any)
		if !ok {
			return nil, invalid("each member must be an object.")
		}
		cur := byKey[key(raw["address"], raw["protocol_port"])]
		if cur == nil {
			in, err := Member.ParseCreate(c.Caller, raw)
			if err != nil {
				return nil, err
			}
			in["id"], in["pool_id"] = plugin.NewID(), poolID
			o := plugin.Object{"pool_id": poolID}
			for _, a := range Member.Attrs {
				if a.Post {
					o[a.Name] = in[a.Name]
				}
			}
			o["id"], o["project_id"] = in["id"], lb["project_id"]
			o["provisioning_status"], o["operating_status"] = pendingCreate, offline
			if len(hms) == 0 {
				o["operating_status"] = noMonitor
			}
			c.Stamp(o)
			if err := c.Put(Member, o); err != nil {
				return nil, err
			}
			seen[attr.Str(o, "id")] = true
			continue
		}
		upd := map[string]any{}
		for k, v := range raw {
			if a := Member.Attr(k); a != nil && a.Put {
				upd[k] = v
			}
		}
		in, err := Member.ParseUpdate(c.Caller, upd)
		if err != nil {
			return nil, err
		}
		o := attr.Merge(cur, in)
		o["provisioning_status"] = pendingUpdate
		c.Bump(o)
		if err := c.Put(Member, o); err != nil {
			return nil, err
		}
		seen[attr.Str(o, "id")] = true
	}
	if additive, _ := strconv.ParseBool(c.Query().Get("additive_only")); !additive {
		for _, m := range have {
			if !seen[attr.Str(m, "id")] {
				m = schema.CloneObject(m)
				m["provisioning_status"] = pendingDelete
				if err := c.Put(Member, m); err != nil {
					return nil, err
				}
			}
		}
	}
	return plugin.Accepted{}, nil
}
