package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"sort"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"sigs.k8s.io/knftables"

	"neutrino/internal/dataplane"
	"neutrino/internal/hostapi"
)

// A host with an L3 agent keeps one namespace per router it hosts. Each of
// the router's ports (bound to this host) is a veth pair: the host end is
// the port's tap, wired into its network's bridge like any port; the
// router end (qr-… for interfaces, qg-… for the gateway) carries the
// port's MAC and addresses. The namespace forwards between its
// interfaces, routes the extra routes, defaults to the external subnet's
// gateway, and NATs with nftables: each floating IP 1:1 (DNAT in, SNAT
// out), everything else behind the gateway address when enable_snat.

// routerNS names a router's namespace.
func (a *Agent) routerNS(routerID string) string { return a.nsName(routerNSKind, routerID) }

// routerDev names the router end of a port's veth pair.
func routerDev(port map[string]any) string {
	prefix := "qr-"
	if str(port, "device_owner") == "network:router_gateway" {
		prefix = "qg-"
	}
	id := str(port, "id")
	return prefix + id[:min(11, len(id))]
}

// applyL3 makes the router namespaces match the routers hosted here.
func (a *Agent) applyL3(ctx context.Context, st *hostapi.Span, nets map[string]dataplane.Network, once func(key, value string, fn func() error) error) []string {
	var errs []string
	subnets := map[string]map[string]any{}
	for _, sn := range st.Subnets {
		subnets[str(sn, "id")] = sn
	}
	want := map[string]bool{}
	for _, r := range st.Routers {
		if r["admin_state_up"] != true {
			continue
		}
		ns := a.routerNS(str(r, "id"))
		want[ns] = true
		var ports []map[string]any
		for _, p := range st.Ports {
			if str(p, "device_id") == str(r, "id") && strings.HasPrefix(str(p, "device_owner"), "network:router_") {
				ports = append(ports, p)
			}
		}
		var fips []map[string]any
		for _, f := range st.FloatingIPs {
			if str(f, "router_id") == str(r, "id") {
				fips = append(fips, f)
			}
		}
		// Everything the router's namespace is made from.
		var used []any
		for _, p := range ports {
			used = append(used, nets[str(p, "network_id")])
			for _, f := range list(p, "fixed_ips") {
				used = append(used, subnets[str(f, "subnet_id")])
			}
		}
		labels := labelsFor(r, st.MeteringLabels)
		err := once("router "+ns, fmt.Sprint(r, ports, fips, used, labels), func() error {
			return a.ensureRouter(ctx, ns, r, ports, fips, subnets, nets, labels)
		})
		if err != nil {
			errs = append(errs, fmt.Sprintf("router %s: %v", str(r, "id"), err))
		}
	}
	// Routers no longer hosted here (deleted, moved, disabled) go, and
	// their ports' devices with their namespaces.
	a.sweepNamespaces(routerNSKind, want, func(ns string) {
		if rs := a.routers[ns]; rs != nil {
			rs.stop()
		}
		delete(a.applied, "router "+ns)
		delete(a.routers, ns)
		a.dropMeter(ns)
	})
	return errs
}

// routerState is what the agent keeps per router namespace between syncs.
type routerState struct {
	nft       knftables.Interface // made once: each New runs nft --check
	announced map[string]bool     // floating IPs a gratuitous ARP was sent for
	ra        map[string]*raSender
}

