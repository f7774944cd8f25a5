// Package router is the kernel side of routers: a namespace per router with
// its ports, routes, NAT (nftables), router advertisements and metering
// counters. It builds on dataplane's namespaces and ports.
package router

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"sigs.k8s.io/knftables"

	"neutrino/internal/dataplane"
)

// A router is a namespace of its own. Each of its ports is a veth pair
// (dataplane.PortVeth): the host end is the port's tap, the router end (qr-… for
// interfaces, qg-… for the gateway) carries the port's MAC and addresses.
// The namespace forwards between its interfaces, routes the extra routes,
// defaults to the external subnets' gateways, and NATs with nftables: each
// floating IP 1:1 (DNAT in, SNAT out), everything else behind the gateway
// address when SNAT is on. It advertises IPv6 prefixes on its interfaces
// (RA).

// Sysctls are set in every new router namespace.
var Sysctls = []string{"net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.default.accept_dad=0",
	"net.ipv6.conf.all.accept_dad=0"}

// Port is one port of a router.
type Port struct {
	dataplane.PortVeth
	Addrs []string // CIDRs: address/prefix length
	// RA is what the interface advertises (nil: nothing).
	RA *RA
}

// Spec is what a router namespace is made to match.
type Spec struct {
	Ports []Port
	// Gateway is the gateway port's device ("" without one).
	Gateway string
	// DefaultGateways are next hops of the default routes (one per family).
	DefaultGateways []net.IP
	// LearnRA takes the IPv6 default route from upstream advertisements
	// (an external IPv6 subnet without a gateway).
	LearnRA bool
	Routes  []Route
	// FloatingIPs are mapped 1:1 at the gateway (their addresses are on it).
	FloatingIPs []FloatingIP
	// SNAT hides these IPv4 prefixes behind SNATAddress at the gateway.
	SNAT        []string
	SNATAddress string
	// HA, when set, makes the router one instance of a highly available
	// router: its addresses and routes are keepalived's (see HA).
	HA *HA
	// DVR, when set, makes the router the distributed part of a
	// distributed router on this host (see DVR): no gateway of its own.
	DVR *DVR
}

// Neighbor is an address on a router port's network and the MAC behind it.
type Neighbor struct {
	IP  net.IP
	MAC net.HardwareAddr
}

// SeedNeighbors gives the router the MACs of the addresses on its ports'
// networks (by device) before it needs them: an entry it lacks, or failed
// to resolve, is set STALE (used at once, confirmed by the kernel's own
// unicast probe, replaced by any newer ARP or ND, as a learned entry is);
// an entry it holds is left as it is. The first packets to a VM then do
// not wait on address resolution, whose retry is a second away when its
// first request is lost (the VM's host still learning the router's port).
func (r *Router) SeedNeighbors(byDev map[string][]Neighbor) error {
	h, done, err := dataplane.HandleIn(r.NS)
	if err != nil {
		return err
	}
	defer done()
	for _, dev := range slices.Sorted(maps.Keys(byDev)) {
		l, err := h.LinkByName(dev)
		if err != nil {
			continue // not made yet: the next pass seeds it
		}
		have := map[string]int{}
		for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			ns, err := h.NeighList(l.Attrs().Index, fam)
			if err != nil {
				return err
			}
			for _, n := range ns {
				have[n.IP.String()] = n.State
			}
		}
		for _, n := range byDev[dev] {
			if st, ok := have[n.IP.String()]; ok && st != netlink.NUD_NONE && st&(netlink.NUD_INCOMPLETE|netlink.NUD_FAILED) == 0 {
				continue
			}
			if err := h.NeighSet(neighbor(l.Attrs().Index, n, netlink.NUD_STALE)); err != nil {
				return fmt.Errorf("neighbor %s on %s: %w", n.IP, dev, err)
			}
		}
	}
	return nil
}

// neighbor is n as an entry of the link, in state.
func neighbor(link int, n Neighbor, state int) *netlink.Neigh {
	fam := netlink.FAMILY_V4
	if n.IP.To4() == nil {
		fam = netlink.FAMILY_V6
	}
	return &netlink.Neigh{LinkIndex: link, Family: fam, State: state, IP: n.IP, HardwareAddr: n.MAC}
}

// Route is an extra route.
type Route struct{ Destination, NextHop string }

// FloatingIP maps an external address onto an internal one.
type FloatingIP struct{ Address, Fixed string }

// Router is one router namespace and what outlives one Apply: its nft
// handle, the floating IPs announced, its advertisement senders.
type Router struct {
	NS     string
	hostNS string
	nft    knftables.Interface // made once: each New runs nft --check
	// announced are the floating IPs a gratuitous ARP was sent for.
	announced map[string]bool
	ra        map[string]*raSender
	haState
	noAutoLL bool // HA: devices get no link-local address of their own
}

