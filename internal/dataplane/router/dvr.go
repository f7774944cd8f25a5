package router

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"neutrino/internal/dataplane"
)

// The distributed part of a router on one host (DVR): the router's
// interfaces, as on every host running it, routing between its networks
// for the host's VMs. What leaves its networks goes, by source:
//
//	a floating IP's fixed address   to the host's floating IP namespace, over
//	                                a veth pair (rfp- here, fpr- there), NATed
//	                                here to and from the floating IP
//	any other address of a subnet   to the subnet's SNAT port (the router's
//	                                centralized part, on a network host)
//
// as policy routes looked up after the main table, which holds only the
// router's own networks and extra routes. Its neighbours are permanent:
// a VM on another host must be reached by its MAC straight away, never
// by asking (the answer would go to that host's copy of the router).
//
// The floating IP namespace (one per external network on the host, see
// FIPNamespace) owns the host's port on the external network and answers
// ARP there for the floating IPs it routes to the routers.

// DVR is what makes a router's namespace its distributed part.
type DVR struct {
	// SNATHops are, per internal prefix, the address its traffic out
	// goes to (the SNAT port's, on device Dev).
	SNATHops []SNATHop
	// FIPNS is the floating IP namespace the router's floating IPs go
	// through ("" when it has none here).
	FIPNS string
	// Link names the veth pair into FIPNS (rfp-Link here, fpr-Link there).
	Link string
	// Neighbors are made permanent, by device.
	Neighbors map[string][]Neighbor
}

// SNATHop sends what comes from Source and leaves the router's networks to
// Via on device Dev.
type SNATHop struct {
	Source netip.Prefix
	Via    netip.Addr
	Dev    string
}

// The link between a router and a floating IP namespace: the same /31 on
// every pair (each pair is a link of its own; routes name the device).
const (
	rfpAddr = "169.254.93.94"
	fprAddr = "169.254.93.95"
	// fipTable holds the default route of floating IPs' fixed addresses.
	fipTable = 16
	// Rule priorities: floating IPs, then each subnet's SNAT hop (all
	// after the main table's 32766).
	fipPref  = 40000
	snatPref = 50000
	// snatTable is the first SNAT hop's table.
	snatTable = 100
	// fipRouteProto marks the routes a router adds in a floating IP
	// namespace (RTPROT_STATIC marks the namespace's own).
	fipRouteProto = 99
)

// RFP and FPR name the two ends of a router's link into its floating IP
// namespace.
func RFP(link string) string { return "rfp-" + link }
func FPR(link string) string { return "fpr-" + link }

