// Package dhcp is the host agent's DHCP concern: for each network
// scheduled to this host's DHCP agent, a namespace holding the network's
// DHCP port (its device's other end is a tap on the network's bridge,
// wired like any port) and native DHCPv4 and DHCPv6 responders answering
// on it with the leases of the network's ports.
package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/dhcpv6/server6"
	"github.com/insomniacslk/dhcp/iana"
	"golang.org/x/net/ipv6"

	"neutrino/internal/agent/concern"
	"neutrino/internal/attr"
	"neutrino/internal/dataplane"
	"neutrino/internal/dhcp"
	"neutrino/internal/hostapi"
)

type server struct {
	ns     string
	layout string // the port, addresses and MTU the namespace was built for
	table  *dhcp.Table[dhcp.Lease]
	table6 *dhcp.Table[dhcp.Lease6]
	cancel context.CancelFunc
}

// Servers is the DHCP reconciler.
type Servers struct {
	servers map[string]*server // by network
}

// New returns the DHCP reconciler.
func New() *Servers { return &Servers{servers: map[string]*server{}} }

func (*Servers) Name() string { return "dhcp" }
func (*Servers) Kinds() []string {
	return []string{"dhcp_binding", "port", "subnet", "network"}
}

// Close stops the responders (their namespaces stay, so an agent restart
// does not interrupt leases already given).
func (r *Servers) Close() {
	for _, s := range r.servers {
		s.cancel()
	}
}

// Apply makes sure each served network has its DHCP port, namespace and
// responder, with the leases of the network's ports.
func (r *Servers) Apply(ctx context.Context, env *concern.Env, st *hostapi.Span) error {
	var errs []string
	nets := env.Nets
	subnets := map[string][]map[string]any{}
	for _, sn := range st.Subnets {
		subnets[attr.Str(sn, "network_id")] = append(subnets[attr.Str(sn, "network_id")], sn)
	}
	byNet := map[string][]map[string]any{}
	for _, p := range st.DHCPPorts {
		byNet[attr.Str(p, "network_id")] = append(byNet[attr.Str(p, "network_id")], p)
	}
	served := map[string]bool{}
	for _, id := range st.DHCPNetworks {
		served[id] = true
		n, ok := nets[id]
		if !ok {
			continue
		}
		var port map[string]any
		for _, p := range byNet[id] {
			if attr.Str(p, "device_owner") == "network:dhcp" && attr.Str(p, "binding:host_id") == env.HostName {
				port = p
			}
		}
		if port == nil {
			// The DHCP port is allocated through the API like any port; the
			// change brings it back here at the next sync.
			body := map[string]any{"port": map[string]any{"network_id": id, "device_owner": hostapi.OwnerDHCP,
				"device_id": "dhcp" + env.HostName, "binding:host_id": env.HostName, "name": "dhcp-" + env.HostName}}
			if err := env.API.Call(ctx, http.MethodPost, "/v2.0/ports", body, nil); err != nil {
				errs = append(errs, err.Error())
			}
			continue
		}
		if err := r.ensure(ctx, env, n, port, subnets[id], byNet[id]); err != nil {
			errs = append(errs, err.Error())
		}
	}
	for id, s := range r.servers {
		if !served[id] {
			s.cancel()
			dataplane.DeleteNamespace(s.ns)
			delete(r.servers, id)
		}
	}
	// Namespaces of networks served before a restart and no longer.
	wanted := map[string]bool{}
	for id := range served {
		wanted[env.NSName(concern.DHCPNS, id)] = true
	}
	dataplane.SweepNamespaces(env.NSPrefix(concern.DHCPNS), wanted, nil)
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

func (r *Servers) ensure(ctx context.Context, env *concern.Env, n dataplane.Network, port map[string]any, subnets, ports []map[string]any) error {
	ns := env.NSName(concern.DHCPNS, n.ID)
	tap := dataplane.TapName(attr.Str(port, "id"))
	// The port's addresses on this network's subnets, as CIDRs.
	var addrs []string
	var serverIP net.IP
	v6 := false
	for _, sn := range subnets {
		if sn["enable_dhcp"] == true && isDHCPv6(sn) {
			v6 = true
		}
		for _, f := range attr.Objects(port, "fixed_ips") {
			if attr.Str(sn, "id") != attr.Str(f, "subnet_id") {
				continue
			}
			ip := net.ParseIP(attr.Str(f, "ip_address"))
			addrs = append(addrs, ip.String()+attr.Str(sn, "cidr")[strings.LastIndex(attr.Str(sn, "cidr"), "/"):])
			if ip.To4() != nil && serverIP == nil {
				serverIP = ip
			}
		}
	}
	layout := fmt.Sprint(attr.Str(port, "id"), addrs, v6, n.MTU)
	s := r.servers[n.ID]
	if s == nil || s.layout != layout {
		if s != nil {
			s.cancel()
			delete(r.servers, n.ID)
		}
		// A leftover from before a restart is rebuilt.
		if err := dataplane.ServiceNamespace(ns, env.NetNS, tap, attr.Str(port, "mac_address"), n.MTU, addrs); err != nil {
			return err
		}
		sctx, cancel := context.WithCancel(ctx)
		s = &server{ns: ns, layout: layout, table: &dhcp.Table[dhcp.Lease]{}, table6: &dhcp.Table[dhcp.Lease6]{}, cancel: cancel}
		if serverIP != nil {
			conn, err := dataplane.Open(ns, udp4)
			if err != nil {
				cancel()
				return err
			}
			go dhcp.Serve(sctx, conn, serverIP, s.table, env.Log)
		}
		if v6 {
			conn, err := dataplane.Open(ns, udp6)
			if err != nil {
				cancel()
				return err
			}
			mac, _ := net.ParseMAC(attr.Str(port, "mac_address"))
			go dhcp.Serve6(sctx, conn, &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: mac}, s.table6, env.Log)
		}
		r.servers[n.ID] = s
	}
	s.table.Set(leases(n, subnets, ports))
	s.table6.Set(leases6(subnets, ports))
	return nil
}

