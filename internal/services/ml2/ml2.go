// Package ml2 is the core plugin, as Neutron's Modular Layer 2: networks,
// subnets and ports, a network's segments from type drivers (flat, vlan,
// vxlan, gre), and an ordered list of mechanism drivers chosen by
// configuration that see every change before and after it commits and
// bind ports to hosts. Other services build on its exported calls
// (ServicePort, RemovePort, Bind) and hear of its changes by events.
package ml2

import (
	"fmt"
	"strconv"
	"strings"

	"neutrino/internal/attr"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/services/rbac"
	"neutrino/internal/store"
)

// Config is ML2's configuration (Neutron's [ml2], [ml2_type_*] settings).
type Config struct {
	// TenantNetworkTypes are tried in order for networks created without
	// provider attributes.
	TenantNetworkTypes []string
	// TypeDrivers enabled: any of flat, vlan, vxlan, gre.
	TypeDrivers []string
	// MechanismDrivers, in order (default: linux).
	MechanismDrivers []string
	// FlatNetworks lists physical networks usable by flat networks ("*": any).
	FlatNetworks []string
	// NetworkVLANRanges: physnet or physnet:min:max, as ML2's network_vlan_ranges.
	NetworkVLANRanges []string
	// VNIRanges and TunnelIDRanges: "min:max" for vxlan and gre.
	VNIRanges      []string
	TunnelIDRanges []string
	// GlobalPhysnetMTU is the MTU of the underlying physical network;
	// PhysicalNetworkMTUs overrides it per physical network ("physnet:mtu").
	GlobalPhysnetMTU    int
	PhysicalNetworkMTUs []string
	// BaseMAC is the prefix of generated MAC addresses (first three octets used).
	BaseMAC string
	// MaxFixedIPsPerPort bounds fixed_ips in one port.
	MaxFixedIPsPerPort int
}

// fill mirrors Neutron's ML2 defaults with a vxlan tenant network type and
// a physical network "physnet1" usable for vlan and flat.
func (c *Config) fill() {
	if len(c.TypeDrivers) == 0 {
		c.TypeDrivers = []string{"flat", "vlan", "vxlan", "gre"}
	}
	if len(c.TenantNetworkTypes) == 0 {
		c.TenantNetworkTypes = []string{"vxlan"}
	}
	if len(c.MechanismDrivers) == 0 {
		c.MechanismDrivers = []string{"linux"}
	}
	if c.FlatNetworks == nil {
		c.FlatNetworks = []string{"*"}
	}
	if c.NetworkVLANRanges == nil {
		c.NetworkVLANRanges = []string{"physnet1:1000:2999", "physnet2"}
	}
	if c.VNIRanges == nil {
		c.VNIRanges = []string{"1:65535"}
	}
	if c.TunnelIDRanges == nil {
		c.TunnelIDRanges = []string{"1:65535"}
	}
	if c.GlobalPhysnetMTU == 0 {
		c.GlobalPhysnetMTU = 1500
	}
	if c.BaseMAC == "" {
		c.BaseMAC = "fa:16:3e:00:00:00"
	}
	if c.MaxFixedIPsPerPort == 0 {
		c.MaxFixedIPsPerPort = 5
	}
}

func parseRange(s string) (lo, hi int64, err error) {
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return 0, 0, fmt.Errorf("range %q is not min:max", s)
	}
	lo, err1 := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
	hi, err2 := strconv.ParseInt(strings.TrimSpace(b), 10, 64)
	if err1 != nil || err2 != nil || lo > hi {
		return 0, 0, fmt.Errorf("range %q is not min:max", s)
	}
	return lo, hi, nil
}

// Service is the ML2 core plugin.
type Service struct {
	peers peerCache
	// bound are each host's bound ports as of their last change.
	bound plugin.Cache[[]plugin.Object]
	cfg   Config
	types map[string]TypeDriver
	mechs []MechanismDriver
}

// New builds ML2 from its configuration.
func New(cfg Config) (*Service, error) {
	cfg.fill()
	s := &Service{cfg: cfg}
	if err := s.initTypes(); err != nil {
		return nil, err
	}
	for _, name := range cfg.MechanismDrivers {
		mk, ok := mechanismDrivers[name]
		if !ok {
			return nil, fmt.Errorf("ml2: unknown mechanism driver %q", name)
		}
		s.mechs = append(s.mechs, mk())
	}
	return s, nil
}

// From returns the ML2 plugin of c's server.
func From(c *plugin.Ctx) *Service {
	s, _ := plugin.Find[*Service](c.Reg)
	return s
}

// Name implements plugin.Service.
func (s *Service) Name() string { return "ml2" }