func (a *Agent) ensureRouter(ctx context.Context, ns string, r map[string]any, ports, fips []map[string]any, subnets map[string]map[string]any, nets map[string]dataplane.Network, labels []map[string]any) error {
	rs := a.routers[ns]
	if nh, err := netns.GetFromName(ns); err == nil {
		nh.Close()
	} else {
		if err := run("ip", "netns", "add", ns); err != nil {
			return err
		}
		if rs != nil {
			rs.stop() // its sockets belong to the namespace that vanished
		}
		rs = nil
		a.dropMeter(ns) // its table went with the namespace
	}
	if rs == nil {
		for _, k := range []string{"net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.default.accept_dad=0",
			"net.ipv6.conf.all.accept_dad=0"} {
			if err := run("ip", "netns", "exec", ns, "sysctl", "-qw", k); err != nil {
				return err
			}
		}
		rs = &routerState{announced: map[string]bool{}}
		a.routers[ns] = rs
	}
	h, handle, err := nsHandle(ns)
	if err != nil {
		return err
	}
	defer handle.Close()
	defer h.Close()
	if lo, err := h.LinkByName("lo"); err == nil {
		h.LinkSetUp(lo)
	}
	var gwDev string
	learnRA := false // an external IPv6 subnet without a gateway: learn it from advertisements
	var gwIPs []netip.Addr
	var gateways []net.IP
	var internal []string
	addrs := map[string][]string{}
	ra := map[string]raConfig{}
	for _, p := range ports {
		n, ok := nets[str(p, "network_id")]
		if !ok {
			continue // its network is not wired here yet
		}
		dev := routerDev(p)
		if c, ok := raConfigFor(p, subnets, n.MTU); ok && strings.HasPrefix(dev, "qr-") {
			ra[dev] = c
		}
		if err := a.ensureRouterPort(ns, h, dev, p, n); err != nil {
			return err
		}
		addrs[dev] = []string{}
		for _, f := range list(p, "fixed_ips") {
			sn := subnets[str(f, "subnet_id")]
			if sn == nil {
				continue
			}
			cidr := str(sn, "cidr")
			addrs[dev] = append(addrs[dev], str(f, "ip_address")+cidr[strings.LastIndex(cidr, "/"):])
			if strings.HasPrefix(dev, "qg-") {
				if ip, err := netip.ParseAddr(str(f, "ip_address")); err == nil {
					gwIPs = append(gwIPs, ip)
				}
				if gw := net.ParseIP(str(sn, "gateway_ip")); gw != nil {
					gateways = append(gateways, gw)
				} else if strings.Contains(cidr, ":") {
					learnRA = true
				}
			} else {
				internal = append(internal, cidr)
			}
		}
		if strings.HasPrefix(dev, "qg-") {
			gwDev = dev
			for _, f := range fips {
				addrs[dev] = append(addrs[dev], str(f, "floating_ip_address")+"/32")
			}
		}
	}
	// Devices of ports the router no longer has go (their host ends with
	// them), so a removed interface stops answering for its subnet.
	if links, err := h.LinkList(); err == nil {
		for _, l := range links {
			name := l.Attrs().Name
			if (strings.HasPrefix(name, "qr-") || strings.HasPrefix(name, "qg-")) && addrs[name] == nil {
				if err := h.LinkDel(l); err != nil {
					return fmt.Errorf("remove %s: %w", name, err)
				}
			}
		}
	}
	// NAT before addresses: a floating IP must never answer as the router
	// itself for lack of its DNAT rule.
	if err := rs.setNAT(ns, r, gwDev, gwIPs, internal, fips); err != nil {
		return err
	}
	if err := a.setMetering(ns, str(r, "id"), gwDev, labels); err != nil {
		return fmt.Errorf("metering: %w", err)
	}
	devs := make([]string, 0, len(addrs))
	for dev := range addrs {
		devs = append(devs, dev)
	}
	sort.Strings(devs)
	for _, dev := range devs {
		if err := setAddrs(h, dev, addrs[dev]); err != nil {
			return err
		}
	}
	if err := setRoutes(h, gwDev, gateways, r); err != nil {
		return err
	}
	if gwDev != "" {
		// A forwarding router takes advertisements only with accept_ra=2;
		// its address comes from the API, not from SLAAC.
		accept := "0"
		if learnRA {
			accept = "2"
		}
		for _, k := range []string{"net.ipv6.conf." + gwDev + ".accept_ra=" + accept, "net.ipv6.conf." + gwDev + ".autoconf=0"} {
			if err := run("ip", "netns", "exec", ns, "sysctl", "-qw", k); err != nil {
				return err
			}
		}
	}
	if err := rs.ensureRA(ctx, ns, ra); err != nil {
		return err
	}
	// Tell the external network where new floating IPs are now.
	now := map[string]bool{}
	for _, f := range fips {
		addr := str(f, "floating_ip_address")
		now[addr] = true
		if gwDev != "" && !rs.announced[addr] {
			cmd := exec.Command("ip", "netns", "exec", ns, "busybox", "arping", "-U", "-c", "1", "-I", gwDev, addr)
			if cmd.Start() == nil {
				go cmd.Wait()
			}
		}
	}
	rs.announced = now
	return nil
}

