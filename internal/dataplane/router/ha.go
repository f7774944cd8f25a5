package router

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"neutrino/internal/dataplane"
)

// A highly available router runs on several hosts at once, one instance
// each, and its instances elect an active one with VRRP (keepalived in
// each router namespace, speaking over the instance's HA port on the
// project's HA network). The active instance holds the router's addresses
// and routes; keepalived adds them when it becomes master, announces them
// (gratuitous ARP, unsolicited neighbour advertisements) and removes them
// when it steps down. A standby holds none: its ports are wired and its
// NAT rules written, so that taking over is only the addresses moving.
//
// Its state is read from the kernel, not from keepalived: the instance is
// active while the VRRP address (169.254.0.VRID) is on its HA device.
//
// keepalived killed outright (SIGKILL) leaves its addresses behind, and
// the router would answer on two hosts. Whoever runs the instance fences
// it: when keepalived is found dead, every address and route it manages is
// removed before it is started again, as a standby.

// HA makes the router one instance of a VRRP group.
type HA struct {
	// Port is the HA port: Dev in the router namespace, Tap on the host.
	Port dataplane.PortVeth
	// Addr is the instance's own address on the HA network (CIDR).
	Addr string
	// VRID is the group's virtual router id (1-255), unique on its HA
	// network.
	VRID int
	// Advert is the VRRP advertisement interval (VRRPv3: hundredths of a
	// second). A standby takes over about three intervals after the last
	// advertisement of a master that died; a master that stops in order
	// hands over at once.
	Advert time.Duration
	// Dir keeps the instance's keepalived configuration, pid files and log.
	Dir string
}

// The states of an HA router instance, as Neutron reports them.
const (
	HAActive  = "active"
	HAStandby = "standby"
	HAFault   = "fault"
)

// VIP is the address that marks the active instance (on its HA device).
func (ha HA) VIP() string { return fmt.Sprintf("169.254.0.%d/24", ha.VRID) }

// keepalived is the VRRP daemon of one router instance.
type keepalived struct {
	dir  string
	conf string // the configuration it runs with
	pid  int
	// done is closed when the daemon exits (watched by wait or, for a
	// daemon adopted from an earlier agent, by polling).
	done chan struct{}
}

const (
	kaConf = "keepalived.conf"
	kaPID  = "keepalived.pid"
	kaVRRP = "vrrp.pid"
	kaLog  = "keepalived.log"
)

