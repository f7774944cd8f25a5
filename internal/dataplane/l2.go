// Package dataplane wires a host's kernel for its ports: a bridge per
// network, VXLAN with unicast forwarding entries for the other hosts (no
// multicast, no learning), and each port's tap device on its bridge. Every
// call is idempotent (it makes the kernel match the request, whatever is
// there), so an agent can reconcile after any restart without flushing.
package dataplane

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"sigs.k8s.io/knftables"
)

// VXLANPort is the IANA VXLAN UDP port.
const VXLANPort = 4789

// Host is one host's kernel, reached through its network namespace.
type Host struct {
	nl *netlink.Handle
	ns netns.NsHandle
	// VTEP is this host's tunnel endpoint address on the underlay.
	VTEP net.IP
	// Physnets maps physical network names to this host's interfaces
	// (interface_mappings) for flat and VLAN networks.
	Physnets map[string]string

	// What the filters last wrote (nil: unknown, written whole next time)
	// and the filtered ports' mark numbers.
	nftBridge, nftInet *nftState
	marks              map[string]uint32
	nftb, nfti, nftd   knftables.Interface
	nft                *nftables.Conn // netlink, for remote groups' sets
	closed             bool

	// wired are the networks wired here (their conntrack zones), zones
	// their zone numbers, grants what each filtered port's rules allowed
	// at the last SetFilters.
	wired  map[string]bool
	zones  map[string]uint16
	grants map[string]grant
	// filterIn is what the filters were last built from (nil: rebuild).
	filterIn *filterInput
	// tapEvents counts tap device events while tapWatch (see TapEpoch).
	tapEvents atomic.Uint64
	tapWatch  atomic.Bool
}

// OpenHost opens the host whose kernel is the named network namespace
// ("" for the namespace this process runs in).
func OpenHost(nsName string, vtep net.IP) (*Host, error) {
	var ns netns.NsHandle
	var err error
	if nsName == "" {
		ns, err = netns.Get()
	} else {
		ns, err = netns.GetFromName(nsName)
	}
	if err != nil {
		return nil, fmt.Errorf("dataplane: namespace %q: %w", nsName, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("dataplane: netlink in %q: %w", nsName, err)
	}
	return &Host{nl: h, ns: ns, VTEP: vtep, wired: map[string]bool{}}, nil
}

// Close releases the handles. A closed host refuses every call: netlink
// would otherwise go on with sockets of the caller's own namespace (the
// machine's, for a test), not the host's.
func (h *Host) Close() {
	h.closed = true
	if h.nft != nil {
		h.nft.CloseLasting()
	}
	h.nl.Close()
	h.ns.Close()
}

var errClosed = errors.New("dataplane: the host is closed")

// Network is the L2 segment of one network on this host.
type Network struct {
	ID              string
	Type            string // vxlan, vlan or flat
	SegmentationID  int
	PhysicalNetwork string
	MTU             int
}

// BridgeName is the bridge of a network (as the Linux driver's binding says).
func BridgeName(networkID string) string { return "brq" + short(networkID) }

// TapName is the host side of a port's device.
func TapName(portID string) string { return "tap" + short(portID) }

func vxlanName(vni int) string { return fmt.Sprintf("vxlan-%d", vni) }

func short(id string) string {
	if len(id) > 11 {
		return id[:11]
	}
	return id
}

// EnsureNetwork makes the network's bridge and, for VXLAN, its tunnel
// device, with the network's MTU, all up.
func (h *Host) EnsureNetwork(n Network) error {
	if h.closed {
		return errClosed
	}
	switch n.Type {
	case "vxlan", "flat", "vlan":
	default:
		return fmt.Errorf("dataplane: network %s: type %q cannot be wired by this driver", n.ID, n.Type)
	}
	if _, ok := h.Physnets[n.PhysicalNetwork]; n.Type != "vxlan" && !ok {
		return fmt.Errorf("dataplane: network %s: no interface for physical network %q on this host", n.ID, n.PhysicalNetwork)
	}
	h.wired[n.ID] = true
	br, err := h.ensureLink(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: BridgeName(n.ID), MTU: n.MTU}})
	if err != nil {
		return err
	}
	if n.Type != "vxlan" {
		return h.ensurePhysical(n, br)
	}
	want := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: vxlanName(n.SegmentationID), MTU: n.MTU},
		VxlanId:   n.SegmentationID, SrcAddr: h.VTEP, Port: VXLANPort, Learning: false, Proxy: true,
	}
	if l, err := h.nl.LinkByName(want.Name); err == nil {
		// A device made without the ARP proxy (by an older agent) is made again.
		if old, ok := l.(*netlink.Vxlan); ok && (!old.Proxy || old.Learning || old.VxlanId != n.SegmentationID) {
			if err := h.nl.LinkDel(l); err != nil {
				return fmt.Errorf("dataplane: delete %s: %w", want.Name, err)
			}
		}
	}
	vx, err := h.ensureLink(want)
	if err != nil {
		return err
	}
	if err := h.nl.LinkSetMaster(vx, br); err != nil {
		return fmt.Errorf("dataplane: %s into %s: %w", vx.Attrs().Name, br.Attrs().Name, err)
	}
	for _, l := range []netlink.Link{br, vx} {
		if err := h.nl.LinkSetMTU(l, n.MTU); err != nil {
			return fmt.Errorf("dataplane: mtu of %s: %w", l.Attrs().Name, err)
		}
		if err := h.nl.LinkSetUp(l); err != nil {
			return fmt.Errorf("dataplane: up %s: %w", l.Attrs().Name, err)
		}
	}
	return nil
}

