package ml2

import (
	"neutrino/internal/attr"
	"neutrino/internal/hostapi"
	"neutrino/internal/plugin"
	"neutrino/internal/services/agents"
)

// MechanismDriver is one of ML2's mechanism drivers: it sees every change
// to networks, subnets and ports in the transaction (precommit, where it
// may refuse the change) and after the transaction committed (postcommit,
// where a driver would tell a controller), and binds ports to hosts, as
// Neutron's driver API does. Drivers run in the configured order;
// Base gives no-op hooks to embed.
type MechanismDriver interface {
	Name() string
	// Precommit runs inside the transaction for kind "network", "subnet"
	// or "port" (old is nil on create, new on delete).
	Precommit(c *plugin.Ctx, kind string, op plugin.Op, old, new plugin.Object) error
	// Postcommit runs once the change is committed; it cannot undo it.
	Postcommit(kind string, op plugin.Op, old, new plugin.Object)
	// Bind returns the binding of port at its binding:host_id on one of
	// the network's segments, or ok=false if this driver cannot bind it.
	Bind(c *plugin.Ctx, port, network plugin.Object, segments []Segment) (vifType string, details map[string]any, ok bool)
}

// Base implements MechanismDriver's hooks as no-ops.
type Base struct{}

func (Base) Precommit(*plugin.Ctx, string, plugin.Op, plugin.Object, plugin.Object) error { return nil }
func (Base) Postcommit(string, plugin.Op, plugin.Object, plugin.Object)                   {}
func (Base) Bind(*plugin.Ctx, plugin.Object, plugin.Object, []Segment) (string, map[string]any, bool) {
	return "", nil, false
}

var mechanismDrivers = map[string]func() MechanismDriver{}

// RegisterMechanism makes a mechanism driver available by name to
// --mechanism-drivers; a driver package calls it from init.
func RegisterMechanism(name string, make func() MechanismDriver) { mechanismDrivers[name] = make }

func init() { RegisterMechanism("linux", func() MechanismDriver { return linuxDriver{} }) }

// commit runs the Precommit subscribers of a change (the extensions that
// complete or check the object: security groups on ports, attributes other
// services add), then the drivers' precommit hooks, and queues their
// postcommit hooks for after the commit. in is the parsed request.
func (s *Service) commit(c *plugin.Ctx, kind string, op plugin.Op, old, new, in plugin.Object) error {
	if err := c.Publish(kind, op, plugin.Precommit, &plugin.Payload{Old: old, New: new, Request: in}); err != nil {
		return err
	}
	for _, d := range s.mechs {
		if err := d.Precommit(c, kind, op, old, new); err != nil {
			return err
		}
	}
	c.AfterCommit(func() {
		for _, d := range s.mechs {
			d.Postcommit(kind, op, old, new)
		}
	})
	return nil
}

// linuxDriver is the Linux kernel data plane: a tap device per port plugged
// into a bridge per network, on any network type the type drivers made.
type linuxDriver struct{ Base }

func (linuxDriver) Name() string { return "linux" }

func (linuxDriver) Bind(c *plugin.Ctx, port, network plugin.Object, segs []Segment) (string, map[string]any, bool) {
	switch attr.Str(port, "binding:vnic_type") {
	case "normal", "":
	default:
		return "", nil, false
	}
	if len(segs) == 0 {
		return "", nil, false
	}
	// As ML2's agent-based drivers do: a live host agent on the port's host
	// must be able to wire one of the network's segments.
	hostAgents, err := agents.OfType(c, hostapi.HostAgentType, attr.Str(port, "binding:host_id"))
	if err != nil {
		return "", nil, false
	}
	bound := false
	for _, a := range hostAgents {
		if !agents.From(c).Alive(a) {
			continue
		}
		for _, seg := range segs {
			if agentCanWire(a, seg) {
				bound = true
			}
		}
	}
	if !bound {
		return "", nil, false
	}
	return "tap", map[string]any{"port_filter": true, "connectivity": "l2", "bridge_name": BridgeName(attr.Str(network, "id"))}, true
}

// agentCanWire reports whether a host agent's reported configuration
// covers a segment: tunnels by type, flat and VLAN by physical network.
func agentCanWire(agent plugin.Object, seg Segment) bool {
	conf, _ := agent["configurations"].(map[string]any)
	switch seg.NetworkType {
	case "vxlan", "gre":
		types, _ := conf["tunnel_types"].([]any)
		for _, t := range types {
			if t == seg.NetworkType {
				return true
			}
		}
	case "flat", "vlan":
		mappings, _ := conf["interface_mappings"].(map[string]any)
		_, ok := mappings[seg.PhysicalNetwork]
		return ok
	}
	return false
}

// BridgeName is the per-network bridge on every host.
func BridgeName(networkID string) string {
	if len(networkID) > 11 {
		networkID = networkID[:11]
	}
	return "brq" + networkID
}

// Bind sets binding:vif_type and vif_details from the first driver that
// can bind the port at its host; no host means unbound.
func Bind(c *plugin.Ctx, port, network plugin.Object) error {
	s := From(c)
	if attr.Str(port, "binding:host_id") == "" {
		port["binding:vif_type"] = "unbound"
		port["binding:vif_details"] = map[string]any{}
		return nil
	}
	segs := NetworkSegments(network)
	for _, d := range s.mechs {
		if vt, det, ok := d.Bind(c, port, network, segs); ok {
			port["binding:vif_type"] = vt
			port["binding:vif_details"] = det
			return nil
		}
	}
	port["binding:vif_type"] = "binding_failed"
	port["binding:vif_details"] = map[string]any{}
	return nil
}
