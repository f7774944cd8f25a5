package secgroup_test

import (
	"fmt"
	"math/rand"
	"reflect"
	"testing"

	"neutrino/internal/attr"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/services"
	"neutrino/internal/services/secgroup"
	"neutrino/internal/services/servicetest"
	"neutrino/internal/store"
)

// A group's members worked out step by step from the ones before are the
// members gathered afresh, whatever the ports do in between: join, leave,
// move between groups, change address pairs, go away.
func TestMembersStepByStep(t *testing.T) {
	e := servicetest.New(t, services.Config{ServicePlugins: []string{}, Quotas: map[string]int{"port": -1}})
	net := e.Create(schema.Network, map[string]any{"name": "n"})
	e.Create(schema.Subnet, map[string]any{"network_id": net["id"], "ip_version": float64(4), "cidr": "10.9.0.0/16"})
	other := e.Create(schema.SecurityGroup, map[string]any{"name": "other"})
	var svc *secgroup.Service
	for _, s := range e.Reg.Services() {
		if g, ok := s.(*secgroup.Service); ok {
			svc = g
		}
	}
	if svc == nil {
		t.Fatal("no security-group service registered")
	}
	update := func(id string, in map[string]any) {
		t.Helper()
		err := e.Write(func(c *plugin.Ctx) error {
			p, err := schema.Port.ParseUpdate(c.Caller, in)
			if err != nil {
				return err
			}
			_, err = c.Update(schema.Port, id, p, -1)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var def string
	var ports []string
	rng := rand.New(rand.NewSource(1))
	steps := 0
	for i := 0; i < 300; i++ {
		switch op := rng.Intn(6); {
		case op <= 2 || len(ports) == 0:
			p := e.Create(schema.Port, map[string]any{"network_id": net["id"]})
			ports = append(ports, p["id"].(string))
			if def == "" {
				def = schema.Render(attr.List(p, "security_groups")[0])
			}
		case op == 3:
			k := rng.Intn(len(ports))
			e.Delete(schema.Port, ports[k])
			ports = append(ports[:k], ports[k+1:]...)
		case op == 4:
			groups := [][]any{{def}, {other["id"]}, {def, other["id"]}, {}}[rng.Intn(4)]
			update(ports[rng.Intn(len(ports))], map[string]any{"security_groups": groups})
		default:
			pairs := []any{}
			for j := rng.Intn(3); j > 0; j-- {
				pairs = append(pairs, map[string]any{"ip_address": fmt.Sprintf("10.8.%d.%d", rng.Intn(4), rng.Intn(250))})
			}
			update(ports[rng.Intn(len(ports))], map[string]any{"allowed_address_pairs": pairs})
		}
		e.Read(func(c *plugin.Ctx) error {
			for _, gid := range []string{def, other["id"].(string)} {
				got, err := svc.CachedMembers(c, gid)
				if err != nil {
					return err
				}
				want, err := secgroup.GatheredMembers(c, gid)
				if err != nil {
					return err
				}
				if !reflect.DeepEqual(got.Addrs, want.Addrs) || !reflect.DeepEqual(got.Keys, want.Keys) || !reflect.DeepEqual(got.AddrsOf, want.AddrsOf) {
					t.Fatalf("step %d, group %s: members\n%v %v\nwant\n%v %v", i, gid, got.Addrs, got.Keys, want.Addrs, want.Keys)
				}
			}
			return nil
		})
	}
	// And steps were taken (not every list gathered afresh): one port
	// more, then the step from the members before it.
	f := store.Filter{Attr: "security_groups", Values: []string{def}}
	var prev *secgroup.Members
	var at int64
	e.Read(func(c *plugin.Ctx) error {
		var err error
		prev, err = secgroup.GatheredMembers(c, def)
		at, _ = c.Tx.Version(schema.Port.Kind, f)
		return err
	})
	e.Create(schema.Port, map[string]any{"network_id": net["id"]})
	e.Read(func(c *plugin.Ctx) error {
		m, ok := secgroup.StepMembers(c, def, prev, at)
		if !ok {
			t.Fatal("no step from the members one port before")
		}
		steps++
		if len(m.Keys) != len(prev.Keys)+1 || len(m.Addrs) != len(prev.Addrs)+1 {
			t.Fatalf("one port more: %d members, %d addresses; before %d, %d", len(m.Keys), len(m.Addrs), len(prev.Keys), len(prev.Addrs))
		}
		return nil
	})
	if steps != 1 {
		t.Fatal("the step was not checked")
	}
}

func TestMergeSorted(t *testing.T) {
	add, remove := secgroup.CancelOut([]string{"c", "a", "e"}, []string{"e", "b", "x"})
	if !reflect.DeepEqual(add, []string{"a", "c"}) || !reflect.DeepEqual(remove, []string{"b", "x"}) {
		t.Fatalf("cancelOut: %v %v", add, remove)
	}
	got := secgroup.MergeSorted([]string{"b", "b", "d", "f"}, []string{"a", "b", "e", "g"}, []string{"b", "f", "z"})
	if want := []string{"a", "b", "b", "d", "e", "g"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("mergeSorted: %v, want %v", got, want)
	}
}