// nsHandle opens a netlink handle inside namespace ns.
func nsHandle(ns string) (*netlink.Handle, netns.NsHandle, error) {
	nh, err := netns.GetFromName(ns)
	if err != nil {
		return nil, 0, err
	}
	h, err := netlink.NewHandleAt(nh)
	if err != nil {
		nh.Close()
		return nil, 0, err
	}
	return h, nh, nil
}

// ensureRouterPort makes the port's veth pair (tap on the host, dev in the
// router) with its MAC and MTU, both ends up.
func (a *Agent) ensureRouterPort(ns string, h *netlink.Handle, dev string, p map[string]any, n dataplane.Network) error {
	l, err := h.LinkByName(dev)
	if err != nil {
		args := []string{"ip", "link", "add", dataplane.TapName(str(p, "id"))}
		if a.cfg.NetNS != "" {
			args = append(args, "netns", a.cfg.NetNS)
		}
		args = append(args, "type", "veth", "peer", "name", dev, "netns", ns)
		if err := run(args...); err != nil {
			return err
		}
		if l, err = h.LinkByName(dev); err != nil {
			return err
		}
	}
	mac, err := net.ParseMAC(str(p, "mac_address"))
	if err != nil {
		return err
	}
	if l.Attrs().HardwareAddr.String() != mac.String() {
		if err := h.LinkSetHardwareAddr(l, mac); err != nil {
			return err
		}
	}
	if n.MTU > 0 && l.Attrs().MTU != n.MTU {
		if err := h.LinkSetMTU(l, n.MTU); err != nil {
			return err
		}
	}
	return h.LinkSetUp(l)
}

// setAddrs makes dev's global addresses exactly cidrs.
func setAddrs(h *netlink.Handle, dev string, cidrs []string) error {
	l, err := h.LinkByName(dev)
	if err != nil {
		return err
	}
	want := map[string]*netlink.Addr{}
	for _, c := range cidrs {
		a, err := netlink.ParseAddr(c)
		if err != nil {
			return err
		}
		if a.IP.To4() == nil {
			a.Flags = syscall.IFA_F_NODAD
		}
		want[a.IPNet.String()] = a
	}
	have, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return err
	}
	for _, a := range have {
		if a.IP.IsLinkLocalUnicast() {
			continue
		}
		if _, ok := want[a.IPNet.String()]; ok {
			delete(want, a.IPNet.String())
			continue
		}
		a := a
		if err := h.AddrDel(l, &a); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
			return err
		}
	}
	for _, a := range want {
		if err := h.AddrAdd(l, a); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("address %s on %s: %w", a.IPNet, dev, err)
		}
	}
	return nil
}

// routeProto marks the routes the agent manages (RTPROT_STATIC).
const routeProto = 4

// setRoutes makes the router's managed routes exactly: a default route per
// family via the external subnets' gateways, and the extra routes.
func setRoutes(h *netlink.Handle, gwDev string, gateways []net.IP, r map[string]any) error {
	var want []netlink.Route
	if gwDev != "" {
		if l, err := h.LinkByName(gwDev); err == nil {
			seen := map[bool]bool{}
			for _, gw := range gateways {
				v4 := gw.To4() != nil
				if seen[v4] {
					continue
				}
				seen[v4] = true
				dst := &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}
				if !v4 {
					dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
				}
				want = append(want, netlink.Route{LinkIndex: l.Attrs().Index, Dst: dst, Gw: gw, Protocol: routeProto})
			}
		}
	}
	for _, e := range list(r, "routes") {
		_, dst, err1 := net.ParseCIDR(str(e, "destination"))
		hop := net.ParseIP(str(e, "nexthop"))
		if err1 != nil || hop == nil {
			continue
		}
		want = append(want, netlink.Route{Dst: dst, Gw: hop, Protocol: routeProto})
	}
	key := func(rt netlink.Route) string {
		d := "default"
		if rt.Dst != nil {
			d = rt.Dst.String()
			if ones, _ := rt.Dst.Mask.Size(); ones == 0 {
				d = "default"
			}
		}
		fam := "4"
		if rt.Gw != nil && rt.Gw.To4() == nil {
			fam = "6"
		}
		return fam + " " + d + " " + rt.Gw.String()
	}
	wanted := map[string]netlink.Route{}
	for _, rt := range want {
		wanted[key(rt)] = rt
	}
	have, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: routeProto}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return err
	}
	for _, rt := range have {
		if _, ok := wanted[key(rt)]; ok {
			delete(wanted, key(rt))
			continue
		}
		rt := rt
		h.RouteDel(&rt)
	}
	keys := make([]string, 0, len(wanted))
	for k := range wanted {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		rt := wanted[k]
		if err := h.RouteReplace(&rt); err != nil {
			return fmt.Errorf("route %s: %w", k, err)
		}
	}
	return nil
}

