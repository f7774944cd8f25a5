// Package netlab builds throw-away test hosts in network namespaces: an
// underlay switch, hosts attached to it, and "VMs" plugged into a host by a
// veth pair the way a hypervisor plugs a tap. Used by the data-plane tests
// and the sandbox; it never touches the namespace it runs in.
package netlab

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os/exec"
	"strings"
)

// Lab is a set of namespaces sharing a name prefix.
type Lab struct {
	Prefix string
	spaces []string
	hosts  []underlayHost
}

// underlayHost is a host's namespace and address on the underlay switch.
type underlayHost struct{ name, ip, mac string }

// New makes a lab with a random prefix (or the given one) and its underlay
// switch.
func New(prefix string) (*Lab, error) {
	if prefix == "" {
		b := make([]byte, 3)
		rand.Read(b)
		prefix = "nt" + hex.EncodeToString(b)
	}
	l := &Lab{Prefix: prefix}
	if _, err := l.NS("ul"); err != nil {
		return nil, err
	}
	if err := l.Run("ul", "ip", "link", "add", "ul", "type", "bridge"); err != nil {
		l.Close()
		return nil, err
	}
	if err := l.Run("ul", "ip", "link", "set", "ul", "up"); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// Name is the full namespace name of short name n.
func (l *Lab) Name(n string) string { return l.Prefix + "-" + n }

// NS adds a namespace with its loopback up.
func (l *Lab) NS(n string) (string, error) {
	name := l.Name(n)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return "", fmt.Errorf("netlab: ip netns add %s: %v %s", name, err, out)
	}
	l.spaces = append(l.spaces, name)
	return name, l.Run(n, "ip", "link", "set", "lo", "up")
}

// Run runs a command inside namespace n.
func (l *Lab) Run(n string, args ...string) error {
	_, err := l.Output(n, args...)
	return err
}

// Output runs a command inside namespace n and returns its output.
func (l *Lab) Output(n string, args ...string) (string, error) {
	full := append([]string{"netns", "exec", l.Name(n)}, args...)
	out, err := exec.Command("ip", full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("netlab: %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Host adds a host namespace on the underlay with address ip/24 on eth0.
func (l *Lab) Host(n, ip string) error {
	if _, err := l.NS(n); err != nil {
		return err
	}
	if out, err := exec.Command("ip", "link", "add", "u-"+n, "netns", l.Name("ul"), "type", "veth",
		"peer", "name", "eth0", "netns", l.Name(n)).CombinedOutput(); err != nil {
		return fmt.Errorf("netlab: veth to %s: %v %s", n, err, out)
	}
	mac := underlayMAC(ip)
	for _, c := range [][]string{{"ul", "ip", "link", "set", "u-" + n, "master", "ul", "up"},
		{n, "ip", "link", "set", "eth0", "address", mac},
		{n, "ip", "addr", "add", ip + "/24", "dev", "eth0"}, {n, "ip", "link", "set", "eth0", "up"}} {
		if err := l.Run(c[0], c[1:]...); err != nil {
			return err
		}
	}
	l.hosts = append(l.hosts, underlayHost{name: n, ip: ip, mac: mac})
	return nil
}

// underlayMAC is a host's underlay MAC, derived from its address so that
// it is known before the host answers ARP.
func underlayMAC(ip string) string {
	v4 := net.ParseIP(ip).To4()
	if v4 == nil {
		return ""
	}
	return fmt.Sprintf("02:4e:%02x:%02x:%02x:%02x", v4[0], v4[1], v4[2], v4[3])
}

// StaticUnderlay gives every host a permanent neighbour entry for every
// other host's underlay address, as a fabric with static ARP would. All the
// lab's namespaces share one kernel, whose table of dynamic neighbour
// entries is limited for the whole machine (net.ipv4.neigh.default
// .gc_thresh3, 1,024 by default); past it new entries wait for garbage
// collection and traffic stalls for seconds. Real hosts each resolve their
// own peers, so with many hosts the lab resolves the underlay statically
// (permanent entries are exempt from the limit) and keeps the table for
// what the VMs resolve. Hosts added afterwards are not included.
func (l *Lab) StaticUnderlay() error {
	for _, h := range l.hosts {
		var b strings.Builder
		for _, o := range l.hosts {
			if o.name != h.name {
				fmt.Fprintf(&b, "neigh replace %s lladdr %s nud permanent dev eth0\n", o.ip, o.mac)
			}
		}
		cmd := exec.Command("ip", "-n", l.Name(h.name), "-batch", "-")
		cmd.Stdin = strings.NewReader(b.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("netlab: static underlay on %s: %v %s", h.name, err, out)
		}
	}
	return nil
}

// Physical plugs host n into the lab's physical network switch as
// interface ifname: flat and VLAN provider networks ride on it.
func (l *Lab) Physical(n, ifname string) error { return l.Attach(n, ifname, "phys") }

// Attach plugs host n into the named switch (a bridge made on first use in
// the underlay namespace) as interface ifname.
func (l *Lab) Attach(n, ifname, sw string) error {
	if l.Run("ul", "ip", "link", "show", sw) != nil {
		if err := l.Run("ul", "ip", "link", "add", sw, "type", "bridge"); err != nil {
			return err
		}
		if err := l.Run("ul", "ip", "link", "set", sw, "up"); err != nil {
			return err
		}
	}
	end := sw[:min(2, len(sw))] + "-" + n
	if out, err := exec.Command("ip", "link", "add", end, "netns", l.Name("ul"), "type", "veth",
		"peer", "name", ifname, "netns", l.Name(n)).CombinedOutput(); err != nil {
		return fmt.Errorf("netlab: link from %s to switch %s: %v %s", n, sw, err, out)
	}
	return l.Run("ul", "ip", "link", "set", end, "master", sw, "up")
}

// VM adds a namespace whose eth0 (with mac and mtu) is plugged into host as
// the device tap; ipCIDR, when given, is configured statically.
func (l *Lab) VM(n, host, tap, mac string, mtu int, ipCIDR string) error {
	if _, err := l.NS(n); err != nil {
		return err
	}
	if out, err := exec.Command("ip", "link", "add", tap, "netns", l.Name(host), "type", "veth",
		"peer", "name", "eth0", "netns", l.Name(n)).CombinedOutput(); err != nil {
		return fmt.Errorf("netlab: veth %s: %v %s", tap, err, out)
	}
	if err := l.Run(n, "ip", "link", "set", "eth0", "address", mac, "mtu", fmt.Sprint(mtu), "up"); err != nil {
		return err
	}
	if ipCIDR != "" {
		return l.Run(n, "ip", "addr", "add", ipCIDR, "dev", "eth0")
	}
	return nil
}

// Close removes every namespace of the lab, including those its agents
// made under its prefix (DHCP namespaces), and so every device in them.
func (l *Lab) Close() {
	for i := len(l.spaces) - 1; i >= 0; i-- {
		exec.Command("ip", "netns", "del", l.spaces[i]).Run()
	}
	l.spaces = nil
	for _, n := range l.Namespaces() {
		exec.Command("ip", "netns", "del", n).Run()
	}
}

// Namespaces lists the existing namespaces under the lab's prefix.
func (l *Lab) Namespaces() []string {
	out, _ := exec.Command("ip", "netns", "list").Output()
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], l.Prefix+"-") {
			names = append(names, f[0])
		}
	}
	return names
}
