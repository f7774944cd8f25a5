// Package agents is the agent extension: the agents registered by their own
// reports (host, DHCP and L3 agents), whether each is alive, and the
// scheduler that binds objects (networks to DHCP agents, routers to L3
// agents) to live agents of a type.
package agents

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/hostapi"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/store"
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
//
// An agent's heartbeat is not a change anyone watches: reports that
// change nothing but the time are kept apart from the change log (in
// memory here, and written to the store's heartbeat table at most once a
// second, several at once, for other servers), so an idle cloud wakes no
// agent and writes no revision. The agent's object changes only on a
// transition: registered, restarted, reconfigured, found dead (a sweep
// after reports), alive again. The services that schedule to agents or
// bind to them hear of those (event "report").
type Service struct {
	cfg        Config
	schedulers []*Scheduler
	db         *store.DB

	mu      sync.Mutex
	beats   map[string]time.Time // last reports known to this server, by agent id
	pending map[string]int64     // received here, not yet in the store
	flushed time.Time            // when pending was last written
	loaded  time.Time            // when beats was last read from the store
	swept   time.Time            // when dead agents were last looked for
}

// New returns the agent extension.
func New(cfg Config) *Service {
	if cfg.DownTime == 0 {
		cfg.DownTime = 75 * time.Second
	}
	return &Service{cfg: cfg, beats: map[string]time.Time{}, pending: map[string]int64{}}
}

// Name implements plugin.Service.
func (s *Service) Name() string { return "agents" }

// Register implements plugin.Service.
func (s *Service) Register(r *plugin.Registry) error {
	s.db = r.DB
	if r.DB != nil {
		r.DB.IndexAttr("agent", "host") // the tunnel endpoints of a network's peers
	}
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
			beat := s.beat(o)
			cp["alive"] = time.Since(beat) < s.cfg.DownTime
			if !beat.IsZero() {
				cp["heartbeat_timestamp"] = beat.UTC().Format(timeFormat)
			}
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
	return time.Since(s.beat(o)) < s.cfg.DownTime
}

// beat is an agent's last heartbeat known here: the newest of its
// object's (written at its last transition), this server's, and the
// store's (read again when a second old).
func (s *Service) beat(o plugin.Object) time.Time {
	t, _ := time.Parse(timeFormat, attr.Str(o, "heartbeat_timestamp"))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db != nil && time.Since(s.loaded) > time.Second {
		s.loaded = time.Now()
		if stored, err := s.db.Heartbeats(context.Background()); err == nil {
			for id, at := range stored {
				if b := time.Unix(0, at); b.After(s.beats[id]) {
					s.beats[id] = b
				}
			}
		}
	}
	if b := s.beats[attr.Str(o, "id")]; b.After(t) {
		t = b
	}
	return t
}

// heard records a report received now, and writes what this server heard
// to the store when it last did a second ago or more.
func (s *Service) heard(ctx context.Context, id string) {
	now := time.Now()
	s.mu.Lock()
	s.beats[id] = now
	s.pending[id] = now.UnixNano()
	var flush map[string]int64
	if now.Sub(s.flushed) >= time.Second {
		flush, s.pending, s.flushed = s.pending, map[string]int64{}, now
	}
	s.mu.Unlock()
	if flush != nil && s.db != nil {
		if err := s.db.PutHeartbeats(ctx, flush); err != nil {
			s.mu.Lock()
			for k, v := range flush {
				if _, newer := s.pending[k]; !newer {
					s.pending[k] = v
				}
			}
			s.mu.Unlock()
		}
	}
}

// Live reports whether an agent may be given work: alive and enabled.
func (s *Service) Live(o plugin.Object) bool {
	return s.Alive(o) && o["admin_state_up"] == true
}

// OfType lists the agents of a type (on host, when host is not "").
func OfType(c *plugin.Ctx, agentType, host string) ([]plugin.Object, error) {
	if host == "" {
		return c.Tx.Select(Agent.Kind, func(a plugin.Object) bool { return attr.Str(a, "agent_type") == agentType })
	}
	onHost, err := c.Tx.List(Agent.Kind, store.Filter{Attr: "host", Values: []string{host}}) // indexed
	if err != nil {
		return nil, err
	}
	var out []plugin.Object
	for _, a := range onHost {
		if attr.Str(a, "agent_type") == agentType {
			out = append(out, a)
		}
	}
	return out, nil
}