// applyDVR sets the distributed part's policy routes, its link into the
// floating IP namespace and its permanent neighbours.
func (r *Router) applyDVR(h *netlink.Handle, spec Spec) error {
	d := spec.DVR
	type rule struct {
		pref, table int
		src         netip.Prefix
	}
	var rules []rule
	tables := map[int]netlink.Route{}
	if d.FIPNS != "" && len(spec.FloatingIPs) > 0 {
		if err := r.ensureFIPLink(h, d, spec.FloatingIPs); err != nil {
			return err
		}
		l, err := h.LinkByName(RFP(d.Link))
		if err != nil {
			return err
		}
		tables[fipTable] = netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP(fprAddr), Table: fipTable,
			Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, Protocol: routeProto}
		for _, f := range spec.FloatingIPs {
			if a, err := netip.ParseAddr(f.Fixed); err == nil {
				rules = append(rules, rule{fipPref, fipTable, netip.PrefixFrom(a, a.BitLen())})
			}
		}
	} else if l, err := h.LinkByName(RFP(d.Link)); err == nil {
		h.LinkDel(l) // no floating IP here any more
	}
	hops := slices.Clone(d.SNATHops)
	slices.SortFunc(hops, func(a, b SNATHop) int { return a.Source.Addr().Compare(b.Source.Addr()) })
	for i, hop := range hops {
		l, err := h.LinkByName(hop.Dev)
		if err != nil {
			continue
		}
		dst := &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}
		if hop.Via.Is6() {
			dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		}
		tables[snatTable+i] = netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.IP(hop.Via.AsSlice()), Table: snatTable + i,
			Dst: dst, Protocol: routeProto}
		rules = append(rules, rule{snatPref + i, snatTable + i, hop.Source.Masked()})
	}
	// Tables: exactly the wanted default routes in ours.
	have, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return err
	}
	for _, rt := range have {
		if rt.Protocol != routeProto || rt.Table == unix.RT_TABLE_MAIN || rt.Table >= unix.RT_TABLE_DEFAULT && rt.Table <= unix.RT_TABLE_LOCAL {
			continue
		}
		if w, ok := tables[rt.Table]; ok && w.LinkIndex == rt.LinkIndex && w.Gw.Equal(rt.Gw) {
			delete(tables, rt.Table)
			continue
		}
		rt := rt
		h.RouteDel(&rt)
	}
	for _, t := range slices.Sorted(maps.Keys(tables)) {
		rt := tables[t]
		if err := h.RouteReplace(&rt); err != nil {
			return fmt.Errorf("route in table %d: %w", t, err)
		}
	}
	// Rules: exactly the wanted ones in our priorities.
	want := map[string]rule{}
	key := func(pref, table int, src string) string { return fmt.Sprint(pref, " ", table, " ", src) }
	for _, ru := range rules {
		want[key(ru.pref, ru.table, ru.src.String())] = ru
	}
	existing, err := h.RuleList(netlink.FAMILY_ALL)
	if err != nil {
		return err
	}
	for _, ru := range existing {
		if ru.Priority < fipPref || ru.Priority >= snatPref+1000 {
			continue
		}
		src := ""
		if ru.Src != nil {
			src = ru.Src.String()
		}
		if _, ok := want[key(ru.Priority, ru.Table, src)]; ok {
			delete(want, key(ru.Priority, ru.Table, src))
			continue
		}
		ru := ru
		if err := h.RuleDel(&ru); err != nil && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("rule %d: %w", ru.Priority, err)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		ru := want[k]
		nr := netlink.NewRule()
		nr.Priority, nr.Table = ru.pref, ru.table
		nr.Src = &net.IPNet{IP: net.IP(ru.src.Addr().AsSlice()), Mask: net.CIDRMask(ru.src.Bits(), ru.src.Addr().BitLen())}
		nr.Family = netlink.FAMILY_V4
		if ru.src.Addr().Is6() {
			nr.Family = netlink.FAMILY_V6
		}
		if err := h.RuleAdd(nr); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("rule %s: %w", k, err)
		}
	}
	return setPermanentNeighbors(h, d.Neighbors)
}

// ensureFIPLink makes the router's veth pair into its floating IP
// namespace, addressed, and there the routes of its floating IPs.
func (r *Router) ensureFIPLink(h *netlink.Handle, d *DVR, fips []FloatingIP) error {
	v := dataplane.PortVeth{Tap: FPR(d.Link), Dev: RFP(d.Link)}
	if err := v.Ensure(r.NS, d.FIPNS); err != nil {
		return err
	}
	if err := dataplane.SetAddrs(h, RFP(d.Link), []string{rfpAddr + "/31"}, ""); err != nil {
		return err
	}
	fh, done, err := dataplane.HandleIn(d.FIPNS)
	if err != nil {
		return err
	}
	defer done()
	fpr, err := fh.LinkByName(FPR(d.Link))
	if err != nil {
		return err
	}
	if err := fh.LinkSetUp(fpr); err != nil {
		return err
	}
	if err := dataplane.SetAddrs(fh, FPR(d.Link), []string{fprAddr + "/31"}, ""); err != nil {
		return err
	}
	want := map[string]bool{}
	for _, f := range fips {
		if a, err := netip.ParseAddr(f.Address); err == nil && a.Is4() {
			want[a.String()] = true
		}
	}
	have, err := fh.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: fpr.Attrs().Index}, netlink.RT_FILTER_OIF)
	if err != nil {
		return err
	}
	for _, rt := range have {
		if rt.Protocol != fipRouteProto {
			continue
		}
		if ones, _ := rt.Dst.Mask.Size(); ones == 32 && want[rt.Dst.IP.String()] {
			delete(want, rt.Dst.IP.String())
			continue
		}
		rt := rt
		fh.RouteDel(&rt)
	}
	for _, a := range slices.Sorted(maps.Keys(want)) {
		rt := netlink.Route{LinkIndex: fpr.Attrs().Index, Dst: &net.IPNet{IP: net.ParseIP(a).To4(), Mask: net.CIDRMask(32, 32)},
			Gw: net.ParseIP(rfpAddr), Protocol: fipRouteProto}
		if err := fh.RouteReplace(&rt); err != nil {
			return fmt.Errorf("floating IP %s in %s: %w", a, d.FIPNS, err)
		}
	}
	return nil
}