// setNAT writes the router's NAT table whole (it is small): floating IPs
// first, then SNAT of the internal subnets behind the gateway address.
func (rs *routerState) setNAT(ns string, r map[string]any, gwDev string, gwIPs []netip.Addr, internal []string, fips []map[string]any) error {
	var err error
	inNS := func(fn func() error) error {
		h, err := netns.GetFromName(ns)
		if err != nil {
			return err
		}
		defer h.Close()
		return dataplane.InNamespace(h, fn)
	}
	return inNS(func() error {
		if rs.nft == nil {
			nft, e := knftables.New(knftables.IPv4Family, "neutrino-nat")
			if e != nil {
				return e
			}
			rs.nft = nft
		}
		nft := rs.nft
		tx := nft.NewTransaction()
		tx.Add(&knftables.Table{})
		tx.Delete(&knftables.Table{})
		tx.Add(&knftables.Table{})
		tx.Add(&knftables.Chain{Name: "prerouting", Type: knftables.PtrTo(knftables.NATType),
			Hook: knftables.PtrTo(knftables.PreroutingHook), Priority: knftables.PtrTo(knftables.DNATPriority)})
		tx.Add(&knftables.Chain{Name: "output", Type: knftables.PtrTo(knftables.NATType),
			Hook: knftables.PtrTo(knftables.OutputHook), Priority: knftables.PtrTo(knftables.DNATPriority)})
		tx.Add(&knftables.Chain{Name: "postrouting", Type: knftables.PtrTo(knftables.NATType),
			Hook: knftables.PtrTo(knftables.PostroutingHook), Priority: knftables.PtrTo(knftables.SNATPriority)})
		if gwDev != "" {
			for _, f := range fips {
				fip, fixed := str(f, "floating_ip_address"), str(f, "fixed_ip_address")
				if fip == "" || fixed == "" {
					continue
				}
				tx.Add(&knftables.Rule{Chain: "prerouting", Rule: knftables.Concat("ip daddr", fip, "dnat to", fixed)})
				tx.Add(&knftables.Rule{Chain: "output", Rule: knftables.Concat("ip daddr", fip, "dnat to", fixed)})
				tx.Add(&knftables.Rule{Chain: "postrouting", Rule: knftables.Concat("ip saddr", fixed, "oifname", quoteName(gwDev), "snat to", fip)})
			}
			info, _ := r["external_gateway_info"].(map[string]any)
			var v4 []string
			for _, c := range internal {
				if p, err := netip.ParsePrefix(c); err == nil && p.Addr().Is4() {
					v4 = append(v4, c)
				}
			}
			var gw4 string
			for _, ip := range gwIPs {
				if ip.Is4() {
					gw4 = ip.String()
					break
				}
			}
			if info != nil && info["enable_snat"] != false && gw4 != "" && len(v4) > 0 {
				tx.Add(&knftables.Rule{Chain: "postrouting", Rule: knftables.Concat("oifname", quoteName(gwDev), "ip saddr {", strings.Join(v4, ", "), "} snat to", gw4)})
			}
		}
		err = nft.Run(context.Background(), tx)
		return err
	})
}

func quoteName(s string) string { return `"` + s + `"` }
