package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/vishvananda/netns"

	"neutrino/internal/core"
	"neutrino/internal/dataplane"
	"neutrino/internal/dhcp"
)

// A host that serves DHCP keeps, per network, a namespace holding the
// network's DHCP port (its device's other end is a tap on the network's
// bridge, wired like any port) and a responder answering on it.

type dhcpServer struct {
	ns     string
	portID string
	table  *dhcp.Table
	cancel context.CancelFunc
}

// dhcpNS names a network's DHCP namespace.
func (a *Agent) dhcpNS(networkID string) string {
	if a.cfg.NetNS != "" {
		return a.cfg.NetNS + "-d" + networkID[:min(8, len(networkID))]
	}
	return "qdhcp-" + networkID
}

func run(args ...string) error {
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// applyDHCP makes sure each served network has its DHCP port, namespace and
// responder, with the leases of the network's ports.
func (a *Agent) applyDHCP(ctx context.Context, st *core.HostState, nets map[string]dataplane.Network) []string {
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
	return errs
}

func (a *Agent) ensureDHCP(ctx context.Context, n dataplane.Network, port map[string]any, subnets, ports []map[string]any) error {
	ns := a.dhcpNS(n.ID)
	tap := dataplane.TapName(str(port, "id"))
	s := a.dhcp[n.ID]
	if s == nil || s.portID != str(port, "id") {
		if s != nil {
			s.cancel()
		}
		run("ip", "netns", "del", ns) // a leftover from before a restart is rebuilt
		if err := run("ip", "netns", "add", ns); err != nil {
			return err
		}
		hostNS := a.cfg.NetNS
		args := []string{"ip", "link", "add", tap}
		if hostNS != "" {
			args = append(args, "netns", hostNS)
		}
		args = append(args, "type", "veth", "peer", "name", "eth0", "netns", ns)
		if err := run(args...); err != nil {
			return err
		}
		if err := run("ip", "-n", ns, "link", "set", "eth0", "address", str(port, "mac_address"), "mtu", fmt.Sprint(n.MTU), "up"); err != nil {
			return err
		}
		run("ip", "-n", ns, "link", "set", "lo", "up")
		var serverIP net.IP
		for _, f := range list(port, "fixed_ips") {
			ip := net.ParseIP(str(f, "ip_address"))
			for _, sn := range subnets {
				if str(sn, "id") == str(f, "subnet_id") {
					bits := str(sn, "cidr")[strings.LastIndex(str(sn, "cidr"), "/"):]
					if err := run("ip", "-n", ns, "addr", "add", ip.String()+bits, "dev", "eth0"); err != nil {
						return err
					}
					if ip.To4() != nil {
						serverIP = ip
					}
				}
			}
		}
		if serverIP == nil {
			return fmt.Errorf("dhcp: port %s has no IPv4 address", str(port, "id"))
		}
		conn, err := udpIn(ns)
		if err != nil {
			return err
		}
		sctx, cancel := context.WithCancel(ctx)
		s = &dhcpServer{ns: ns, portID: str(port, "id"), table: &dhcp.Table{}, cancel: cancel}
		a.dhcp[n.ID] = s
		go dhcp.Serve(sctx, conn, serverIP, s.table, a.cfg.Log)
	}
	s.table.Set(leases(n, subnets, ports))
	return nil
}

// udpIn opens the DHCP socket inside namespace ns (namespaces belong to OS
// threads: switch one, open, switch back).
func udpIn(ns string) (*net.UDPConn, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return nil, err
	}
	defer orig.Close()
	target, err := netns.GetFromName(ns)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return nil, err
	}
	conn, err := server4.NewIPv4UDPConn("eth0", &net.UDPAddr{IP: net.IPv4zero, Port: 67})
	if serr := netns.Set(orig); serr != nil {
		panic("agent: cannot return to the original namespace: " + serr.Error())
	}
	return conn, err
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
