// Package agents is the agent extension: the agents registered by their own
// reports (host, DHCP and L3 agents), whether each is alive, and the
// scheduler that binds objects (networks to DHCP agents, routers to L3
// agents) to live agents of a type.
package agents

import (
	"encoding/json"
	"net/http"
	"time"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/hostapi"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
)

// Agent is a host agent, registered by its own reports (not created
// through the API); admins may change admin_state_up and description, or
// delete it.
var Agent = schema.Index(&schema.Resource{Member: "agent", Collection: "agents", Kind: "agent", Attrs: []*schema.Attr{
	schema.Sorted(schema.RO("id")),
	schema.Sorted(schema.RO("agent_type")),
	schema.Sorted(schema.RO("binary")),
	schema.Sorted(schema.RO("host")),
	schema.Sorted(schema.RO("topic")),
	schema.Sorted(&schema.Attr{Name: "admin_state_up", Put: true, Convert: schema.Bool}),
	&schema.Attr{Name: "description", Put: true, Convert: schema.StringOrNull(255)},
	schema.Sorted(schema.RO("alive")),
	schema.Sorted(schema.RO("heartbeat_timestamp")),
	schema.Sorted(schema.RO("created_at")),
	schema.Sorted(schema.RO("started_at")),
	schema.NoFilter(schema.RO("configurations")),
	schema.Sorted(schema.RO("availability_zone")),
	schema.RO("resources_synced"),
}, NotFound: func(id string) error {
	return fault.New(http.StatusNotFound, "AgentNotFound", "Agent %s could not be found.", id)
}})

// Config is the agents' settings.
type Config struct {
	// DownTime is how long after its last report an agent counts as dead
	// (Neutron's agent_down_time, 75 s by default).
	DownTime time.Duration
}

// Service is the agent extension.
type Service struct {
	cfg        Config
	schedulers []*Scheduler
}

// New returns the agent extension.
func New(cfg Config) *Service {
	if cfg.DownTime == 0 {
		cfg.DownTime = 75 * time.Second
	}
	return &Service{cfg: cfg}
}

// Name implements plugin.Service.
func (s *Service) Name() string { return "agents" }

// Register implements plugin.Service.
func (s *Service) Register(r *plugin.Registry) error {
	r.Extension(plugin.Extension{Alias: "agent", Name: "agent", Description: "The agent management extension.", Updated: "2013-02-03T10:00:00-00:00"})
	r.Route(&plugin.Route{Method: http.MethodPost, Path: "agents/report", Internal: true, Serve: s.serveReport})
	r.Subscribe(Agent.Kind, plugin.Delete, plugin.Before, func(c *plugin.Ctx, p *plugin.Payload) error {
		for _, sch := range s.schedulers {
			if err := sch.dropAgent(c, attr.Str(p.Old, "id")); err != nil {
				return err
			}
		}
		return nil
	})
	return r.Resource(&plugin.Handler{Res: Agent,
		Create: func(c *plugin.Ctx, in plugin.Object) (plugin.Object, error) {
			return nil, fault.New(http.StatusBadRequest, "HTTPBadRequest", "Agents register themselves; they cannot be created through the API")
		},
		Update: func(c *plugin.Ctx, cur, in plugin.Object) (plugin.Object, error) {
			if !c.Admin {
				return nil, fault.Forbidden("rule:update_agent is disallowed by policy")
			}
			for k, v := range in {
				cur[k] = v
			}
			return cur, nil
		},
		Delete: func(c *plugin.Ctx, cur plugin.Object) error {
			if !c.Admin {
				return fault.Forbidden("rule:delete_agent is disallowed by policy")
			}
			return c.Tx.Delete(Agent.Kind, attr.Str(cur, "id"))
		},
		// Agents are visible to admins only; others list an empty collection.
		Visible: func(c *plugin.Ctx, o plugin.Object) bool { return false },
		Present: func(c *plugin.Ctx, o plugin.Object) plugin.Object {
			cp := make(plugin.Object, len(o)+1)
			for k, v := range o {
				cp[k] = v
			}
			cp["alive"] = s.Alive(o)
			return cp
		},
	})
}