// Open returns the router of namespace ns (its ports' host ends live
// in hostNS), making the namespace when missing; fresh reports whether it
// was made now.
func Open(ns, hostNS string) (r *Router, fresh bool, err error) {
	if !dataplane.NamespaceExists(ns) {
		if err := dataplane.AddNamespace(ns, Sysctls...); err != nil {
			return nil, false, err
		}
		fresh = true
	}
	return &Router{NS: ns, hostNS: hostNS, announced: map[string]bool{}, ra: map[string]*raSender{}}, fresh, nil
}

// Close stops the router's advertisements (the namespace stays).
func (r *Router) Close() {
	for _, s := range r.ra {
		s.cancel()
	}
	r.ra = map[string]*raSender{}
}

// Apply makes the router's namespace match spec.
func (r *Router) Apply(ctx context.Context, spec Spec) error {
	h, done, err := dataplane.HandleIn(r.NS)
	if err != nil {
		return err
	}
	defer done()
	addrs := map[string][]string{}
	ra := map[string]RA{}
	if spec.HA != nil && !r.noAutoLL {
		// A standby must never speak from the router's MACs (learning
		// switches would send the router's traffic to it): no link-local
		// address of the kernel's own on its devices, keepalived adds them
		// on the active instance.
		if err := dataplane.Run("ip", "netns", "exec", r.NS, "sysctl", "-qw", "net.ipv6.conf.default.addr_gen_mode=1"); err != nil {
			return err
		}
		r.noAutoLL = true
	}
	for _, p := range spec.Ports {
		if err := p.Ensure(r.NS, r.hostNS); err != nil {
			return err
		}
		addrs[p.Dev] = append([]string{}, p.Addrs...)
		if p.RA != nil {
			ra[p.Dev] = *p.RA
		}
	}
	if spec.Gateway != "" {
		for _, f := range spec.FloatingIPs {
			addrs[spec.Gateway] = append(addrs[spec.Gateway], f.Address+"/32")
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
	if err := r.setNAT(spec); err != nil {
		return err
	}
	if spec.HA != nil {
		// Addresses and routes are keepalived's, on the active instance
		// only, and so are advertisements.
		if err := r.applyHA(h, spec, addrs); err != nil {
			return err
		}
		return r.ensureRA(ctx, ra)
	}
	devs := slices.Sorted(maps.Keys(addrs))
	for _, dev := range devs {
		if err := dataplane.SetAddrs(h, dev, addrs[dev], ""); err != nil {
			return err
		}
	}
	if err := setRoutes(h, spec); err != nil {
		return err
	}
	if spec.DVR != nil {
		if err := r.applyDVR(h, spec); err != nil {
			return err
		}
	}
	if spec.Gateway != "" {
		// A forwarding router takes advertisements only with accept_ra=2;
		// its address comes from the API, not from SLAAC.
		accept := "0"
		if spec.LearnRA {
			accept = "2"
		}
		for _, k := range []string{"net.ipv6.conf." + spec.Gateway + ".accept_ra=" + accept, "net.ipv6.conf." + spec.Gateway + ".autoconf=0"} {
			if err := dataplane.Run("ip", "netns", "exec", r.NS, "sysctl", "-qw", k); err != nil {
				return err
			}
		}
	}
	if err := r.ensureRA(ctx, ra); err != nil {
		return err
	}
	// Tell the external network where new floating IPs are now.
	now := map[string]bool{}
	for _, f := range spec.FloatingIPs {
		now[f.Address] = true
		if spec.Gateway != "" && !r.announced[f.Address] {
			cmd := exec.Command("ip", "netns", "exec", r.NS, "busybox", "arping", "-U", "-c", "1", "-I", spec.Gateway, f.Address)
			if cmd.Start() == nil {
				go cmd.Wait()
			}
		}
	}
	r.announced = now
	return nil
}

// routeProto marks the routes a router's reconciler manages (RTPROT_STATIC).
const routeProto = 4

// defaultGateways are the next hops of the router's default routes: the
// first of each family among the external subnets' gateways.
func defaultGateways(spec Spec) []net.IP {
	var out []net.IP
	seen := map[bool]bool{}
	for _, gw := range spec.DefaultGateways {
		if v4 := gw.To4() != nil; !seen[v4] {
			seen[v4] = true
			out = append(out, gw)
		}
	}
	return out
}

// setRoutes makes the router's managed routes exactly: a default route per
// family via the external subnets' gateways, and the extra routes.
func setRoutes(h *netlink.Handle, spec Spec) error {
	var want []netlink.Route
	if spec.Gateway != "" {
		if l, err := h.LinkByName(spec.Gateway); err == nil {
			for _, gw := range defaultGateways(spec) {
				dst := &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}
				if gw.To4() == nil {
					dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
				}
				want = append(want, netlink.Route{LinkIndex: l.Attrs().Index, Dst: dst, Gw: gw, Protocol: routeProto})
			}
		}
	}
	for _, e := range spec.Routes {
		_, dst, err1 := net.ParseCIDR(e.Destination)
		hop := net.ParseIP(e.NextHop)
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
	keys := slices.Sorted(maps.Keys(wanted))
	for _, k := range keys {
		rt := wanted[k]
		if err := h.RouteReplace(&rt); err != nil {
			return fmt.Errorf("route %s: %w", k, err)
		}
	}
	return nil
}

// openNFT sets *nft to the nftables table of family named table, on first
// use only (each knftables.New runs nft --check). The caller is in the
// namespace the table lives in.
func openNFT(nft *knftables.Interface, family knftables.Family, table string) error {
	if *nft != nil {
		return nil
	}
	n, err := knftables.New(family, table)
	if err != nil {
		return err
	}
	*nft = n
	return nil
}

// setNAT writes the router's NAT table whole (it is small): floating IPs
// first, then SNAT of the internal subnets behind the gateway address.
func (r *Router) setNAT(spec Spec) error {
	return dataplane.InNamespaceNamed(r.NS, func() error {
		if err := openNFT(&r.nft, knftables.IPv4Family, "neutrino-nat"); err != nil {
			return err
		}
		tx := r.nft.NewTransaction()
		tx.Add(&knftables.Table{})
		tx.Delete(&knftables.Table{})
		tx.Add(&knftables.Table{})
		tx.Add(&knftables.Chain{Name: "prerouting", Type: knftables.PtrTo(knftables.NATType),
			Hook: knftables.PtrTo(knftables.PreroutingHook), Priority: knftables.PtrTo(knftables.DNATPriority)})
		tx.Add(&knftables.Chain{Name: "output", Type: knftables.PtrTo(knftables.NATType),
			Hook: knftables.PtrTo(knftables.OutputHook), Priority: knftables.PtrTo(knftables.DNATPriority)})
		tx.Add(&knftables.Chain{Name: "postrouting", Type: knftables.PtrTo(knftables.NATType),
			Hook: knftables.PtrTo(knftables.PostroutingHook), Priority: knftables.PtrTo(knftables.SNATPriority)})
		gw := spec.Gateway
		if spec.DVR != nil && spec.DVR.FIPNS != "" {
			gw = RFP(spec.DVR.Link) // floating IPs leave by the link to the floating IP namespace
		}
		if gw != "" {
			for _, f := range spec.FloatingIPs {
				if f.Address == "" || f.Fixed == "" {
					continue
				}
				tx.Add(&knftables.Rule{Chain: "prerouting", Rule: knftables.Concat("ip daddr", f.Address, "dnat to", f.Fixed)})
				tx.Add(&knftables.Rule{Chain: "output", Rule: knftables.Concat("ip daddr", f.Address, "dnat to", f.Fixed)})
				tx.Add(&knftables.Rule{Chain: "postrouting", Rule: knftables.Concat("ip saddr", f.Fixed, "oifname", quote(gw), "snat to", f.Address)})
			}
			var v4 []string
			for _, c := range spec.SNAT {
				if p, err := netip.ParsePrefix(c); err == nil && p.Addr().Is4() {
					v4 = append(v4, c)
				}
			}
			if spec.SNATAddress != "" && len(v4) > 0 {
				tx.Add(&knftables.Rule{Chain: "postrouting", Rule: knftables.Concat("oifname", quote(gw), "ip saddr {", strings.Join(v4, ", "), "} snat to", spec.SNATAddress)})
			}
			// Hairpin: a VM reaching a neighbour by its floating IP is sent
			// back into an internal network; from the gateway address, so
			// that the reply comes back through the router to be undone
			// (not straight over the subnet, which the VM would not take
			// for the reply), as Neutron's l3 agent does.
			if addr := gatewayV4(spec); addr != "" && len(spec.FloatingIPs) > 0 {
				tx.Add(&knftables.Rule{Chain: "postrouting", Rule: knftables.Concat("iifname !=", quote(gw), "oifname !=", quote(gw), "ct status dnat snat to", addr)})
			}
		}
		return r.nft.Run(context.Background(), tx)
	})
}

// quote makes a device name an nft string.
func quote(s string) string { return `"` + s + `"` }

// gatewayV4 is the router's first IPv4 address on its gateway port ("" if
// none).
func gatewayV4(spec Spec) string {
	for _, p := range spec.Ports {
		if p.Dev != spec.Gateway {
			continue
		}
		for _, a := range p.Addrs {
			if pf, err := netip.ParsePrefix(a); err == nil && pf.Addr().Is4() {
				return pf.Addr().String()
			}
		}
	}
	return ""
}