// Register implements plugin.Service.
func (s *Service) Register(r *plugin.Registry) error {
	r.Extension(extensions...)
	if err := rbac.Share(r, &rbac.Type{Name: "network", Res: schema.Network, Actions: []string{"access_as_shared", "access_as_external"},
		Users: networkUsers}); err != nil {
		return err
	}
	for _, h := range []*plugin.Handler{
		{Res: schema.Network, Create: s.createNetwork, Update: s.updateNetwork, Delete: s.deleteNetwork, Visible: networkVisible,
			Present: rbac.Present, Quota: "network"},
		{Res: schema.Subnet, Create: s.createSubnet, Update: s.updateSubnet, Delete: s.deleteSubnet, Visible: subnetVisible, Quota: "subnet"},
		{Res: schema.Port, Create: s.createPort, Update: s.updatePort, Delete: s.deletePort, Visible: portVisible, List: listPorts,
			MayDelete: portVisible, Quota: "port"},
	} {
		if err := r.Resource(h); err != nil {
			return err
		}
	}
	r.Subscribe("agent", plugin.Report, plugin.After, s.agentReported)
	if r.DB != nil {
		// What hot paths look ports up by: a host's span, a device's ports.
		for _, a := range []string{"binding:host_id", "device_id", "device_owner"} {
			r.DB.IndexAttr(schema.Port.Kind, a)
		}
	}
	r.HostSpan(s.hostPorts)
	r.HostSpanFinish(s.hostNetworks)
	r.Route(&plugin.Route{Method: "PUT", Path: "hosts/{}/ports", Internal: true, Serve: s.serveHostPorts})
	return nil
}

var extensions = []plugin.Extension{
	{Alias: "allowed-address-pairs", Name: "Allowed Address Pairs", Description: "Provides allowed address pairs", Updated: "2013-07-23T10:00:00-00:00"},
	{Alias: "binding", Name: "Port Binding", Description: "Expose port bindings of a virtual port to external application", Updated: "2014-02-03T10:00:00-00:00"},
	{Alias: "external-net", Name: "Neutron external network", Description: "Adds external network attribute to network resource.", Updated: "2013-01-14T10:00:00-00:00"},
	{Alias: "extra_dhcp_opt", Name: "Neutron Extra DHCP options", Description: "Extra options configuration for DHCP. For example PXE boot options to DHCP clients can be specified (e.g. tftp-server, server-ip-address, bootfile-name)", Updated: "2013-03-17T12:00:00-00:00"},
	{Alias: "ip-substring-filtering", Name: "IP address substring filtering", Description: "Provides IP address substring filtering when listing ports", Updated: "2017-11-28T09:00:00-00:00"},
	{Alias: "ip_allocation", Name: "IP Allocation", Description: "IP allocation extension.", Updated: "2016-06-10T23:00:00-00:00"},
	{Alias: "l2_adjacency", Name: "L2 Adjacency", Description: "Display L2 Adjacency for Neutron Networks.", Updated: "2016-04-12T16:00:00-00:00"},
	{Alias: "multi-provider", Name: "Multi Provider Network", Description: "Expose mapping of virtual networks to multiple physical networks", Updated: "2013-06-27T10:00:00-00:00"},
	{Alias: "net-mtu", Name: "Network MTU", Description: "Provides MTU attribute for a network resource.", Updated: "2015-03-25T10:00:00-00:00"},
	{Alias: "net-mtu-writable", Name: "Network MTU (writable)", Description: "Provides a writable MTU attribute for a network resource.", Updated: "2017-07-12T00:00:00-00:00"},
	{Alias: "port-security", Name: "Port Security", Description: "Provides port security", Updated: "2012-07-23T10:00:00-00:00"},
	{Alias: "provider", Name: "Provider Network", Description: "Expose mapping of virtual networks to physical networks", Updated: "2012-09-07T10:00:00-00:00"},
	{Alias: "subnet-service-types", Name: "Subnet service types", Description: "Provides ability to set the subnet service_types field", Updated: "2016-03-15T18:00:00-00:00"},
}

// networkUsers are the projects with ports or subnets on a network (who
// depend on its being shared).
func networkUsers(c *plugin.Ctx, obj plugin.Object) (map[string]bool, error) {
	users := map[string]bool{}
	ports, err := c.Tx.List(schema.Port.Kind, store.Filter{Parent: attr.Str(obj, "id")})
	if err != nil {
		return nil, err
	}
	for _, p := range ports {
		if attr.Str(p, "device_owner") != ownerDHCP {
			users[attr.Str(p, "project_id")] = true
		}
	}
	subnets, err := c.Tx.List(schema.Subnet.Kind, store.Filter{Parent: attr.Str(obj, "id")})
	if err != nil {
		return nil, err
	}
	for _, s := range subnets {
		users[attr.Str(s, "project_id")] = true
	}
	return users, nil
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