// ensureLink returns the link of that name, creating it if missing.
func (h *Host) ensureLink(want netlink.Link) (netlink.Link, error) {
	name := want.Attrs().Name
	if l, err := h.nl.LinkByName(name); err == nil {
		if l.Type() != want.Type() {
			return nil, fmt.Errorf("dataplane: %s exists as a %s, want %s", name, l.Type(), want.Type())
		}
		return l, nil
	}
	if err := h.nl.LinkAdd(want); err != nil && !errors.Is(err, syscall.EEXIST) {
		return nil, fmt.Errorf("dataplane: add %s: %w", name, err)
	}
	return h.nl.LinkByName(name)
}

// RemoveNetwork deletes the network's devices (ports must be gone; the
// physical network's trunk stays for its other networks).
func (h *Host) RemoveNetwork(n Network) error {
	if h.closed {
		return errClosed
	}
	delete(h.wired, n.ID)
	netSide, _ := patchNames(n.ID)
	names := []string{netSide, BridgeName(n.ID)}
	if n.Type == "vxlan" {
		names = []string{vxlanName(n.SegmentationID), BridgeName(n.ID)}
	}
	for _, name := range names {
		if l, err := h.nl.LinkByName(name); err == nil {
			if err := h.nl.LinkDel(l); err != nil {
				return fmt.Errorf("dataplane: delete %s: %w", name, err)
			}
		}
	}
	return nil
}

// EnsurePort puts the port's tap device (made by the hypervisor, or the
// sandbox) on its network's bridge with the network's MTU, up.
func (h *Host) EnsurePort(portID string, n Network) error {
	if h.closed {
		return errClosed
	}
	tap, err := h.nl.LinkByName(TapName(portID))
	if err != nil {
		return fmt.Errorf("dataplane: port %s has no device %s: %w", portID, TapName(portID), err)
	}
	br, err := h.nl.LinkByName(BridgeName(n.ID))
	if err != nil {
		return fmt.Errorf("dataplane: network %s has no bridge: %w", n.ID, err)
	}
	if tap.Attrs().MasterIndex != br.Attrs().Index {
		if err := h.nl.LinkSetMaster(tap, br); err != nil {
			return fmt.Errorf("dataplane: %s into %s: %w", tap.Attrs().Name, br.Attrs().Name, err)
		}
	}
	if tap.Attrs().MTU != n.MTU {
		if err := h.nl.LinkSetMTU(tap, n.MTU); err != nil {
			return fmt.Errorf("dataplane: mtu of %s: %w", tap.Attrs().Name, err)
		}
	}
	return h.nl.LinkSetUp(tap)
}

