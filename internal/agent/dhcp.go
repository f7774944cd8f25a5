package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/dhcpv6/server6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/vishvananda/netns"
	"golang.org/x/net/ipv6"

	"neutrino/internal/dataplane"
	"neutrino/internal/dhcp"
	"neutrino/internal/hostapi"
)

// A host that serves DHCP keeps, per network, a namespace holding the
// network's DHCP port (its device's other end is a tap on the network's
// bridge, wired like any port) and a responder answering on it.

type dhcpServer struct {
	ns     string
	layout string // the port, addresses and MTU the namespace was built for
	table  *dhcp.Table[dhcp.Lease]
	table6 *dhcp.Table[dhcp.Lease6]
	cancel context.CancelFunc
}

// Namespaces the agent makes for DHCP ports and routers: Neutron's names
// (qdhcp-<network>, qrouter-<router>) on a real host; on a host that is
// itself a namespace, short names under its own, so they go with it.
const (
	dhcpNSKind   = "d"
	routerNSKind = "r"
)

var nsLongPrefix = map[string]string{dhcpNSKind: "qdhcp-", routerNSKind: "qrouter-"}

// nsPrefix starts the names of this host's namespaces of a kind.
func (a *Agent) nsPrefix(kind string) string {
	if a.cfg.NetNS != "" {
		return a.cfg.NetNS + "-" + kind
	}
	return nsLongPrefix[kind]
}

// nsName names the namespace of a kind for the object id.
func (a *Agent) nsName(kind, id string) string {
	if a.cfg.NetNS != "" {
		id = id[:min(8, len(id))]
	}
	return a.nsPrefix(kind) + id
}

// dhcpNS names a network's DHCP namespace.
func (a *Agent) dhcpNS(networkID string) string { return a.nsName(dhcpNSKind, networkID) }

// sweepNamespaces deletes this host's namespaces of a kind that are not in
// want (left from before a restart, or no longer needed), calling gone
// first for each.
func (a *Agent) sweepNamespaces(kind string, want map[string]bool, gone func(ns string)) {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], a.nsPrefix(kind)) && !want[f[0]] {
			if gone != nil {
				gone(f[0])
			}
			run("ip", "netns", "del", f[0])
		}
	}
}

func run(args ...string) error {
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// applyDHCP makes sure each served network has its DHCP port, namespace and
// responder, with the leases of the network's ports.
func (a *Agent) applyDHCP(ctx context.Context, st *hostapi.Span, nets map[string]dataplane.Network) []string {
	var errs []string
	subnets := map[string][]map[string]any{}
	for _, sn := range st.Subnets {
		subnets[str(sn, "network_id")] = append(subnets[str(sn, "network_id")], sn)
	}
	byNet := map[string][]map[string]any{}
	for _, p := range st.DHCPPorts {
		byNet[str(p, "network_id")] = append(byNet[str(p, "network_id")], p)
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
			if str(p, "device_owner") == "network:dhcp" && str(p, "binding:host_id") == a.cfg.Host {
				port = p
			}
		}
		if port == nil {
			// The DHCP port is allocated through the API like any port; the
			// change brings it back here at the next sync.
			body := map[string]any{"port": map[string]any{"network_id": id, "device_owner": "network:dhcp",
				"device_id": "dhcp" + a.cfg.Host, "binding:host_id": a.cfg.Host, "name": "dhcp-" + a.cfg.Host}}
			if err := a.call(ctx, http.MethodPost, "/v2.0/ports", body, nil); err != nil {
				errs = append(errs, err.Error())
			}
			continue
		}
		if err := a.ensureDHCP(ctx, n, port, subnets[id], byNet[id]); err != nil {
			errs = append(errs, err.Error())
		}
	}
	for id, s := range a.dhcp {
		if !served[id] {
			s.cancel()
			run("ip", "netns", "del", s.ns)
			delete(a.dhcp, id)
		}
	}
	// Namespaces of networks served before a restart and no longer.
	wanted := map[string]bool{}
	for id := range served {
		wanted[a.dhcpNS(id)] = true
	}
	a.sweepNamespaces(dhcpNSKind, wanted, nil)
	return errs
}