// applyHA makes the instance match spec: its HA port and own address, then
// keepalived running with the router's addresses and routes (started
// fenced when it was not running, reloaded when they changed).
func (r *Router) applyHA(h *netlink.Handle, spec Spec, addrs map[string][]string) error {
	ha := spec.HA
	if ha.VRID < 1 || ha.VRID > 255 {
		return fmt.Errorf("ha: virtual router id %d is not 1-255", ha.VRID)
	}
	if err := ha.Port.Ensure(r.NS, r.hostNS); err != nil {
		return err
	}
	// The HA device keeps its own address; the VIP is keepalived's.
	if err := dataplane.SetAddrs(h, ha.Port.Dev, []string{ha.Addr}, ha.VIP()); err != nil {
		return err
	}
	if !r.quietMLD {
		// Taking an address away makes the kernel leave its multicast
		// groups with MLD reports, sent from the device's MAC up to a
		// second later: a standby (or an instance just stopped) would
		// then draw the router's traffic to itself on learning switches.
		// The router's ports (a distributed router's SNAT ports too) send
		// no MLD (no querier runs on tenant networks; unregistered
		// multicast is flooded).
		rules := "table ip6 neutrino-ha {}\nflush table ip6 neutrino-ha\ntable ip6 neutrino-ha {\n" +
			"  chain out {\n    type filter hook output priority 0;\n" +
			"    oifname \"qr-*\" icmpv6 type { mld-listener-report, mld-listener-done, mld2-listener-report } drop\n" +
			"    oifname \"qg-*\" icmpv6 type { mld-listener-report, mld-listener-done, mld2-listener-report } drop\n" +
			"    oifname \"sg-*\" icmpv6 type { mld-listener-report, mld-listener-done, mld2-listener-report } drop\n  }\n}\n"
		cmd := exec.Command("ip", "netns", "exec", r.NS, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(rules)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("ha: nft: %v %s", err, out)
		}
		r.quietMLD = true
	}
	conf := keepalivedConfig(r.NS, *ha, spec, addrs)
	if err := os.MkdirAll(ha.Dir, 0o700); err != nil {
		return err
	}
	// An instance whose keepalived just died starts again only once a
	// standby has had the time to take over (three advertisements and
	// the skew), so that it comes back as a standby rather than racing
	// the others for master.
	r.haMu.Lock()
	wait := time.Until(r.faultAt.Add(4*max(ha.Advert, 10*time.Millisecond) + 100*time.Millisecond))
	r.haMu.Unlock()
	if wait > 0 {
		time.Sleep(wait)
	}
	r.haMu.Lock()
	defer r.haMu.Unlock()
	r.haSpec = spec
	if r.ka == nil {
		r.ka = adopt(ha.Dir)
		if r.ka != nil {
			go r.watchKeepalived(r.ka)
		}
	}
	if r.ka != nil && !r.ka.alive() {
		r.ka = nil
	}
	if r.ka != nil {
		if r.ka.conf == conf {
			return nil
		}
		if err := os.WriteFile(filepath.Join(ha.Dir, kaConf), []byte(conf), 0o600); err != nil {
			return err
		}
		r.ka.conf = conf
		return syscall.Kill(r.ka.pid, syscall.SIGHUP) // reload
	}
	// Not running: whatever an earlier keepalived left goes first.
	if err := r.fence(h, spec, ha); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(ha.Dir, kaConf), []byte(conf), 0o600); err != nil {
		return err
	}
	ka, err := startKeepalived(r.NS, ha.Dir)
	if err != nil {
		return err
	}
	ka.conf = conf
	r.ka = ka
	go r.watchKeepalived(ka)
	return nil
}