// PortWired reports whether the port's device is on its bridge and up.
func (h *Host) PortWired(portID string, n Network) bool {
	if h.closed {
		return false
	}
	tap, err := h.nl.LinkByName(TapName(portID))
	if err != nil {
		return false
	}
	br, err := h.nl.LinkByName(BridgeName(n.ID))
	return err == nil && tap.Attrs().MasterIndex == br.Attrs().Index && tap.Attrs().Flags&net.FlagUp != 0
}

// Peer is a port of the same network on another host: its MAC, the
// addresses behind that MAC (prefixes are skipped: only single addresses
// can be answered for), and its host's tunnel endpoint.
type Peer struct {
	MAC  net.HardwareAddr
	IPs  []net.IP
	VTEP net.IP
}

var zeroMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

// SetPeers makes the VXLAN forwarding table exactly the given peers: one
// static entry per remote MAC (known unicast goes straight to its host) and
// one all-zero entry per remote host (broadcast is replicated to each). The
// device's neighbour table gets each remote address with its MAC (and each
// remote MAC's EUI-64 link-local address), so ARP requests and IPv6
// neighbour solicitations for remote ports are answered on this host and
// never cross the tunnels. Entries for peers that went away are removed.
func (h *Host) SetPeers(n Network, peers []Peer) error {
	if h.closed {
		return errClosed
	}
	if n.Type != "vxlan" {
		return nil // flat: the physical network forwards by learning
	}
	vx, err := h.nl.LinkByName(vxlanName(n.SegmentationID))
	if err != nil {
		return fmt.Errorf("dataplane: network %s has no vxlan device: %w", n.ID, err)
	}
	type key struct{ mac, dst string }
	want := map[key]netlink.Neigh{}
	add := func(mac net.HardwareAddr, dst net.IP) {
		want[key{mac.String(), dst.String()}] = netlink.Neigh{LinkIndex: vx.Attrs().Index, Family: syscall.AF_BRIDGE,
			State: netlink.NUD_PERMANENT, Flags: netlink.NTF_SELF, HardwareAddr: mac, IP: dst}
	}
	for _, p := range peers {
		if p.VTEP.Equal(h.VTEP) {
			continue
		}
		add(p.MAC, p.VTEP)
		add(zeroMAC, p.VTEP)
	}
	have, err := h.nl.NeighList(vx.Attrs().Index, syscall.AF_BRIDGE)
	if err != nil {
		return fmt.Errorf("dataplane: fdb of %s: %w", vx.Attrs().Name, err)
	}
	for _, e := range have {
		if e.IP == nil || e.Flags&netlink.NTF_SELF == 0 {
			continue
		}
		k := key{e.HardwareAddr.String(), e.IP.String()}
		if _, ok := want[k]; ok {
			delete(want, k)
			continue
		}
		if err := h.delNeigh(e); err != nil {
			return fmt.Errorf("dataplane: fdb delete %s: %w", k.mac, err)
		}
	}
	for _, e := range want {
		e := e
		if e.HardwareAddr.String() == zeroMAC.String() {
			err = h.nl.NeighAppend(&e)
		} else {
			err = h.nl.NeighSet(&e)
		}
		if err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("dataplane: fdb add %s via %s: %w", e.HardwareAddr, e.IP, err)
		}
	}
	return h.setProxyNeighbours(vx, peers)
}

// delNeigh deletes a stale neighbour or FDB entry; one already gone is
// no error.
func (h *Host) delNeigh(e netlink.Neigh) error {
	if err := h.nl.NeighDel(&e); err != nil && !errors.Is(err, syscall.ENOENT) {
		return err
	}
	return nil
}

