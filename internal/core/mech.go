package core

import (
	"neutrino/internal/hostapi"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// HostAgentType is the agent_type of the host agents that wire ports.
const HostAgentType = hostapi.HostAgentType

// MechanismDriver binds ports to hosts and sees every port change before
// and after it commits, as ML2's mechanism drivers do.
type MechanismDriver interface {
	Name() string
	// Bind returns the binding for port on network at its binding:host_id,
	// or ok=false if this driver cannot bind it.
	Bind(c *Ctx, port, network Object) (vifType string, details map[string]any, ok bool)
	// PrecommitPort may veto a port change inside the transaction.
	PrecommitPort(c *Ctx, port, network Object) error
}

// linuxDriver is the Linux kernel data plane: a tap device per port plugged
// into a bridge per network, on any network type the type drivers made.
type linuxDriver struct{}

func (linuxDriver) Name() string { return "linux" }

func (linuxDriver) Bind(c *Ctx, port, network Object) (string, map[string]any, bool) {
	switch str(port, "binding:vnic_type") {
	case "normal", "":
	default:
		return "", nil, false
	}
	segs := NetworkSegments(network)
	if len(segs) == 0 {
		return "", nil, false
	}
	// As ML2's agent-based drivers do: a live host agent on the port's host
	// must be able to wire one of the network's segments.
	agents, err := c.Tx.List(schema.Agent.Kind, store.Filter{})
	if err != nil {
		return "", nil, false
	}
	host, bound := str(port, "binding:host_id"), false
	for _, a := range agents {
		if str(a, "agent_type") != HostAgentType || str(a, "host") != host || !c.S.agentAlive(a) {
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
	return "tap", map[string]any{"port_filter": true, "connectivity": "l2", "bridge_name": BridgeName(str(network, "id"))}, true
}

// agentCanWire reports whether a host agent's reported configuration
// covers a segment: tunnels by type, flat and VLAN by physical network.
func agentCanWire(agent Object, seg Segment) bool {
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

func (linuxDriver) PrecommitPort(c *Ctx, port, network Object) error { return nil }

// BridgeName is the per-network bridge on every host.
func BridgeName(networkID string) string {
	if len(networkID) > 11 {
		networkID = networkID[:11]
	}
	return "brq" + networkID
}

func (s *Service) mechanisms() []MechanismDriver { return []MechanismDriver{linuxDriver{}} }

// bind sets binding:vif_type and vif_details from the first driver that can
// bind the port at its host; no host means unbound.
func (s *Service) bind(c *Ctx, port, network Object) error {
	for _, d := range s.mechanisms() {
		if err := d.PrecommitPort(c, port, network); err != nil {
			return err
		}
	}
	if str(port, "binding:host_id") == "" {
		port["binding:vif_type"] = "unbound"
		port["binding:vif_details"] = map[string]any{}
		return nil
	}
	for _, d := range s.mechanisms() {
		if vt, det, ok := d.Bind(c, port, network); ok {
			port["binding:vif_type"] = vt
			port["binding:vif_details"] = det
			return nil
		}
	}
	port["binding:vif_type"] = "binding_failed"
	port["binding:vif_details"] = map[string]any{}
	return nil
}
