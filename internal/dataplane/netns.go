package dataplane

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Service namespaces: a DHCP server's or a router's own network namespace
// beside the host's, holding the router end of veth pairs whose host end is
// a port's tap, wired into its network's bridge like any port.

// Run runs a command, its output in the error when it fails.
func Run(args ...string) error {
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// NamespaceExists reports whether the named namespace exists.
func NamespaceExists(ns string) bool {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return false
	}
	h.Close()
	return true
}

// NamespaceID identifies a namespace instance ("" when there is none): a
// namespace made again under the same name has another.
func NamespaceID(ns string) string {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return ""
	}
	defer h.Close()
	return h.UniqueId()
}

// AddNamespace makes a namespace with the given sysctls set (k=v).
func AddNamespace(ns string, sysctls ...string) error {
	if err := Run("ip", "netns", "add", ns); err != nil {
		return err
	}
	for _, k := range sysctls {
		if err := Run("ip", "netns", "exec", ns, "sysctl", "-qw", k); err != nil {
			return err
		}
	}
	return nil
}

// DeleteNamespace removes a namespace (and the devices in it, and so the
// host ends of their veth pairs).
func DeleteNamespace(ns string) { Run("ip", "netns", "del", ns) }

// SweepNamespaces deletes the namespaces named with prefix that are not
// in keep, calling gone first for each.
func SweepNamespaces(prefix string, keep map[string]bool, gone func(ns string)) {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) && !keep[f[0]] {
			if gone != nil {
				gone(f[0])
			}
			DeleteNamespace(f[0])
		}
	}
}

// InNamespaceNamed runs fn on a thread inside the named namespace.
func InNamespaceNamed(ns string, fn func() error) error {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	return InNamespace(h, fn)
}

// Open runs open on a thread inside namespace ns and returns what it made
// (sockets stay in the namespace they are made in).
func Open[T any](ns string, open func() (T, error)) (T, error) {
	var out T
	err := InNamespaceNamed(ns, func() error {
		var err error
		out, err = open()
		return err
	})
	return out, err
}

// HandleIn opens a netlink handle inside namespace ns; done closes it.
func HandleIn(ns string) (*netlink.Handle, func(), error) {
	nh, err := netns.GetFromName(ns)
	if err != nil {
		return nil, nil, err
	}
	h, err := netlink.NewHandleAt(nh)
	if err != nil {
		nh.Close()
		return nil, nil, err
	}
	return h, func() { h.Close(); nh.Close() }, nil
}

// PortVeth is a port plugged into a service namespace: Tap is its host end
// (in the host's namespace hostNS, "" for this process's), Dev its end in
// the service namespace, with the port's MAC and the network's MTU.
type PortVeth struct {
	Tap, Dev string
	MAC      string
	MTU      int
}

// Ensure makes the veth pair (if missing) with its MAC and MTU, both ends
// up.
func (v PortVeth) Ensure(ns, hostNS string) error {
	h, done, err := HandleIn(ns)
	if err != nil {
		return err
	}
	defer done()
	l, err := h.LinkByName(v.Dev)
	if err != nil {
		args := []string{"ip", "link", "add", v.Tap}
		if hostNS != "" {
			args = append(args, "netns", hostNS)
		}
		args = append(args, "type", "veth", "peer", "name", v.Dev, "netns", ns)
		if err := Run(args...); err != nil {
			return err
		}
		if l, err = h.LinkByName(v.Dev); err != nil {
			return err
		}
	}
	if v.MAC != "" {
		mac, err := net.ParseMAC(v.MAC)
		if err != nil {
			return err
		}
		if l.Attrs().HardwareAddr.String() != mac.String() {
			if err := h.LinkSetHardwareAddr(l, mac); err != nil {
				return err
			}
		}
	}
	if v.MTU > 0 && l.Attrs().MTU != v.MTU {
		if err := h.LinkSetMTU(l, v.MTU); err != nil {
			return err
		}
	}
	if lo, err := h.LinkByName("lo"); err == nil {
		h.LinkSetUp(lo)
	}
	return h.LinkSetUp(l)
}

// ServiceNamespace makes namespace ns afresh (a leftover is replaced) with
// one port plugged in as eth0, its tap in hostNS, carrying the port's MAC,
// the network's MTU and the port's addresses (CIDRs): a DHCP server's.
// The API owns these addresses, so there is no duplicate address
// detection, and the link-local address answers DHCPv6 at once.
func ServiceNamespace(ns, hostNS, tap, mac string, mtu int, addrs []string) error {
	DeleteNamespace(ns)
	if err := AddNamespace(ns, "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0",
		"net.ipv6.conf.default.accept_ra=0"); err != nil {
		return err
	}
	if err := (PortVeth{Tap: tap, Dev: "eth0", MAC: mac, MTU: mtu}).Ensure(ns, hostNS); err != nil {
		return err
	}
	for _, cidr := range addrs {
		if err := Run("ip", "-n", ns, "addr", "add", cidr, "dev", "eth0", "nodad"); err != nil {
			return err
		}
	}
	return nil
}

// SetAddrs makes dev's global addresses exactly cidrs (IPv6 ones without
// duplicate address detection: the API owns them), leaving alone those
// others manage (except: an address as CIDR, or "").
func SetAddrs(h *netlink.Handle, dev string, cidrs []string, except string) error {
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
	exceptKey := ""
	if a, err := netlink.ParseAddr(except); except != "" && err == nil {
		exceptKey = a.IPNet.String()
	}
	have, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return err
	}
	for _, a := range have {
		if a.IP.IsLinkLocalUnicast() || except != "" && a.IPNet.String() == exceptKey {
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