// setProxyNeighbours makes the VXLAN device's ARP/ND table exactly the
// remote peers' addresses.
func (h *Host) setProxyNeighbours(vx netlink.Link, peers []Peer) error {
	want := map[string]netlink.Neigh{}
	add := func(ip net.IP, mac net.HardwareAddr) {
		fam := netlink.FAMILY_V4
		if ip.To4() == nil {
			fam = netlink.FAMILY_V6
		}
		want[ip.String()] = netlink.Neigh{LinkIndex: vx.Attrs().Index, Family: fam, State: netlink.NUD_PERMANENT, IP: ip, HardwareAddr: mac}
	}
	for _, p := range peers {
		if p.VTEP.Equal(h.VTEP) {
			continue
		}
		for _, ip := range p.IPs {
			add(ip, p.MAC)
		}
		if ll := LinkLocal(p.MAC.String()); ll != "" {
			add(net.ParseIP(ll), p.MAC)
		}
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		have, err := h.nl.NeighList(vx.Attrs().Index, fam)
		if err != nil {
			return fmt.Errorf("dataplane: neighbours of %s: %w", vx.Attrs().Name, err)
		}
		for _, e := range have {
			if e.State&netlink.NUD_PERMANENT == 0 {
				continue
			}
			if w, ok := want[e.IP.String()]; ok && w.HardwareAddr.String() == e.HardwareAddr.String() {
				delete(want, e.IP.String())
				continue
			}
			if err := h.delNeigh(e); err != nil {
				return fmt.Errorf("dataplane: neighbour delete %s: %w", e.IP, err)
			}
		}
	}
	for _, e := range want {
		e := e
		if err := h.nl.NeighSet(&e); err != nil {
			return fmt.Errorf("dataplane: neighbour %s on %s: %w", e.IP, vx.Attrs().Name, err)
		}
	}
	return nil
}

// Prune deletes the bridges and VXLAN devices of networks not in keep:
// what was deleted while the agent was away goes when it comes back.
func (h *Host) Prune(keep []Network) error {
	if h.closed {
		return errClosed
	}
	want := map[string]bool{}
	h.wired = map[string]bool{}
	for _, n := range keep {
		h.wired[n.ID] = true
		want[BridgeName(n.ID)] = true
		switch n.Type {
		case "vxlan":
			want[vxlanName(n.SegmentationID)] = true
		case "flat", "vlan":
			netSide, _ := patchNames(n.ID)
			want[netSide] = true
			want[TrunkName(n.PhysicalNetwork)] = true
		}
	}
	links, err := h.nl.LinkList()
	if err != nil {
		return fmt.Errorf("dataplane: list links: %w", err)
	}
	for _, l := range links {
		name := l.Attrs().Name
		ours := l.Type() == "bridge" && (strings.HasPrefix(name, "brq") || strings.HasPrefix(name, "brp")) ||
			l.Type() == "vxlan" && strings.HasPrefix(name, "vxlan-") || isPatch(l)
		if ours && !want[name] {
			if err := h.nl.LinkDel(l); err != nil {
				return fmt.Errorf("dataplane: delete %s: %w", name, err)
			}
		}
	}
	return nil
}

// WatchTaps calls fn whenever a port device (tap…) appears or changes in
// the host, until done closes: a VM plugged in is wired at once, without
// waiting for an API change.
func (h *Host) WatchTaps(done <-chan struct{}, fn func(name string)) error {
	if h.closed {
		return errClosed
	}
	ch := make(chan netlink.LinkUpdate, 64)
	ns := h.ns
	if err := netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{Namespace: &ns}); err != nil {
		return fmt.Errorf("dataplane: link events: %w", err)
	}
	go func() {
		for u := range ch {
			name := u.Attrs().Name
			if !strings.HasPrefix(name, "tap") {
				continue
			}
			h.tapEvents.Add(1)
			if u.Header.Type == syscall.RTM_NEWLINK {
				fn(name)
			}
		}
		h.tapWatch.Store(false)
	}()
	h.tapWatch.Store(true)
	return nil
}

// TapEpoch counts the events of the host's tap devices (plugged, changed,
// removed) while WatchTaps runs; ok is false when nothing watches them, so
// a wired port may have changed unseen.
func (h *Host) TapEpoch() (epoch uint64, ok bool) {
	return h.tapEvents.Load(), h.tapWatch.Load()
}