// From returns the agent extension of c's server.
func From(c *plugin.Ctx) *Service {
	s, _ := plugin.Find[*Service](c.Reg)
	return s
}

const timeFormat = "2006-01-02 15:04:05"

// Alive reports whether an agent's last heartbeat is recent.
func (s *Service) Alive(o plugin.Object) bool {
	t, err := time.Parse(timeFormat, attr.Str(o, "heartbeat_timestamp"))
	return err == nil && time.Since(t) < s.cfg.DownTime
}

// Live reports whether an agent may be given work: alive and enabled.
func (s *Service) Live(o plugin.Object) bool {
	return s.Alive(o) && o["admin_state_up"] == true
}

// OfType lists the agents of a type (on host, when host is not "").
func OfType(c *plugin.Ctx, agentType, host string) ([]plugin.Object, error) {
	return c.Tx.Select(Agent.Kind, func(a plugin.Object) bool {
		return attr.Str(a, "agent_type") == agentType && (host == "" || attr.Str(a, "host") == host)
	})
}

func (s *Service) serveReport(req *plugin.Request) (int, any, error) {
	body, err := req.Body()
	if err != nil {
		return 0, nil, err
	}
	var doc struct {
		Agent hostapi.AgentReport `json:"agent"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return 0, nil, fault.BadRequest("Malformed request body")
	}
	var out schema.Ordered
	_, err = req.Reg.Write(req.Context(), func(c *plugin.Ctx) error {
		o, err := s.report(c, doc.Agent)
		if err != nil {
			return err
		}
		out = Agent.Render(c.Caller, c.Present(Agent, o), nil)
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"agent": out}, nil
}

// report records a report: the agent of that type on that host is created
// on its first report and its heartbeat refreshed on every one. The
// services that schedule to agents, or bind to them, hear of it (event
// "report" on agents, with the agent as it was and is).
func (s *Service) report(c *plugin.Ctx, r hostapi.AgentReport) (plugin.Object, error) {
	if !c.Admin && !c.Service {
		return nil, fault.Forbidden("rule:report_agent is disallowed by policy")
	}
	if r.AgentType == "" || r.Host == "" || r.Binary == "" {
		return nil, fault.BadRequest("An agent report needs agent_type, binary and host")
	}
	now := time.Now().UTC().Format(timeFormat)
	same, err := OfType(c, r.AgentType, r.Host)
	if err != nil {
		return nil, err
	}
	var old, cur plugin.Object
	if len(same) > 0 {
		old, cur = same[len(same)-1], schema.CloneObject(same[len(same)-1])
	}
	if r.Configurations == nil {
		r.Configurations = map[string]any{}
	}
	if cur == nil {
		cur = plugin.Object{"id": plugin.NewID(), "agent_type": r.AgentType, "host": r.Host, "admin_state_up": true,
			"description": nil, "created_at": now, "started_at": now, "resources_synced": nil}
	}
	cur["binary"], cur["topic"], cur["configurations"] = r.Binary, r.Topic, r.Configurations
	cur["availability_zone"] = nil
	if r.AvailabilityZone != "" {
		cur["availability_zone"] = r.AvailabilityZone
	}
	cur["heartbeat_timestamp"] = now
	if r.StartFlag {
		cur["started_at"] = now
	}
	if err := c.Tx.Put(Agent.Kind, "", cur); err != nil {
		return nil, err
	}
	req := plugin.Object{"start_flag": r.StartFlag, "old_alive": old != nil && s.Alive(old)}
	if err := c.Publish(Agent.Kind, plugin.Report, plugin.After, &plugin.Payload{Res: Agent, Old: old, New: cur, Request: req}); err != nil {
		return nil, err
	}
	return cur, nil
}
