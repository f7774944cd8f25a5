package agents

import (
	"net/http"
	"slices"
	"sort"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// Scheduler binds objects of one kind (networks, routers) to live agents of
// one type: each object to as many agents as its service asks, the least
// loaded first; when an agent dies its objects move to live ones. A
// binding is a stored object of its own kind, whose parent is the bound
// object: {"id", <Field>: object id, "agent_id"}.
type Scheduler struct {
	Kind      string // the bindings' store kind ("dhcp_binding")
	AgentType string // the agents' type (hostapi.DHCPAgentType)
	Field     string // the object id in a binding ("network_id")
	// Moved is told when failover moves an object from one agent to
	// another (to is nil when no live agent could take it and the
	// binding went): the service moves what goes with it (ports).
	Moved func(c *plugin.Ctx, objectID string, from, to plugin.Object) error
	// Accepts, when set, says whether an agent may take an object (an L3
	// agent in dvr mode takes no centralized router); nil: any may.
	Accepts func(c *plugin.Ctx, objectID string, agent plugin.Object) bool

	svc *Service
}

// Scheduler makes a scheduler whose bindings go with their agents.
func (s *Service) Scheduler(kind, agentType, field string) *Scheduler {
	sc := &Scheduler{Kind: kind, AgentType: agentType, Field: field, svc: s}
	s.schedulers = append(s.schedulers, sc)
	return sc
}

// Bindings lists the bindings of an object ("": of every object).
func (sc *Scheduler) Bindings(c *plugin.Ctx, objectID string) ([]plugin.Object, error) {
	return c.Tx.List(sc.Kind, store.Filter{Parent: objectID})
}

// Binding is the binding of an object to an agent, nil if there is none.
func (sc *Scheduler) Binding(c *plugin.Ctx, objectID, agentID string) (plugin.Object, error) {
	bound, err := sc.Bindings(c, objectID)
	if err != nil {
		return nil, err
	}
	for _, b := range bound {
		if attr.Str(b, "agent_id") == agentID {
			return b, nil
		}
	}
	return nil, nil
}

// Adding reads an add call's body: the id of the object it names (under
// the scheduler's Field) and the agent of the type it goes to (addRule as
// for Agent).
func (sc *Scheduler) Adding(c *plugin.Ctx, agentID string, body map[string]any, addRule string) (objectID string, agent plugin.Object, err error) {
	objectID, _ = body[sc.Field].(string)
	if objectID == "" {
		return "", nil, fault.BadRequest("Invalid input: %s is required", sc.Field)
	}
	if agent, err = sc.Agent(c, agentID, addRule); err != nil {
		return "", nil, err
	}
	return objectID, agent, nil
}

// Unhost removes the binding of an object to an agent of the type (getRule
// as for Agent), or fails with notHosted when it has none; it returns the
// agent.
func (sc *Scheduler) Unhost(c *plugin.Ctx, agentID, objectID, getRule string, notHosted error) (plugin.Object, error) {
	a, err := sc.Agent(c, agentID, getRule)
	if err != nil {
		return nil, err
	}
	b, err := sc.Binding(c, objectID, agentID)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, notHosted
	}
	return a, sc.Unbind(c, b)
}

// Bind binds an object to an agent.
func (sc *Scheduler) Bind(c *plugin.Ctx, objectID, agentID string) error {
	return c.Tx.Put(sc.Kind, objectID, plugin.Object{"id": plugin.NewID(), sc.Field: objectID, "agent_id": agentID})
}

// Unbind removes one binding.
func (sc *Scheduler) Unbind(c *plugin.Ctx, binding plugin.Object) error {
	return c.Tx.Delete(sc.Kind, attr.Str(binding, "id"))
}

// UnbindAll removes every binding of an object.
func (sc *Scheduler) UnbindAll(c *plugin.Ctx, objectID string) error {
	bound, err := sc.Bindings(c, objectID)
	if err != nil {
		return err
	}
	for _, b := range bound {
		if err := sc.Unbind(c, b); err != nil {
			return err
		}
	}
	return nil
}

