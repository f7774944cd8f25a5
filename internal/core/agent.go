package core

import (
	"net/http"
	"time"

	"neutrino/internal/fault"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// AgentDownTime is how long after its last report an agent counts as dead
// (Neutron's agent_down_time default).
const AgentDownTime = 75 * time.Second

const agentTimeFormat = "2006-01-02 15:04:05"

// Agents are visible to admins only; others list an empty collection.
func agentVisible(c *Ctx, o Object) bool { return false }

func createAgent(c *Ctx, in Object) (Object, error) {
	return nil, fault.New(http.StatusBadRequest, "HTTPBadRequest", "Agents register themselves; they cannot be created through the API")
}

func updateAgent(c *Ctx, cur, in Object) (Object, error) {
	if !c.Admin {
		return nil, fault.Forbidden("rule:update_agent is disallowed by policy")
	}
	return merge(cur, in), nil
}

func deleteAgent(c *Ctx, cur Object) error {
	if !c.Admin {
		return fault.Forbidden("rule:delete_agent is disallowed by policy")
	}
	return c.Tx.Delete(schema.Agent.Kind, str(cur, "id"))
}

// AgentReport is what a host agent sends at start and at every heartbeat.
type AgentReport struct {
	AgentType        string         `json:"agent_type"`
	Binary           string         `json:"binary"`
	Host             string         `json:"host"`
	Topic            string         `json:"topic"`
	AvailabilityZone string         `json:"availability_zone"`
	Configurations   map[string]any `json:"configurations"`
	StartFlag        bool           `json:"start_flag"`
}

// ReportAgent records a report: the agent of that type on that host is
// created on its first report and its heartbeat refreshed on every one.
func (s *Service) ReportAgent(c *Ctx, r AgentReport) (Object, error) {
	if !c.Admin && !c.Service {
		return nil, fault.Forbidden("rule:report_agent is disallowed by policy")
	}
	if r.AgentType == "" || r.Host == "" || r.Binary == "" {
		return nil, fault.BadRequest("An agent report needs agent_type, binary and host")
	}
	now := time.Now().UTC().Format(agentTimeFormat)
	agents, err := c.Tx.List(schema.Agent.Kind, store.Filter{})
	if err != nil {
		return nil, err
	}
	var cur Object
	for _, a := range agents {
		if str(a, "agent_type") == r.AgentType && str(a, "host") == r.Host {
			cur = a
		}
	}
	if r.Configurations == nil {
		r.Configurations = map[string]any{}
	}
	if cur == nil {
		cur = Object{"id": newID(), "agent_type": r.AgentType, "host": r.Host, "admin_state_up": true,
			"description": nil, "created_at": now, "started_at": now, "resources_synced": nil}
	}
	cur["binary"], cur["topic"], cur["configurations"] = r.Binary, r.Topic, r.Configurations
	cur["availability_zone"] = nilIfEmpty(r.AvailabilityZone)
	cur["heartbeat_timestamp"] = now
	if r.StartFlag {
		cur["started_at"] = now
	}
	if err := c.Tx.Put(schema.Agent.Kind, "", cur); err != nil {
		return nil, err
	}
	return cur, nil
}

// agentAlive reports whether the agent's last heartbeat is recent.
func agentAlive(o Object) bool {
	t, err := time.Parse(agentTimeFormat, str(o, "heartbeat_timestamp"))
	return err == nil && time.Since(t) < AgentDownTime
}

// SetHostPorts reconciles the status of the ports bound to host with what
// its agent reports as wired: those are ACTIVE, every other port bound
// there is DOWN. Agents send the whole set at each report, so a lost
// message cannot leave a port in the wrong state for longer than one period.
func (s *Service) SetHostPorts(c *Ctx, host string, active []string) (changed int, err error) {
	if !c.Admin && !c.Service {
		return 0, fault.Forbidden("rule:update_port_status is disallowed by policy")
	}
	up := make(map[string]bool, len(active))
	for _, id := range active {
		up[id] = true
	}
	ports, err := c.Tx.List(schema.Port.Kind, store.Filter{})
	if err != nil {
		return 0, err
	}
	for _, p := range ports {
		if str(p, "binding:host_id") != host {
			continue
		}
		want := "DOWN"
		if up[str(p, "id")] && boolean(p, "admin_state_up") {
			want = "ACTIVE"
		}
		if str(p, "status") == want {
			continue
		}
		p["status"] = want
		if err := c.touch(schema.Port, p); err != nil {
			return changed, err
		}
		changed++
	}
	return changed, nil
}