// setPermanentNeighbors makes the permanent neighbours of each device
// exactly byDev's.
func setPermanentNeighbors(h *netlink.Handle, byDev map[string][]Neighbor) error {
	for _, dev := range slices.Sorted(maps.Keys(byDev)) {
		l, err := h.LinkByName(dev)
		if err != nil {
			continue
		}
		want := map[string]Neighbor{}
		for _, n := range byDev[dev] {
			want[n.IP.String()] = n
		}
		for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			have, err := h.NeighList(l.Attrs().Index, fam)
			if err != nil {
				return err
			}
			for _, e := range have {
				w, ok := want[e.IP.String()]
				if ok && e.State == netlink.NUD_PERMANENT && w.MAC.String() == e.HardwareAddr.String() {
					delete(want, e.IP.String())
					continue
				}
				if !ok && e.State == netlink.NUD_PERMANENT {
					e := e
					h.NeighDel(&e)
				}
			}
		}
		for _, ip := range slices.Sorted(maps.Keys(want)) {
			n := want[ip]
			if err := h.NeighSet(neighbor(l.Attrs().Index, n, netlink.NUD_PERMANENT)); err != nil {
				return fmt.Errorf("neighbor %s on %s: %w", n.IP, dev, err)
			}
		}
	}
	return nil
}

// FIPNamespace is a host's floating IP namespace for one external
// network: the host's port there (fg-), its default route, and ARP
// answered for the floating IPs its routers' links route (proxy ARP).
type FIPNamespace struct {
	NS        string
	hostNS    string
	announced map[string]bool
}

// FIPSpec is what a floating IP namespace is made to match.
type FIPSpec struct {
	Port            Port // the host's port on the external network
	DefaultGateways []net.IP
	// FloatingIPs are announced (gratuitous ARP) when new.
	FloatingIPs []string
}

// OpenFIP returns the floating IP namespace ns, making it when missing.
func OpenFIP(ns, hostNS string) (*FIPNamespace, error) {
	if !dataplane.NamespaceExists(ns) {
		if err := dataplane.AddNamespace(ns, Sysctls...); err != nil {
			return nil, err
		}
	}
	return &FIPNamespace{NS: ns, hostNS: hostNS, announced: map[string]bool{}}, nil
}

// Apply makes the namespace match spec (the routers add their links and
// routes).
func (f *FIPNamespace) Apply(spec FIPSpec) error {
	if err := spec.Port.Ensure(f.NS, f.hostNS); err != nil {
		return err
	}
	h, done, err := dataplane.HandleIn(f.NS)
	if err != nil {
		return err
	}
	defer done()
	if err := dataplane.SetAddrs(h, spec.Port.Dev, spec.Port.Addrs, ""); err != nil {
		return err
	}
	// Proxy ARP answers at once (the kernel's default delays answers to
	// broadcast requests by up to 0.8 s); announcing a floating IP that
	// is not its own needs nonlocal_bind.
	for _, k := range []string{"net.ipv4.conf." + spec.Port.Dev + ".proxy_arp=1", "net.ipv4.neigh." + spec.Port.Dev + ".proxy_delay=0",
		"net.ipv6.conf." + spec.Port.Dev + ".accept_ra=0", "net.ipv4.ip_nonlocal_bind=1"} {
		if err := dataplane.Run("ip", "netns", "exec", f.NS, "sysctl", "-qw", k); err != nil {
			return err
		}
	}
	if err := setRoutes(h, Spec{Gateway: spec.Port.Dev, DefaultGateways: spec.DefaultGateways}); err != nil {
		return err
	}
	now := map[string]bool{}
	var fresh []string
	for _, a := range spec.FloatingIPs {
		now[a] = true
		if !f.announced[a] {
			fresh = append(fresh, a)
		}
	}
	f.announced = now
	if len(fresh) > 0 {
		go f.announce(spec.Port, fresh)
	}
	return nil
}

// announce sends a gratuitous ARP for each address from the port, once
// its tap is on a bridge (a port made this pass is wired after the
// routers; waiting at most 2 s), so that the external network's neighbour
// caches point at this host at once.
func (f *FIPNamespace) announce(p Port, addrs []string) {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var l netlink.Link
		var err error
		if f.hostNS == "" {
			l, err = netlink.LinkByName(p.Tap)
		} else {
			h, done, herr := dataplane.HandleIn(f.hostNS)
			if herr != nil {
				break
			}
			l, err = h.LinkByName(p.Tap)
			done()
		}
		if err == nil && l.Attrs().MasterIndex != 0 && l.Attrs().Flags&net.FlagUp != 0 {
			break
		}
	}
	for _, a := range addrs {
		exec.Command("ip", "netns", "exec", f.NS, "busybox", "arping", "-U", "-c", "1", "-s", a, "-I", p.Dev, a).Run()
	}
}
