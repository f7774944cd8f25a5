package ml2_test

import (
	"errors"
	"fmt"
	"testing"

	"neutrino/internal/fault"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/services"
	"neutrino/internal/services/ml2"
	"neutrino/internal/services/servicetest"
	"neutrino/internal/store"
)

func segment(n plugin.Object) string {
	return fmt.Sprint(n["provider:network_type"], " ", n["provider:physical_network"], " ", n["provider:segmentation_id"])
}

// TestSegmentAllocation: tenant networks take ids from the configured
// ranges, never twice, until none is left; provider segments are checked
// against what is taken; a deleted network's ids are free again.
func TestSegmentAllocation(t *testing.T) {
	e := servicetest.New(t, services.Config{ServicePlugins: []string{}, Quotas: map[string]int{"network": -1},
		ML2: ml2.Config{VNIRanges: []string{"100:102"}, NetworkVLANRanges: []string{"physnet1:7:7"}}})
	seen := map[string]bool{}
	var nets []plugin.Object
	for i := 0; i < 3; i++ {
		n := e.Create(schema.Network, map[string]any{})
		if seg := segment(n); seen[seg] || n["provider:network_type"] != "vxlan" {
			t.Fatalf("network %d: segment %s (have %v)", i, seg, seen)
		} else {
			seen[seg] = true
		}
		nets = append(nets, n)
	}
	if _, err := e.TryCreate(schema.Network, map[string]any{}); !isFault(err, "NoNetworkAvailable") {
		t.Fatalf("a fourth tenant network: %v", err)
	}
	vlan := map[string]any{"provider:network_type": "vlan", "provider:physical_network": "physnet1", "provider:segmentation_id": float64(7)}
	v := e.Create(schema.Network, vlan)
	if segment(v) != "vlan physnet1 7" {
		t.Fatalf("provider segment: %s", segment(v))
	}
	if _, err := e.TryCreate(schema.Network, vlan); !isFault(err, "SegmentationIdInUse") && !isFault(err, "VlanIdInUse") {
		t.Fatalf("the same VLAN twice: %v", err)
	}
	if _, err := e.TryCreate(schema.Network, map[string]any{"provider:network_type": "vlan", "provider:physical_network": "physnet1",
		"provider:segmentation_id": float64(5000)}); !isFault(err, "InvalidInput") {
		t.Fatalf("VLAN 5000: %v", err)
	}
	flat := map[string]any{"provider:network_type": "flat", "provider:physical_network": "physnet9"}
	e.Create(schema.Network, flat)
	if _, err := e.TryCreate(schema.Network, flat); err == nil {
		t.Fatal("two flat networks on one physical network")
	}
	e.Delete(schema.Network, nets[1]["id"].(string))
	e.Delete(schema.Network, v["id"].(string))
	if n := e.Create(schema.Network, map[string]any{}); segment(n) != segment(nets[1]) {
		t.Fatalf("after a delete: %s, want the freed %s", segment(n), segment(nets[1]))
	}
	e.Create(schema.Network, vlan)
}

func isFault(err error, typ string) bool {
	fe, ok := fault.As(err)
	return ok && fe.Type == typ
}

// recorder is a mechanism driver that records its hooks, refuses networks
// named "veto", and binds "direct" ports.
type recorder struct {
	ml2.Base
	log *[]string
}

func (recorder) Name() string { return "recorder" }

func (r recorder) Precommit(c *plugin.Ctx, kind string, op plugin.Op, old, new plugin.Object) error {
	if c.Tx == nil {
		return errors.New("precommit outside a transaction")
	}
	*r.log = append(*r.log, "pre "+kind+" "+string(op))
	if new != nil && new["name"] == "veto" {
		return fault.BadRequest("vetoed by the recorder")
	}
	return nil
}

func (r recorder) Postcommit(kind string, op plugin.Op, old, new plugin.Object) {
	*r.log = append(*r.log, "post "+kind+" "+string(op))
}

func (recorder) Bind(c *plugin.Ctx, port, network plugin.Object, segs []ml2.Segment) (string, map[string]any, bool) {
	if port["binding:vnic_type"] != "direct" {
		return "", nil, false
	}
	return "recorded", map[string]any{"segments": len(segs)}, true
}

// TestMechanismDrivers: drivers run in the configured order; precommit
// hooks run inside the transaction and may refuse a change, which then
// leaves nothing behind; postcommit hooks run only once it committed; a
// port binds with the first driver that can bind it.
func TestMechanismDrivers(t *testing.T) {
	var log []string
	ml2.RegisterMechanism("recorder", func() ml2.MechanismDriver { return recorder{log: &log} })
	if _, err := ml2.New(ml2.Config{MechanismDrivers: []string{"nonesuch"}}); err == nil {
		t.Fatal("an unknown driver is accepted")
	}
	e := servicetest.New(t, services.Config{ServicePlugins: []string{}, ML2: ml2.Config{MechanismDrivers: []string{"recorder", "linux"}}})
	n := e.Create(schema.Network, map[string]any{"name": "n1"})
	if fmt.Sprint(log) != "[pre network create post network create]" {
		t.Fatalf("hooks of a network create: %v", log)
	}
	log = nil
	if _, err := e.TryCreate(schema.Network, map[string]any{"name": "veto"}); !isFault(err, "HTTPBadRequest") {
		t.Fatalf("vetoed create: %v", err)
	}
	if fmt.Sprint(log) != "[pre network create]" {
		t.Fatalf("hooks of a vetoed create: %v", log)
	}
	e.Read(func(c *plugin.Ctx) error {
		all, err := c.List(schema.Network, storeAll)
		if len(all) != 1 {
			t.Errorf("a vetoed network was stored: %d networks", len(all))
		}
		return err
	})
	log = nil
	id := n["id"].(string)
	direct := e.Create(schema.Port, map[string]any{"network_id": id, "binding:host_id": "h1", "binding:vnic_type": "direct"})
	if direct["binding:vif_type"] != "recorded" {
		t.Fatalf("direct port bound as %v", direct["binding:vif_type"])
	}
	// The linux driver needs a live host agent on h1: there is none.
	normal := e.Create(schema.Port, map[string]any{"network_id": id, "binding:host_id": "h1"})
	if normal["binding:vif_type"] != "binding_failed" {
		t.Fatalf("normal port bound as %v", normal["binding:vif_type"])
	}
	e.Delete(schema.Port, normal["id"].(string))
	if fmt.Sprint(log) != "[pre port create post port create pre port create post port create pre port delete post port delete]" {
		t.Fatalf("hooks of ports: %v", log)
	}
}

var storeAll = store.Filter{}