func (a *Agent) ensureDHCP(ctx context.Context, n dataplane.Network, port map[string]any, subnets, ports []map[string]any) error {
	ns := a.dhcpNS(n.ID)
	tap := dataplane.TapName(str(port, "id"))
	// The port's addresses on this network's subnets, as CIDRs.
	var addrs []string
	var serverIP net.IP
	v6 := false
	for _, sn := range subnets {
		if sn["enable_dhcp"] == true && isDHCPv6(sn) {
			v6 = true
		}
		for _, f := range list(port, "fixed_ips") {
			if str(sn, "id") != str(f, "subnet_id") {
				continue
			}
			ip := net.ParseIP(str(f, "ip_address"))
			addrs = append(addrs, ip.String()+str(sn, "cidr")[strings.LastIndex(str(sn, "cidr"), "/"):])
			if ip.To4() != nil && serverIP == nil {
				serverIP = ip
			}
		}
	}
	layout := fmt.Sprint(str(port, "id"), addrs, v6, n.MTU)
	s := a.dhcp[n.ID]
	if s == nil || s.layout != layout {
		if s != nil {
			s.cancel()
			delete(a.dhcp, n.ID)
		}
		run("ip", "netns", "del", ns) // a leftover from before a restart is rebuilt
		if err := run("ip", "netns", "add", ns); err != nil {
			return err
		}
		// No duplicate address detection: the API owns these addresses, and
		// the link-local one must answer DHCPv6 at once.
		for _, k := range []string{"net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_ra=0"} {
			if err := run("ip", "netns", "exec", ns, "sysctl", "-qw", k); err != nil {
				return err
			}
		}
		args := []string{"ip", "link", "add", tap}
		if a.cfg.NetNS != "" {
			args = append(args, "netns", a.cfg.NetNS)
		}
		args = append(args, "type", "veth", "peer", "name", "eth0", "netns", ns)
		if err := run(args...); err != nil {
			return err
		}
		if err := run("ip", "-n", ns, "link", "set", "eth0", "address", str(port, "mac_address"), "mtu", fmt.Sprint(n.MTU), "up"); err != nil {
			return err
		}
		run("ip", "-n", ns, "link", "set", "lo", "up")
		for _, cidr := range addrs {
			if err := run("ip", "-n", ns, "addr", "add", cidr, "dev", "eth0", "nodad"); err != nil {
				return err
			}
		}
		sctx, cancel := context.WithCancel(ctx)
		s = &dhcpServer{ns: ns, layout: layout, table: &dhcp.Table[dhcp.Lease]{}, table6: &dhcp.Table[dhcp.Lease6]{}, cancel: cancel}
		if serverIP != nil {
			conn, err := inNS(ns, udp4)
			if err != nil {
				cancel()
				return err
			}
			go dhcp.Serve(sctx, conn, serverIP, s.table, a.cfg.Log)
		}
		if v6 {
			conn, err := inNS(ns, udp6)
			if err != nil {
				cancel()
				return err
			}
			mac, _ := net.ParseMAC(str(port, "mac_address"))
			go dhcp.Serve6(sctx, conn, &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: mac}, s.table6, a.cfg.Log)
		}
		a.dhcp[n.ID] = s
	}
	s.table.Set(leases(n, subnets, ports))
	s.table6.Set(leases6(subnets, ports))
	return nil
}

// isDHCPv6 reports whether a subnet's addresses or options come by DHCPv6.
func isDHCPv6(sn map[string]any) bool {
	m := str(sn, "ipv6_address_mode")
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

// inNS runs open on a thread inside namespace ns (sockets stay in the
// namespace they are made in; namespaces belong to OS threads).
func inNS[T any](ns string, open func() (T, error)) (T, error) {
	var out T
	h, err := netns.GetFromName(ns)
	if err != nil {
		return out, err
	}
	defer h.Close()
	err = dataplane.InNamespace(h, func() error {
		var err error
		out, err = open()
		return err
	})
	return out, err
}

func list(o map[string]any, k string) []map[string]any {
	l, _ := o[k].([]any)
	out := make([]map[string]any, 0, len(l))
	for _, e := range l {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// leases computes what each port of the network is told.
func leases(n dataplane.Network, subnets, ports []map[string]any) map[string]dhcp.Lease {
	byID := map[string]map[string]any{}
	for _, sn := range subnets {
		byID[str(sn, "id")] = sn
	}
	out := map[string]dhcp.Lease{}
	for _, p := range ports {
		if str(p, "device_owner") == "network:dhcp" {
			continue
		}
		for _, f := range list(p, "fixed_ips") {
			sn := byID[str(f, "subnet_id")]
			ip := net.ParseIP(str(f, "ip_address")).To4()
			if sn == nil || ip == nil || sn["enable_dhcp"] != true {
				continue
			}
			_, cidr, err := net.ParseCIDR(str(sn, "cidr"))
			if err != nil {
				continue
			}
			l := dhcp.Lease{IP: ip, Mask: cidr.Mask, MTU: n.MTU, Domain: "openstacklocal", LeaseTime: 24 * time.Hour,
				Router: net.ParseIP(str(sn, "gateway_ip")).To4(), Extra: map[string]string{}}
			dns, _ := sn["dns_nameservers"].([]any)
			for _, d := range dns {
				if ip := net.ParseIP(fmt.Sprint(d)).To4(); ip != nil {
					l.DNS = append(l.DNS, ip)
				}
			}
			for _, r := range list(sn, "host_routes") {
				if _, dst, err := net.ParseCIDR(str(r, "destination")); err == nil {
					l.Routes = append(l.Routes, dhcp.Route{Dest: dst, NextHop: net.ParseIP(str(r, "nexthop")).To4()})
				}
			}
			for _, o := range list(p, "extra_dhcp_opts") {
				if v, _ := o["ip_version"].(float64); v == 4 {
					l.Extra[str(o, "opt_name")] = fmt.Sprint(o["opt_value"])
				}
			}
			out[str(p, "mac_address")] = l
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
			byID[str(sn, "id")] = sn
		}
	}
	out := map[string]dhcp.Lease6{}
	for _, p := range ports {
		if str(p, "device_owner") == "network:dhcp" {
			continue
		}
		l := dhcp.Lease6{Domain: "openstacklocal", LeaseTime: 24 * time.Hour, Extra: map[string]string{}}
		found := false
		for _, f := range list(p, "fixed_ips") {
			sn := byID[str(f, "subnet_id")]
			if sn == nil {
				continue
			}
			found = true
			if str(sn, "ipv6_address_mode") == "dhcpv6-stateful" {
				l.Addrs = append(l.Addrs, net.ParseIP(str(f, "ip_address")))
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
		for _, o := range list(p, "extra_dhcp_opts") {
			if v, _ := o["ip_version"].(float64); v == 6 {
				l.Extra[str(o, "opt_name")] = fmt.Sprint(o["opt_value"])
			}
		}
		out[str(p, "mac_address")] = l
	}
	return out
}