func (s *Service) serveReport(req *plugin.Request) (int, any, error) {
	var doc struct {
		Agent hostapi.AgentReport `json:"agent"`
	}
	if err := req.Decode(&doc); err != nil {
		return 0, nil, err
	}
	r := doc.Agent
	if !req.Caller.Admin && !req.Caller.Service {
		return 0, nil, fault.Forbidden("rule:report_agent is disallowed by policy")
	}
	if r.AgentType == "" || r.Host == "" || r.Binary == "" {
		return 0, nil, fault.BadRequest("An agent report needs agent_type, binary and host")
	}
	if r.Configurations == nil {
		r.Configurations = map[string]any{}
	}
	// A heartbeat that changes nothing is only heard: no write, no change.
	var known plugin.Object
	err := req.Reg.Read(req.Context(), func(c *plugin.Ctx) error {
		agents, err := OfType(c, r.AgentType, r.Host)
		if len(agents) > 0 {
			known = agents[len(agents)-1]
		}
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	if known != nil && !r.StartFlag && known["alive"] == true && s.Alive(known) && unchanged(known, r) {
		s.heard(req.Context(), attr.Str(known, "id"))
		return http.StatusOK, map[string]any{"agent": s.render(req, known)}, s.sweep(req)
	}
	_, err = req.Reg.Write(req.Context(), func(c *plugin.Ctx) error {
		o, err := s.report(c, r)
		if err != nil {
			return err
		}
		known = o
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	s.heard(req.Context(), attr.Str(known, "id"))
	return http.StatusOK, map[string]any{"agent": s.render(req, known)}, s.sweep(req)
}

func (s *Service) render(req *plugin.Request, o plugin.Object) schema.Ordered {
	var out schema.Ordered
	req.Reg.Read(req.Context(), func(c *plugin.Ctx) error {
		out = Agent.Render(c.Caller, c.Present(Agent, o), nil)
		return nil
	})
	return out
}

// unchanged reports whether a report says what the agent's object says.
func unchanged(o plugin.Object, r hostapi.AgentReport) bool {
	az := attr.Str(o, "availability_zone")
	return attr.Str(o, "binary") == r.Binary && attr.Str(o, "topic") == r.Topic && az == r.AvailabilityZone &&
		fmt.Sprint(o["configurations"]) == fmt.Sprint(r.Configurations)
}

// sweep marks dead the agents whose heartbeat is older than the down time,
// at most once per second (after reports: some agent of the cloud is alive
// to take over), so the services that move work off dead agents hear of it.
func (s *Service) sweep(req *plugin.Request) error {
	s.mu.Lock()
	due := time.Since(s.swept) >= time.Second
	if due {
		s.swept = time.Now()
	}
	s.mu.Unlock()
	if !due {
		return nil
	}
	var dead []plugin.Object
	if err := req.Reg.Read(req.Context(), func(c *plugin.Ctx) error {
		var err error
		dead, err = c.Tx.Select(Agent.Kind, func(a plugin.Object) bool { return a["alive"] == true && !s.Alive(a) })
		return err
	}); err != nil || len(dead) == 0 {
		return err
	}
	_, err := req.Reg.Write(req.Context(), func(c *plugin.Ctx) error {
		for _, a := range dead {
			cur, err := c.Tx.Get(Agent.Kind, attr.Str(a, "id"))
			if err != nil || cur["alive"] != true || s.Alive(cur) {
				continue // gone, or seen alive since
			}
			gone := schema.CloneObject(cur)
			gone["alive"] = false
			if err := c.Tx.Put(Agent.Kind, "", gone); err != nil {
				return err
			}
			req := plugin.Object{"start_flag": false, "old_alive": true}
			if err := c.Publish(Agent.Kind, plugin.Report, plugin.After, &plugin.Payload{Res: Agent, Old: cur, New: gone, Request: req}); err != nil {
				return err
			}
		}
		return nil
	})
	return err
}

// report records a transition: the agent of that type on that host is
// created on its first report, and changed when it restarts, reports
// another configuration, or comes back after it was found dead. The
// services that schedule to agents, or bind to them, hear of it (event
// "report", with the agent as it was and is).
func (s *Service) report(c *plugin.Ctx, r hostapi.AgentReport) (plugin.Object, error) {
	now := time.Now().UTC().Format(timeFormat)
	same, err := OfType(c, r.AgentType, r.Host)
	if err != nil {
		return nil, err
	}
	var old, cur plugin.Object
	if len(same) > 0 {
		old, cur = same[len(same)-1], schema.CloneObject(same[len(same)-1])
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
	cur["alive"] = true
	if r.StartFlag {
		cur["started_at"] = now
	}
	if err := c.Tx.Put(Agent.Kind, "", cur); err != nil {
		return nil, err
	}
	req := plugin.Object{"start_flag": r.StartFlag, "old_alive": old != nil && old["alive"] != false && s.Alive(old)}
	if err := c.Publish(Agent.Kind, plugin.Report, plugin.After, &plugin.Payload{Res: Agent, Old: old, New: cur, Request: req}); err != nil {
		return nil, err
	}
	return cur, nil
}