func (sc *Scheduler) dropAgent(c *plugin.Ctx, agentID string) error {
	bound, err := sc.Bindings(c, "")
	if err != nil {
		return err
	}
	for _, b := range bound {
		if attr.Str(b, "agent_id") == agentID {
			if err := sc.Unbind(c, b); err != nil {
				return err
			}
		}
	}
	return nil
}

// candidates are the live agents of the type not in exclude, the least
// loaded first (ties by id, so the choice is stable).
func (sc *Scheduler) candidates(c *plugin.Ctx, objectID string, exclude map[string]bool) ([]plugin.Object, error) {
	agents, err := OfType(c, sc.AgentType, "")
	if err != nil {
		return nil, err
	}
	all, err := sc.Bindings(c, "")
	if err != nil {
		return nil, err
	}
	load := map[string]int{}
	for _, b := range all {
		load[attr.Str(b, "agent_id")]++
	}
	var out []plugin.Object
	for _, a := range agents {
		if sc.svc.Live(a) && !exclude[attr.Str(a, "id")] && (sc.Accepts == nil || sc.Accepts(c, objectID, a)) {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		li, lj := load[attr.Str(out[i], "id")], load[attr.Str(out[j], "id")]
		return li < lj || li == lj && attr.Str(out[i], "id") < attr.Str(out[j], "id")
	})
	return out, nil
}

// Schedule binds an object to live agents until it has want bindings;
// it reports whether it bound any.
func (sc *Scheduler) Schedule(c *plugin.Ctx, objectID string, want int) (bool, error) {
	return sc.ScheduleAvoiding(c, objectID, want, nil)
}

// ScheduleAvoiding is Schedule preferring agents on hosts other than
// avoid (a rebuild elsewhere), taking those only when no other is live.
func (sc *Scheduler) ScheduleAvoiding(c *plugin.Ctx, objectID string, want int, avoid []string) (bool, error) {
	bound, err := sc.Bindings(c, objectID)
	if err != nil || len(bound) >= want {
		return false, err
	}
	has := map[string]bool{}
	for _, b := range bound {
		has[attr.Str(b, "agent_id")] = true
	}
	cands, err := sc.candidates(c, objectID, has)
	if err != nil {
		return false, err
	}
	if len(avoid) > 0 {
		slices.SortStableFunc(cands, func(a, b plugin.Object) int {
			ia, ib := slices.Contains(avoid, attr.Str(a, "host")), slices.Contains(avoid, attr.Str(b, "host"))
			switch {
			case ia == ib:
				return 0
			case ia:
				return 1
			}
			return -1
		})
	}
	n := 0
	for _, a := range cands {
		if len(bound)+n >= want {
			break
		}
		if err := sc.Bind(c, objectID, attr.Str(a, "id")); err != nil {
			return n > 0, err
		}
		n++
	}
	return n > 0, nil
}

// Failover moves the objects of dead (or deleted) agents to live agents
// that do not hold them yet, the least loaded first, when any agent of
// the type is live; an object no live agent can take loses that binding.
func (sc *Scheduler) Failover(c *plugin.Ctx) error {
	agents, err := OfType(c, sc.AgentType, "")
	if err != nil {
		return err
	}
	byID, live := map[string]plugin.Object{}, false
	for _, a := range agents {
		byID[attr.Str(a, "id")] = a
		live = live || sc.svc.Live(a)
	}
	if !live {
		return nil
	}
	bound, err := sc.Bindings(c, "")
	if err != nil {
		return err
	}
	for _, b := range bound {
		from := byID[attr.Str(b, "agent_id")]
		if from != nil && sc.svc.Alive(from) {
			continue
		}
		objectID := attr.Str(b, sc.Field)
		siblings, err := sc.Bindings(c, objectID)
		if err != nil {
			return err
		}
		has := map[string]bool{}
		for _, o := range siblings {
			has[attr.Str(o, "agent_id")] = true
		}
		cands, err := sc.candidates(c, objectID, has)
		if err != nil {
			return err
		}
		var to plugin.Object
		if len(cands) > 0 {
			to = cands[0]
			moved := schema.CloneObject(b)
			moved["agent_id"] = to["id"]
			err = c.Tx.Put(sc.Kind, objectID, moved)
		} else {
			err = sc.Unbind(c, b)
		}
		if err != nil {
			return err
		}
		if from == nil {
			from = plugin.Object{"id": attr.Str(b, "agent_id")} // deleted: no host
		}
		if sc.Moved != nil {
			if err := sc.Moved(c, objectID, from, to); err != nil {
				return err
			}
		}
	}
	return nil
}

