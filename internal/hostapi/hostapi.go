// Package hostapi is the contract between the server and its host agents:
// the agent types, what an agent reports, and the span of desired state a
// host is sent. The agent imports this package, never the server's own
// packages, so it does not link the SQL store.
package hostapi

import (
	"sort"
	"strings"

	"neutrino/internal/attr"
)

// The agent types (Neutron's agent_type values, as `openstack network
// agent list` shows them).
const (
	// HostAgentType wires ports: bridges, tunnels, filters.
	HostAgentType = "Neutrino host agent"
	// DHCPAgentType serves DHCP for the networks scheduled to it.
	DHCPAgentType = "DHCP agent"
	// L3AgentType hosts the routers scheduled to it.
	L3AgentType = "L3 agent"
	// LBAgentType runs the load balancers scheduled to it (haproxy).
	LBAgentType = "Loadbalancerv2 agent"
)

// Object is one API resource as the server renders it to agents.
type Object = map[string]any

// AgentReport is what an agent sends at start and at every heartbeat.
type AgentReport struct {
	AgentType        string         `json:"agent_type"`
	Binary           string         `json:"binary"`
	Host             string         `json:"host"`
	Topic            string         `json:"topic"`
	AvailabilityZone string         `json:"availability_zone"`
	Configurations   map[string]any `json:"configurations"`
	StartFlag        bool           `json:"start_flag"`
}

// Span is what a host needs to wire its ports at one revision: the ports
// bound to it (those whose binding did not fail), their networks and
// subnets, their security groups with the groups those rules admit, the
// addresses of every member of those groups, and the parts of the
// services the host runs (DHCP, routers, metering).
type Span struct {
	Revision       int64               `json:"revision"`
	Ports          []Object            `json:"ports"`
	Networks       []Object            `json:"networks"`
	Subnets        []Object            `json:"subnets"`
	SecurityGroups []Object            `json:"security_groups"`
	GroupMembers   map[string][]string `json:"security_group_members"`
	// Members are, for the server's judging of changes (not sent), the
	// member ports of the groups in GroupMembers, each with its MemberKey:
	// one map per group (by group id), shared by every host using it.
	Members map[string]map[string]string `json:"-"`
	// Peers are the ports of the same networks bound to other hosts, with
	// the tunnel endpoint those hosts' agents report.
	Peers []Peer `json:"peers"`
	// PeerSources are, for the server's Diff (not sent), the lists of
	// peers Peers were drawn from, one per network, shared by every host
	// of the network: the same lists, the same peers.
	PeerSources [][]Peer `json:"-"`
	// For a host serving DHCP: the networks it serves (those with a
	// DHCP-enabled subnet) and every port on them.
	DHCPNetworks []string `json:"dhcp_networks,omitempty"`
	DHCPPorts    []Object `json:"dhcp_ports,omitempty"`
	// For a host with an L3 agent: the routers it hosts (their ports are
	// among Ports, bound here) and their floating IPs.
	Routers     []Object `json:"routers,omitempty"`
	FloatingIPs []Object `json:"floatingips,omitempty"`
	// MeteringLabels are the labels that apply to those routers (shared,
	// or of a router's project), each with its "rules".
	MeteringLabels []Object `json:"metering_labels,omitempty"`
	// DVRMACs holds, for a host running distributed routers, its own DVR
	// MAC ({"host", "mac_address"}): routed frames leave the host from it.
	DVRMACs []Object `json:"dvr_macs,omitempty"`
	// LoadBalancers are, for a host with a load-balancer agent, the load
	// balancers scheduled to it, each with what is under it: "_listeners"
	// and "_pools" (each with "_members" and "_healthmonitor"), those
	// being deleted left out. Their VIP ports are among Ports.
	LoadBalancers []Object `json:"loadbalancers,omitempty"`
}

// Peer is a port of one of the host's networks on another host: a MAC
// and the addresses behind it (an address pair with a MAC of its own is a
// peer of its own).
type Peer struct {
	NetworkID  string   `json:"network_id"`
	PortID     string   `json:"port_id"`
	MACAddress string   `json:"mac_address"`
	IPs        []string `json:"ip_addresses"`
	Host       string   `json:"host"`
	VTEP       string   `json:"tunneling_ip"`
}

// MeterCount is one metering label's traffic through one router's gateway
// in one direction, as counted by the L3 agent hosting the router (totals
// since the agent started counting).
type MeterCount struct {
	RouterID  string `json:"router_id"`
	LabelID   string `json:"label_id"`
	Direction string `json:"direction"`
	Packets   uint64 `json:"packets"`
	Bytes     uint64 `json:"bytes"`
}

// Device owners of the ports the services make (Neutron's values).
const (
	OwnerDHCP            = "network:dhcp"
	OwnerRouterInterface = "network:router_interface"
	// A distributed router's interfaces, and an HA router's, are owned
	// by these instead (Neutron's).
	OwnerRouterInterfaceDistributed = "network:router_interface_distributed"
	OwnerRouterInterfaceHA          = "network:ha_router_replicated_interface"
	OwnerRouterGateway              = "network:router_gateway"
	// OwnerRouterHA owns an HA router instance's port on its HA network.
	OwnerRouterHA   = "network:router_ha_interface"
	OwnerFloatingIP = "network:floatingip"
	// OwnerRouterSNAT owns a distributed router's port on one of its
	// networks in its centralized SNAT part.
	OwnerRouterSNAT = "network:router_centralized_snat"
	// OwnerFIPGateway owns a dvr host's port on an external network,
	// through which the floating IPs of its VMs go.
	OwnerFIPGateway = "network:floatingip_agent_gateway"
)

// IsRouterInterface reports whether a device owner is a router
// interface's (of any kind of router).
func IsRouterInterface(owner string) bool {
	return owner == OwnerRouterInterface || owner == OwnerRouterInterfaceDistributed || owner == OwnerRouterInterfaceHA
}

// IsRouterPort reports whether a device owner is one of a router's ports
// (interfaces, gateway, HA and SNAT ports).
func IsRouterPort(owner string) bool {
	return strings.HasPrefix(owner, "network:router_") || owner == OwnerRouterInterfaceHA
}

// MemberKey is what a host's span depends on of a port that is only a
// member of a group there: its addresses and its groups.
func MemberKey(port Object) string {
	var addrs, groups []string
	for _, key := range []string{"fixed_ips", "allowed_address_pairs"} {
		l, _ := port[key].([]any)
		for _, e := range l {
			if m, _ := e.(map[string]any); m != nil {
				addrs = append(addrs, attr.Str(m, "ip_address"))
			}
		}
	}
	l, _ := port["security_groups"].([]any)
	for _, g := range l {
		if s, ok := g.(string); ok {
			groups = append(groups, s)
		}
	}
	sort.Strings(addrs)
	sort.Strings(groups)
	return strings.Join(addrs, ",") + "|" + strings.Join(groups, ",")
}
