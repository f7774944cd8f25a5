// Package dhcp is the DHCP agent scheduler (dhcp_agent_scheduler): each
// network with a subnet served by DHCP is hosted by live DHCP agents (as
// many as --dhcp-agents-per-network), each with a DHCP port of its own on
// the network; when an agent dies its networks move, with their ports and
// addresses, to live agents. It also gives a DHCP host its part of the
// span: the networks it serves and their ports.
package dhcp

import (
	"sort"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/hostapi"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/services/agents"
	"neutrino/internal/services/ml2"
	"neutrino/internal/store"
)

// Config is the scheduler's setting.
type Config struct {
	// AgentsPerNetwork is how many DHCP agents (and ports) serve a network.
	AgentsPerNetwork int
}

// Service is the DHCP agent scheduler.
type Service struct {
	cfg   Config
	sched *agents.Scheduler
}

// New returns the DHCP agent scheduler.
func New(cfg Config) *Service {
	if cfg.AgentsPerNetwork == 0 {
		cfg.AgentsPerNetwork = 1
	}
	return &Service{cfg: cfg}
}

// Name implements plugin.Service.
func (s *Service) Name() string { return "dhcp" }

// Register implements plugin.Service.
func (s *Service) Register(r *plugin.Registry) error {
	ag, ok := plugin.Find[*agents.Service](r)
	if !ok {
		return errNeeds("agents")
	}
	s.sched = ag.Scheduler("dhcp_binding", hostapi.DHCPAgentType, "network_id")
	s.sched.Moved = s.moved
	r.Extension(plugin.Extension{Alias: "dhcp_agent_scheduler", Name: "DHCP Agent Scheduler", Description: "Schedule networks among dhcp agents", Updated: "2013-02-07T10:00:00-00:00"})
	schedule := func(c *plugin.Ctx, p *plugin.Payload) error { return s.schedule(c, attr.Str(p.New, "network_id")) }
	r.Subscribe(schema.Subnet.Kind, plugin.Create, plugin.After, schedule)
	r.Subscribe(schema.Subnet.Kind, plugin.Update, plugin.After, schedule)
	r.Subscribe(schema.Network.Kind, plugin.Delete, plugin.After, func(c *plugin.Ctx, p *plugin.Payload) error {
		return s.sched.UnbindAll(c, attr.Str(p.Old, "id"))
	})
	r.Subscribe(agents.Agent.Kind, plugin.Report, plugin.After, func(c *plugin.Ctx, p *plugin.Payload) error {
		if attr.Str(p.New, "agent_type") != hostapi.DHCPAgentType {
			return nil
		}
		if err := s.sched.Failover(c); err != nil {
			return err
		}
		return s.autoSchedule(c)
	})
	r.Nest(agents.Agent, "dhcp-networks", &plugin.Nested{List: s.sched.ListHosted(schema.Network, "get_dhcp-networks"), Add: s.add, Remove: s.remove})
	r.Nest(schema.Network, "dhcp-agents", s.sched.HostingAgents(schema.Network, "get_dhcp-agents"))
	r.HostSpan(s.hostPart)
	return nil
}

type errNeeds string

func (e errNeeds) Error() string { return "needs the " + string(e) + " service before it" }

// needsDHCP reports whether a network has a DHCP-enabled IPv4 subnet, or an
// IPv6 one whose addresses or options come by DHCPv6.
func needsDHCP(c *plugin.Ctx, networkID string) (bool, error) {
	subnets, err := c.Tx.List(schema.Subnet.Kind, store.Filter{Parent: networkID})
	if err != nil {
		return false, err
	}
	for _, sn := range subnets {
		if sn["enable_dhcp"] != true {
			continue
		}
		if m := attr.Str(sn, "ipv6_address_mode"); sn["ip_version"] == float64(4) || m == "dhcpv6-stateful" || m == "dhcpv6-stateless" {
			return true, nil
		}
	}
	return false, nil
}

// schedule binds a network that needs DHCP to live DHCP agents.
func (s *Service) schedule(c *plugin.Ctx, networkID string) error {
	if need, err := needsDHCP(c, networkID); err != nil || !need {
		return err
	}
	_, err := s.sched.Schedule(c, networkID, s.cfg.AgentsPerNetwork)
	return err
}

