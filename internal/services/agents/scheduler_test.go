package agents_test

import (
	"fmt"
	"testing"
	"time"

	"neutrino/internal/plugin"
	"neutrino/internal/services"
	"neutrino/internal/services/agents"
	"neutrino/internal/services/servicetest"
)

const testType = "Test agent"

// lab is a scheduler over a fresh store, and a way to make agents with a
// chosen liveness.
type lab struct {
	*servicetest.Env
	sch   *agents.Scheduler
	moves []string
}

func newLab(t *testing.T) *lab {
	e := servicetest.New(t, services.Config{AgentDownTime: time.Minute, ServicePlugins: []string{}})
	ag, _ := plugin.Find[*agents.Service](e.Reg)
	l := &lab{Env: e, sch: ag.Scheduler("test_binding", testType, "object_id")}
	l.sch.Moved = func(c *plugin.Ctx, object string, from, to plugin.Object) error {
		dest := "nowhere"
		if to != nil {
			dest = to["host"].(string)
		}
		l.moves = append(l.moves, fmt.Sprintf("%s %v->%s", object, from["host"], dest))
		return nil
	}
	return l
}

// agent stores an agent on host: alive (heartbeat now) or dead (one an
// hour old), enabled or not.
func (l *lab) agent(id, host string, alive, enabled bool) {
	l.T.Helper()
	beat := time.Now().UTC()
	if !alive {
		beat = beat.Add(-time.Hour)
	}
	err := l.Write(func(c *plugin.Ctx) error {
		return c.Tx.Put(agents.Agent.Kind, "", plugin.Object{"id": id, "agent_type": testType, "host": host,
			"admin_state_up": enabled, "heartbeat_timestamp": beat.Format("2006-01-02 15:04:05")})
	})
	if err != nil {
		l.T.Fatal(err)
	}
}

// hosts lists the hosts an object is bound to, sorted.
func (l *lab) hosts(object string) string {
	var out []string
	l.Read(func(c *plugin.Ctx) error {
		var err error
		out, err = l.sch.Hosts(c, object)
		return err
	})
	sortStrings(out)
	return fmt.Sprint(out)
}

func sortStrings(s []string) {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
}

func (l *lab) schedule(object string, n int) {
	l.T.Helper()
	if err := l.Write(func(c *plugin.Ctx) error { _, err := l.sch.Schedule(c, object, n); return err }); err != nil {
		l.T.Fatal(err)
	}
}

func (l *lab) failover() {
	l.T.Helper()
	if err := l.Write(func(c *plugin.Ctx) error { return l.sch.Failover(c) }); err != nil {
		l.T.Fatal(err)
	}
}

// TestScheduleLeastLoaded: objects go to live, enabled agents of the
// type, the least loaded first (ties by id), up to N per object.
func TestScheduleLeastLoaded(t *testing.T) {
	l := newLab(t)
	l.agent("a1", "h1", true, true)
	l.agent("a2", "h2", true, true)
	l.agent("a3", "h3", false, true) // dead
	l.agent("a4", "h4", true, false) // disabled
	for _, c := range []struct {
		object string
		n      int
		want   string
	}{
		{"o1", 1, "[h1]"},    // tie: the lower id
		{"o2", 1, "[h2]"},    // h1 has one now
		{"o3", 2, "[h1 h2]"}, // N > 1: two agents
		{"o4", 3, "[h1 h2]"}, // only two can take it
		{"o1", 1, "[h1]"},    // scheduled already: unchanged
		{"o1", 2, "[h1 h2]"}, // raised to two: one more
	} {
		l.schedule(c.object, c.n)
		if got := l.hosts(c.object); got != c.want {
			t.Errorf("%s with %d: %s, want %s", c.object, c.n, got, c.want)
		}
	}
}

// TestFailover: the objects of a dead agent move to live agents that do
// not hold them yet, the service hears of each move, and an object no live
// agent can take loses the binding; with no live agent at all nothing
// moves.
func TestFailover(t *testing.T) {
	l := newLab(t)
	l.agent("a1", "h1", true, true)
	l.agent("a2", "h2", true, true)
	l.schedule("o1", 1) // h1
	l.schedule("o2", 2) // h2, h1
	l.schedule("o3", 1) // h2
	l.agent("a1", "h1", false, true)
	l.agent("a3", "h3", true, true)
	l.failover()
	for object, want := range map[string]string{"o1": "[h3]", "o2": "[h2 h3]", "o3": "[h2]"} {
		if got := l.hosts(object); got != want {
			t.Errorf("%s after failover: %s, want %s", object, got, want)
		}
	}
	if got := fmt.Sprint(l.moves); got != "[o1 h1->h3 o2 h1->h3]" && got != "[o2 h1->h3 o1 h1->h3]" {
		t.Errorf("moves: %s", got)
	}
	// h3 dies too; h2 is live but holds o2 already: o2 loses h3's binding.
	l.moves = nil
	l.agent("a3", "h3", false, true)
	l.failover()
	if got := l.hosts("o2"); got != "[h2]" {
		t.Errorf("o2: %s", got)
	}
	if got := l.hosts("o1"); got != "[h2]" {
		t.Errorf("o1: %s", got)
	}
	// Nobody live: nothing moves, bindings stay for the agents' return.
	l.agent("a2", "h2", false, true)
	l.moves = nil
	l.failover()
	if len(l.moves) != 0 || l.hosts("o1") != "[h2]" {
		t.Errorf("with no live agent: moves %v, o1 on %s", l.moves, l.hosts("o1"))
	}
}

// TestDeletedAgentLosesBindings: deleting an agent drops its bindings.
func TestDeletedAgentLosesBindings(t *testing.T) {
	l := newLab(t)
	l.agent("a1", "h1", true, true)
	l.schedule("o1", 1)
	l.Delete(agents.Agent, "a1")
	if got := l.hosts("o1"); got != "[]" {
		t.Errorf("o1 still on %s", got)
	}
	var bound []plugin.Object
	l.Read(func(c *plugin.Ctx) error {
		var err error
		bound, err = l.sch.Bindings(c, "")
		return err
	})
	if len(bound) != 0 {
		t.Errorf("bindings left: %v", bound)
	}
}