// Agents lists the agents an object is bound to.
func (sc *Scheduler) Agents(c *plugin.Ctx, objectID string) ([]plugin.Object, error) {
	bound, err := sc.Bindings(c, objectID)
	if err != nil {
		return nil, err
	}
	var out []plugin.Object
	for _, b := range bound {
		if a, err := c.Tx.Get(Agent.Kind, attr.Str(b, "agent_id")); err == nil {
			out = append(out, a)
		}
	}
	return out, nil
}

// Hosts lists the hosts of the agents an object is bound to.
func (sc *Scheduler) Hosts(c *plugin.Ctx, objectID string) ([]string, error) {
	agents, err := sc.Agents(c, objectID)
	var out []string
	for _, a := range agents {
		out = append(out, attr.Str(a, "host"))
	}
	return out, err
}

// Objects lists the objects (of resource res) bound to an agent, by id.
func (sc *Scheduler) Objects(c *plugin.Ctx, agentID string, res *schema.Resource) ([]plugin.Object, error) {
	bound, err := sc.Bindings(c, "")
	if err != nil {
		return nil, err
	}
	var out []plugin.Object
	for _, b := range bound {
		if attr.Str(b, "agent_id") == agentID {
			if o, err := c.Tx.Get(res.Kind, attr.Str(b, sc.Field)); err == nil {
				out = append(out, o)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return attr.Str(out[i], "id") < attr.Str(out[j], "id") })
	return out, nil
}

// ListHosted lists, for /agents/{id}/<objects>, the objects (of res)
// bound to an agent of the type (listRule as for Agent).
func (sc *Scheduler) ListHosted(res *schema.Resource, listRule string) func(c *plugin.Ctx, agentID string) (*schema.Resource, []plugin.Object, error) {
	return func(c *plugin.Ctx, agentID string) (*schema.Resource, []plugin.Object, error) {
		if _, err := sc.Agent(c, agentID, listRule); err != nil {
			return nil, nil, err
		}
		objs, err := sc.Objects(c, agentID, res)
		return res, objs, err
	}
}

// HostingAgents serves /<res>/{id}/<agents>: the agents an object is bound
// to, for admins only (listRule names the policy rule others are refused
// by).
func (sc *Scheduler) HostingAgents(res *schema.Resource, listRule string) *plugin.Nested {
	return &plugin.Nested{List: func(c *plugin.Ctx, id string) (*schema.Resource, []plugin.Object, error) {
		if !c.Admin {
			return nil, nil, fault.Forbidden("rule:%s is disallowed by policy", listRule)
		}
		if _, err := c.Get(res, id); err != nil {
			return nil, nil, err
		}
		a, err := sc.Agents(c, id)
		return Agent, a, err
	}}
}

// HostObjects lists the ids of the objects bound to host's agents of the
// type.
func (sc *Scheduler) HostObjects(c *plugin.Ctx, host string) (map[string]bool, error) {
	mine, err := OfType(c, sc.AgentType, host)
	if err != nil || len(mine) == 0 {
		return nil, err
	}
	ids := map[string]bool{}
	for _, a := range mine {
		ids[attr.Str(a, "id")] = true
	}
	bound, err := sc.Bindings(c, "")
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, b := range bound {
		if ids[attr.Str(b, "agent_id")] {
			out[attr.Str(b, sc.Field)] = true
		}
	}
	return out, nil
}

// Agent is an agent of the type for the scheduler extensions' admin
// calls (getRule names the policy rule a non-admin is refused by).
func (sc *Scheduler) Agent(c *plugin.Ctx, agentID, getRule string) (plugin.Object, error) {
	if !c.Admin {
		return nil, fault.Forbidden("rule:%s is disallowed by policy", getRule)
	}
	a, err := c.Tx.Get(Agent.Kind, agentID)
	if err != nil {
		return nil, fault.New(http.StatusNotFound, "AgentNotFound", "Agent %s could not be found.", agentID)
	}
	return a, nil
}