// autoSchedule gives (newly alive) DHCP agents the networks that need
// one and have too few.
func (s *Service) autoSchedule(c *plugin.Ctx) error {
	subnets, err := c.Tx.List(schema.Subnet.Kind, store.Filter{})
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, sn := range subnets {
		id := attr.Str(sn, "network_id")
		if seen[id] || sn["enable_dhcp"] != true {
			continue
		}
		seen[id] = true
		if err := s.schedule(c, id); err != nil {
			return err
		}
	}
	return nil
}

// dhcpPort is the DHCP port a host has on a network (nil if none).
func dhcpPort(c *plugin.Ctx, networkID, host string) (plugin.Object, error) {
	ports, err := c.Tx.List(schema.Port.Kind, store.Filter{Parent: networkID})
	if err != nil {
		return nil, err
	}
	for _, p := range ports {
		if attr.Str(p, "device_owner") == hostapi.OwnerDHCP && attr.Str(p, "binding:host_id") == host {
			return p, nil
		}
	}
	return nil, nil
}

// DeviceID is the device_id of a host's DHCP ports.
func DeviceID(host string) string { return "dhcp" + host }

// moved follows a failover: the dead agent's DHCP port on the network is
// moved to the new agent's host, keeping its addresses, so clients renew
// with the server they know (with no new agent, the port goes).
func (s *Service) moved(c *plugin.Ctx, networkID string, from, to plugin.Object) error {
	port, err := dhcpPort(c, networkID, attr.Str(from, "host"))
	if err != nil || port == nil {
		return err
	}
	if to == nil {
		return ml2.RemovePort(c, port)
	}
	port = schema.CloneObject(port)
	port["device_id"] = DeviceID(attr.Str(to, "host"))
	return ml2.Rebind(c, port, attr.Str(to, "host"))
}

func (s *Service) add(c *plugin.Ctx, agentID string, body map[string]any) error {
	networkID, a, err := s.sched.Adding(c, agentID, body, "create_dhcp-network")
	if err != nil {
		return err
	}
	if attr.Str(a, "agent_type") != hostapi.DHCPAgentType {
		return fault.Conflict("InvalidDHCPAgent", "Agent %s is not a valid DHCP Agent or has been disabled.", agentID)
	}
	if _, err := c.Get(schema.Network, networkID); err != nil {
		return err
	}
	if b, err := s.sched.Binding(c, networkID, agentID); err != nil {
		return err
	} else if b != nil {
		return fault.Conflict("NetworkHostedByDHCPAgent", "The network %s has been already hosted by the DHCP Agent %s.", networkID, agentID)
	}
	return s.sched.Bind(c, networkID, agentID)
}

// remove unbinds a network from a DHCP agent and removes the DHCP port
// that agent's host had on it.
func (s *Service) remove(c *plugin.Ctx, agentID, networkID string) error {
	a, err := s.sched.Unhost(c, agentID, networkID, "delete_dhcp-network",
		fault.Conflict("NetworkNotHostedByDhcpAgent", "The network %s is not hosted by the DHCP agent %s.", networkID, agentID))
	if err != nil {
		return err
	}
	port, err := dhcpPort(c, networkID, attr.Str(a, "host"))
	if err != nil || port == nil {
		return err
	}
	return ml2.RemovePort(c, port)
}

// hostPart is the DHCP part of a span: the networks scheduled to the
// host's DHCP agent and every port on them (their leases).
func (s *Service) hostPart(c *plugin.Ctx, host string, span *hostapi.Span, opts plugin.SpanOptions) error {
	if !opts.DHCP {
		return nil
	}
	served, err := s.sched.HostObjects(c, host)
	if err != nil {
		return err
	}
	for id := range served {
		span.DHCPNetworks = append(span.DHCPNetworks, id)
	}
	sort.Strings(span.DHCPNetworks)
	if len(served) == 0 {
		return nil
	}
	ports, err := c.Tx.List(schema.Port.Kind, store.Filter{Parents: span.DHCPNetworks})
	if err != nil {
		return err
	}
	span.DHCPPorts = append(span.DHCPPorts, ports...)
	return nil
}