// keepalivedConfig is the instance's configuration: one VRRP instance on
// the HA device, starting as a backup with equal priority everywhere and
// no preemption (a returning instance stays standby), its VIP marking the
// master, the router's addresses and IPv6 link-local addresses (excluded
// from the advertisements), and its routes.
func keepalivedConfig(ns string, ha HA, spec Spec, addrs map[string][]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global_defs {\n    router_id %s\n    vrrp_version 3\n}\n\n", ns)
	advert := float64(max(ha.Advert, 10*time.Millisecond).Milliseconds()) / 1000
	fmt.Fprintf(&b, "vrrp_instance VR_%d {\n    state BACKUP\n    interface %s\n    virtual_router_id %d\n    priority 50\n    nopreempt\n"+
		"    advert_int %s\n    garp_master_delay 5\n    garp_master_repeat 3\n", ha.VRID, ha.Port.Dev, ha.VRID, strconv.FormatFloat(advert, 'f', -1, 64))
	fmt.Fprintf(&b, "    track_interface {\n        %s\n    }\n", ha.Port.Dev)
	fmt.Fprintf(&b, "    virtual_ipaddress {\n        %s dev %s\n    }\n", ha.VIP(), ha.Port.Dev)
	b.WriteString("    virtual_ipaddress_excluded {\n")
	for _, dev := range slices.Sorted(maps.Keys(addrs)) {
		for _, a := range addrs[dev] {
			fmt.Fprintf(&b, "        %s dev %s\n", a, dev)
		}
	}
	for _, p := range spec.Ports {
		if ll := dataplane.LinkLocal(p.MAC); ll != "" {
			fmt.Fprintf(&b, "        %s/64 dev %s scope link\n", ll, p.Dev)
		}
	}
	b.WriteString("    }\n")
	var routes []string
	if spec.Gateway != "" {
		for _, gw := range defaultGateways(spec) {
			dst := "0.0.0.0/0"
			if gw.To4() == nil {
				dst = "::/0"
			}
			routes = append(routes, fmt.Sprintf("%s via %s dev %s", dst, gw, spec.Gateway))
		}
	}
	for _, e := range spec.Routes {
		if _, _, err := net.ParseCIDR(e.Destination); err == nil && net.ParseIP(e.NextHop) != nil {
			routes = append(routes, fmt.Sprintf("%s via %s", e.Destination, e.NextHop))
		}
	}
	if len(routes) > 0 {
		b.WriteString("    virtual_routes {\n")
		for _, rt := range routes {
			fmt.Fprintf(&b, "        %s\n", rt)
		}
		b.WriteString("    }\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// startKeepalived starts keepalived in namespace ns, in a session of its
// own: it outlives the agent that started it (an agent's restart moves
// nothing), and the next agent adopts it from its pid file.
func startKeepalived(ns, dir string) (*keepalived, error) {
	logf, err := os.OpenFile(filepath.Join(dir, kaLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	// The caller found none running here: pid files left by one killed
	// would stop this one ("daemon is already running") while its VRRP
	// process waits to be reaped by whoever inherited it.
	for _, f := range []string{kaPID, kaVRRP} {
		os.Remove(filepath.Join(dir, f))
	}
	// ip netns exec becomes keepalived (it execs): the pid is the daemon's.
	cmd := exec.Command("ip", "netns", "exec", ns, "keepalived", "--dont-fork", "--log-console", "--log-detail", "--vrrp",
		"--use-file", filepath.Join(dir, kaConf), "--pid", filepath.Join(dir, kaPID), "--vrrp_pid", filepath.Join(dir, kaVRRP))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("ha: keepalived: %w", err)
	}
	ka := &keepalived{dir: dir, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(ka.done)
	}()
	return ka, nil
}

// adopt finds the keepalived an earlier agent started for dir, if it still
// runs.
func adopt(dir string) *keepalived {
	pid := readPID(filepath.Join(dir, kaPID))
	if pid == 0 || !isKeepalived(pid, dir) {
		return nil
	}
	ka := &keepalived{dir: dir, pid: pid, done: make(chan struct{})}
	if conf, err := os.ReadFile(filepath.Join(dir, kaConf)); err == nil {
		ka.conf = string(conf)
	}
	go func() {
		for isKeepalived(pid, dir) {
			time.Sleep(50 * time.Millisecond)
		}
		close(ka.done)
	}()
	return ka
}

func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// isKeepalived reports whether pid is a live keepalived of dir's.
func isKeepalived(pid int, dir string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		s := string(st)
		if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 0 && f[0] == "Z" {
			return false // exited, not yet reaped
		}
	}
	return strings.Contains(string(b), "keepalived") && strings.Contains(string(b), dir)
}

func (ka *keepalived) alive() bool {
	select {
	case <-ka.done:
		return false
	default:
		return true
	}
}

// watchKeepalived fences the instance as soon as its keepalived exits
// without being stopped (killed, crashed): the instance is then in fault
// (HAState) until the next Apply starts keepalived again.
func (r *Router) watchKeepalived(ka *keepalived) {
	<-ka.done
	r.haMu.Lock()
	stopped := r.ka != ka
	var spec Spec
	if !stopped {
		r.ka, r.faultAt = nil, time.Now()
		spec = r.haSpec
	}
	r.haMu.Unlock()
	if stopped {
		return
	}
	// Its VRRP child may outlive it: it goes too, then its addresses.
	if pid := readPID(filepath.Join(ka.dir, kaVRRP)); pid != 0 && isKeepalived(pid, ka.dir) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if h, done, err := dataplane.HandleIn(r.NS); err == nil {
		r.fence(h, spec, spec.HA)
		done()
	}
}

// fence removes what keepalived manages from the instance: the router's
// addresses (link-local ones included), the VIP, and every route not made
// by the kernel itself.
func (r *Router) fence(h *netlink.Handle, spec Spec, ha *HA) error {
	if ha == nil {
		return nil
	}
	links, err := h.LinkList()
	if err != nil {
		return err
	}
	for _, l := range links {
		name := l.Attrs().Name
		routerDev := strings.HasPrefix(name, "qr-") || strings.HasPrefix(name, "qg-")
		if !routerDev && name != ha.Port.Dev {
			continue
		}
		have, err := h.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return err
		}
		for _, a := range have {
			if !routerDev && a.IPNet.String() != mustPrefix(ha.VIP()) {
				continue // the HA device keeps its own address
			}
			a := a
			if err := h.AddrDel(l, &a); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
				return err
			}
		}
	}
	routes, err := h.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return err
	}
	for _, rt := range routes {
		if rt.Protocol != syscall.RTPROT_KERNEL && rt.Table == syscall.RT_TABLE_MAIN {
			rt := rt
			h.RouteDel(&rt)
		}
	}
	return nil
}