// isDHCPv6 reports whether a subnet's addresses or options come by DHCPv6.
func isDHCPv6(sn map[string]any) bool {
	m := attr.Str(sn, "ipv6_address_mode")
	return m == "dhcpv6-stateful" || m == "dhcpv6-stateless"
}

// udp4 opens the DHCPv4 server socket on eth0 of the current namespace.
func udp4() (*net.UDPConn, error) {
	return server4.NewIPv4UDPConn("eth0", &net.UDPAddr{IP: net.IPv4zero, Port: 67})
}

// udp6 opens the DHCPv6 server socket on eth0 of the current namespace,
// joined to All_DHCP_Relay_Agents_and_Servers.
func udp6() (*net.UDPConn, error) {
	conn, err := server6.NewIPv6UDPConn("eth0", &net.UDPAddr{IP: net.IPv6unspecified, Port: dhcpv6.DefaultServerPort})
	if err != nil {
		return nil, err
	}
	ifi, err := net.InterfaceByName("eth0")
	if err == nil {
		err = ipv6.NewPacketConn(conn).JoinGroup(ifi, &net.UDPAddr{IP: dhcpv6.AllDHCPRelayAgentsAndServers})
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("dhcpv6: join group: %w", err)
	}
	return conn, nil
}

// leases computes what each port of the network is told.
func leases(n dataplane.Network, subnets, ports []map[string]any) map[string]dhcp.Lease {
	byID := map[string]map[string]any{}
	for _, sn := range subnets {
		byID[attr.Str(sn, "id")] = sn
	}
	out := map[string]dhcp.Lease{}
	for _, p := range ports {
		if attr.Str(p, "device_owner") == "network:dhcp" {
			continue
		}
		for _, f := range attr.Objects(p, "fixed_ips") {
			sn := byID[attr.Str(f, "subnet_id")]
			ip := net.ParseIP(attr.Str(f, "ip_address")).To4()
			if sn == nil || ip == nil || sn["enable_dhcp"] != true {
				continue
			}
			_, cidr, err := net.ParseCIDR(attr.Str(sn, "cidr"))
			if err != nil {
				continue
			}
			l := dhcp.Lease{IP: ip, Mask: cidr.Mask, MTU: n.MTU, Domain: "openstacklocal", LeaseTime: 24 * time.Hour,
				Router: net.ParseIP(attr.Str(sn, "gateway_ip")).To4(), Extra: map[string]string{}}
			dns, _ := sn["dns_nameservers"].([]any)
			for _, d := range dns {
				if ip := net.ParseIP(fmt.Sprint(d)).To4(); ip != nil {
					l.DNS = append(l.DNS, ip)
				}
			}
			for _, r := range attr.Objects(sn, "host_routes") {
				if _, dst, err := net.ParseCIDR(attr.Str(r, "destination")); err == nil {
					l.Routes = append(l.Routes, dhcp.Route{Dest: dst, NextHop: net.ParseIP(attr.Str(r, "nexthop")).To4()})
				}
			}
			for _, o := range attr.Objects(p, "extra_dhcp_opts") {
				if v, _ := o["ip_version"].(float64); v == 4 {
					l.Extra[attr.Str(o, "opt_name")] = fmt.Sprint(o["opt_value"])
				}
			}
			out[attr.Str(p, "mac_address")] = l
			break // one IPv4 address per port is offered
		}
	}
	return out
}

// leases6 computes what each port of the network is told over DHCPv6: its
// addresses on dhcpv6-stateful subnets, and the DNS servers and options of
// its stateful and stateless subnets.
func leases6(subnets, ports []map[string]any) map[string]dhcp.Lease6 {
	byID := map[string]map[string]any{}
	for _, sn := range subnets {
		if sn["enable_dhcp"] == true && isDHCPv6(sn) {
			byID[attr.Str(sn, "id")] = sn
		}
	}
	out := map[string]dhcp.Lease6{}
	for _, p := range ports {
		if attr.Str(p, "device_owner") == "network:dhcp" {
			continue
		}
		l := dhcp.Lease6{Domain: "openstacklocal", LeaseTime: 24 * time.Hour, Extra: map[string]string{}}
		found := false
		for _, f := range attr.Objects(p, "fixed_ips") {
			sn := byID[attr.Str(f, "subnet_id")]
			if sn == nil {
				continue
			}
			found = true
			if attr.Str(sn, "ipv6_address_mode") == "dhcpv6-stateful" {
				l.Addrs = append(l.Addrs, net.ParseIP(attr.Str(f, "ip_address")))
			}
			dns, _ := sn["dns_nameservers"].([]any)
			for _, d := range dns {
				if ip := net.ParseIP(fmt.Sprint(d)); ip != nil && ip.To4() == nil {
					l.DNS = append(l.DNS, ip)
				}
			}
		}
		if !found {
			continue
		}
		for _, o := range attr.Objects(p, "extra_dhcp_opts") {
			if v, _ := o["ip_version"].(float64); v == 6 {
				l.Extra[attr.Str(o, "opt_name")] = fmt.Sprint(o["opt_value"])
			}
		}
		out[attr.Str(p, "mac_address")] = l
	}
	return out
}
