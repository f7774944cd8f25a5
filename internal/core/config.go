package core

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Config is the core plugin's configuration (ML2 and quota settings).
type Config struct {
	// TenantNetworkTypes are tried in order for networks created without
	// provider attributes.
	TenantNetworkTypes []string
	// TypeDrivers enabled: any of flat, vlan, vxlan, gre.
	TypeDrivers []string
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
	// DefaultQuotas by resource; -1 is unlimited.
	DefaultQuotas map[string]int
	// MaxFixedIPsPerPort bounds fixed_ips in one port.
	MaxFixedIPsPerPort int
	// DHCPAgentsPerNetwork is how many DHCP ports/agents serve a network.
	DHCPAgentsPerNetwork int
	// AgentDownTime is how long after its last report an agent counts as
	// dead (Neutron's agent_down_time, 75 s by default).
	AgentDownTime time.Duration
}

// DefaultConfig mirrors Neutron's ML2 defaults with a vxlan tenant network
// type and a physical network "physnet1" usable for vlan and flat.
func DefaultConfig() Config {
	c := Config{}
	c.fill()
	return c
}

func (c *Config) fill() {
	if len(c.TypeDrivers) == 0 {
		c.TypeDrivers = []string{"flat", "vlan", "vxlan", "gre"}
	}
	if len(c.TenantNetworkTypes) == 0 {
		c.TenantNetworkTypes = []string{"vxlan"}
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
	if c.DefaultQuotas == nil {
		c.DefaultQuotas = map[string]int{}
	}
	for k, v := range map[string]int{"network": 100, "subnet": 100, "port": 500, "router": 10, "floatingip": 50,
		"security_group": 10, "security_group_rule": 100, "subnetpool": -1, "rbac_policy": 10} {
		if _, ok := c.DefaultQuotas[k]; !ok {
			c.DefaultQuotas[k] = v
		}
	}
	if c.MaxFixedIPsPerPort == 0 {
		c.MaxFixedIPsPerPort = 5
	}
	if c.DHCPAgentsPerNetwork == 0 {
		c.DHCPAgentsPerNetwork = 1
	}
	if c.AgentDownTime == 0 {
		c.AgentDownTime = 75 * time.Second
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