func mustPrefix(cidr string) string {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return cidr
	}
	ip, _, _ := net.ParseCIDR(cidr)
	return (&net.IPNet{IP: ip, Mask: n.Mask}).String()
}

// HAState is the instance's state: active while the VIP is on its HA
// device, standby while keepalived runs without it, fault otherwise (not
// an HA router, keepalived not running, the HA device gone or down).
func (r *Router) HAState() string {
	r.haMu.Lock()
	ka, spec := r.ka, r.haSpec
	r.haMu.Unlock()
	if ka == nil || !ka.alive() || spec.HA == nil {
		return HAFault
	}
	h, done, err := dataplane.HandleIn(r.NS)
	if err != nil {
		return HAFault
	}
	defer done()
	l, err := h.LinkByName(spec.HA.Port.Dev)
	if err != nil || l.Attrs().Flags&net.FlagUp == 0 {
		return HAFault
	}
	have, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return HAFault
	}
	for _, a := range have {
		if a.IPNet.String() == mustPrefix(spec.HA.VIP()) {
			return HAActive
		}
	}
	return HAStandby
}

// StopHA stops the instance's keepalived in order (a master hands over to
// a standby at once) and waits for it, up to a few seconds, then removes
// what it may have left. For a router leaving this host.
func (r *Router) StopHA() {
	r.haMu.Lock()
	ka, spec := r.ka, r.haSpec
	r.ka = nil
	r.haMu.Unlock()
	if ka == nil {
		return
	}
	syscall.Kill(ka.pid, syscall.SIGTERM)
	select {
	case <-ka.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(ka.pid, syscall.SIGKILL)
		<-ka.done
	}
	if h, done, err := dataplane.HandleIn(r.NS); err == nil {
		r.fence(h, spec, spec.HA)
		done()
	}
}

// haState is the HA part of a Router.
type haState struct {
	haMu     sync.Mutex
	ka       *keepalived
	haSpec   Spec
	quietMLD bool      // the router's ports send no MLD
	faultAt  time.Time // when keepalived was last found dead
}

// IsHA reports whether the router was last applied as an HA instance.
func (r *Router) IsHA() bool {
	r.haMu.Lock()
	defer r.haMu.Unlock()
	return r.haSpec.HA != nil
}

// KillHA stops the keepalived of the HA instance whose files are in dir,
// when no Router of this agent runs it (left by an earlier agent, its
// router gone meanwhile): in order, then by force after a few seconds.
func KillHA(dir string) {
	pid := readPID(filepath.Join(dir, kaPID))
	if pid == 0 || !isKeepalived(pid, dir) {
		return
	}
	syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 100 && isKeepalived(pid, dir); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if isKeepalived(pid, dir) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if vrrp := readPID(filepath.Join(dir, kaVRRP)); vrrp != 0 && isKeepalived(vrrp, dir) {
		syscall.Kill(vrrp, syscall.SIGKILL)
	}
}

// HAPIDs are the live keepalived processes of the HA instance whose files
// are in dir (the daemon and its VRRP process).
func HAPIDs(dir string) []int {
	var out []int
	for _, f := range []string{kaPID, kaVRRP} {
		if pid := readPID(filepath.Join(dir, f)); pid != 0 && isKeepalived(pid, dir) {
			out = append(out, pid)
		}
	}
	return out
}
