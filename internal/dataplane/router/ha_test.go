package router

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"neutrino/internal/dataplane"
	"neutrino/internal/netlab"
	"neutrino/internal/testutil"
)

// haLab is two hosts, each running one instance of an HA router whose
// interface 10.9.0.1/24 serves a VM; the hosts share a tenant switch and
// an HA network switch (learning bridges, as a physical network would be).
type haLab struct {
	t    testing.TB
	lab  *netlab.Lab
	rs   [2]*Router
	spec [2]Spec
}

func newHALab(t testing.TB, advert time.Duration) *haLab {
	testutil.RequireDataplane(t, "keepalived", "ping")
	lab, err := netlab.New("")
	if err != nil {
		t.Fatal(err)
	}
	l := &haLab{t: t, lab: lab}
	t.Cleanup(func() {
		for _, r := range l.rs {
			if r != nil {
				r.StopHA()
			}
		}
		lab.Close()
	})
	run := func(ns string, args ...string) {
		t.Helper()
		if err := lab.Run(ns, args...); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	for i, h := range []string{"h1", "h2"} {
		if _, err := lab.NS(h); err != nil {
			t.Fatal(err)
		}
		for _, sw := range []struct{ ifname, sw, br string }{{"tn0", "tenant", "brt"}, {"ha0", "hanet", "brh"}} {
			if err := lab.Attach(h, sw.ifname, sw.sw); err != nil {
				t.Fatal(err)
			}
			run(h, "ip", "link", "add", sw.br, "type", "bridge")
			run(h, "ip", "link", "set", sw.ifname, "master", sw.br, "up")
			run(h, "ip", "link", "set", sw.br, "up")
		}
		r, _, err := Open(lab.Name(fmt.Sprint("r", i+1)), lab.Name(h))
		if err != nil {
			t.Fatal(err)
		}
		l.rs[i] = r
		l.spec[i] = Spec{
			// An interface, and a distributed router's SNAT port.
			Ports: []Port{{PortVeth: dataplane.PortVeth{Tap: "tapr", Dev: "qr-test", MAC: "fa:16:3e:00:00:01", MTU: 1500},
				Addrs: []string{"10.9.0.1/24", "2001:db8:9::1/64"}},
				{PortVeth: dataplane.PortVeth{Tap: "taps", Dev: "sg-test", MAC: "fa:16:3e:00:00:02", MTU: 1500},
					Addrs: []string{"10.9.1.1/24", "2001:db8:9:1::1/64"}}},
			HA: &HA{Port: dataplane.PortVeth{Tap: "taph", Dev: "ha-test", MAC: fmt.Sprintf("fa:16:3e:00:01:%02x", i+1), MTU: 1500},
				Addr: fmt.Sprintf("169.254.192.%d/18", i+1), VRID: 7, Advert: advert, Dir: filepath.Join(dir, fmt.Sprint("r", i+1))},
		}
		l.apply(i)
		run(h, "ip", "link", "set", "tapr", "master", "brt", "up")
		run(h, "ip", "link", "set", "taps", "master", "brt", "up")
		run(h, "ip", "link", "set", "taph", "master", "brh", "up")
	}
	if _, err := lab.NS("vm"); err != nil {
		t.Fatal(err)
	}
	if err := lab.Attach("vm", "eth0", "tenant"); err != nil {
		t.Fatal(err)
	}
	run("vm", "ip", "addr", "add", "10.9.0.10/24", "dev", "eth0")
	run("vm", "ip", "link", "set", "eth0", "up")
	return l
}

func (l *haLab) apply(i int) {
	l.t.Helper()
	if err := l.rs[i].Apply(context.Background(), l.spec[i]); err != nil {
		l.t.Fatal(err)
	}
}

// active waits until exactly one instance is active and returns it.
func (l *haLab) active(within time.Duration) int {
	l.t.Helper()
	var got int
	testutil.Eventually(l.t, within, "one active instance", func() (bool, string) {
		s := [2]string{l.rs[0].HAState(), l.rs[1].HAState()}
		switch {
		case s[0] == HAActive && s[1] != HAActive:
			got = 0
		case s[1] == HAActive && s[0] != HAActive:
			got = 1
		default:
			return false, fmt.Sprint(s)
		}
		return true, ""
	})
	return got
}

// addresses are the global addresses on instance i's router port.
func (l *haLab) addresses(i int) string {
	out, _ := exec.Command("ip", "-n", l.rs[i].NS, "-br", "addr", "show", "dev", "qr-test").Output()
	return string(out)
}

// routerMACPort is the tenant switch's port towards the router's MAC.
func (l *haLab) routerMACPort() string {
	fdb, _ := l.lab.Output("ul", "bridge", "fdb", "show", "br", "tenant")
	for _, line := range strings.Split(fdb, "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[0] == "fa:16:3e:00:00:01" {
			return f[2]
		}
	}
	return ""
}

// pingLoss pings the router every 10 ms from the VM while fail runs, and
// returns how long replies were missing (lost × interval).
func (l *haLab) pingLoss(fail func()) time.Duration {
	l.t.Helper()
	lost, _ := testutil.PingLoss(l.t, func(args ...string) string { o, _ := l.lab.Output("vm", args...); return o }, "10.9.0.1", fail)
	return lost
}

// An HA router: one instance answers; stopped in order, the other takes
// over; killed outright (keepalived SIGKILLed), the dead instance is fenced
// (its addresses gone at once, never two copies) and the other takes over;
// the fenced instance comes back as a standby.
func TestHARouterFailover(t *testing.T) {
	l := newHALab(t, 200*time.Millisecond)
	a := l.active(15 * time.Second)
	b := 1 - a
	if err := l.lab.Run("vm", "ping", "-c", "1", "-W", "2", "10.9.0.1"); err != nil {
		t.Fatalf("the active instance does not answer: %v", err)
	}
	if addrs := l.addresses(b); strings.Contains(addrs, "10.9.0.1") || strings.Contains(addrs, "fe80") {
		t.Fatalf("the standby holds the router's addresses: %s", addrs)
	}
	if !strings.Contains(l.addresses(a), "2001:db8:9::1/64") {
		t.Fatalf("the active instance lacks the router's IPv6 address: %s", l.addresses(a))
	}

	// In order: keepalived stopped on the active instance, while its host
	// counts the MLD reports coming from the router's MAC.
	host := fmt.Sprint("h", a+1)
	for _, c := range []string{"add table bridge watch", "add chain bridge watch in { type filter hook prerouting priority 0; }",
		"add rule bridge watch in iifname tapr ether saddr fa:16:3e:00:00:01 icmpv6 type { mld-listener-report, mld-listener-done, mld2-listener-report } counter",
		"add rule bridge watch in iifname taps ether saddr fa:16:3e:00:00:02 icmpv6 type { mld-listener-report, mld-listener-done, mld2-listener-report } counter"} {
		if err := l.lab.Run(host, "nft", c); err != nil {
			t.Fatal(err)
		}
	}
	lost := l.pingLoss(func() { l.rs[a].StopHA() })
	if l.active(5*time.Second) != b {
		t.Fatal("the standby did not take over")
	}
	if addrs := l.addresses(a); strings.Contains(addrs, "10.9.0.1") {
		t.Fatalf("the stopped instance kept the router's address: %s", addrs)
	}
	t.Logf("orderly stop: %v without replies", lost)
	// The router's MAC stays with the active instance: the stopped one
	// sent no MLD report from it for the addresses it left (those would
	// draw the router's traffic back to it, up to a second later).
	if out, _ := l.lab.Output(host, "nft", "list", "chain", "bridge", "watch", "in"); strings.Count(out, "packets 0 ") != 2 {
		t.Fatalf("the stopped instance sent MLD reports from the router's MAC:\n%s", out)
	}
	if port := l.routerMACPort(); port != "te-h"+fmt.Sprint(b+1) {
		t.Fatalf("the tenant switch sends the router's MAC to %q after the failover to h%d", port, b+1)
	}

	// It comes back: as a standby (no preemption).
	l.apply(a)
	time.Sleep(time.Second)
	if s := l.rs[a].HAState(); s != HAStandby {
		t.Fatalf("the returning instance is %s, not standby", s)
	}

	// A crash: the active keepalived is killed outright, its VRRP process
	// first (killed alone, the parent would stop it in order).
	l.rs[b].haMu.Lock()
	pid := l.rs[b].ka.pid
	l.rs[b].haMu.Unlock()
	vrrp := readPID(filepath.Join(l.spec[b].HA.Dir, kaVRRP))
	if vrrp == 0 || vrrp == pid {
		t.Fatalf("no VRRP process of keepalived %d found", pid)
	}
	lost = l.pingLoss(func() {
		syscall.Kill(vrrp, syscall.SIGKILL)
		syscall.Kill(pid, syscall.SIGKILL)
		testutil.Eventually(t, 2*time.Second, "the killed instance fenced", func() (bool, string) {
			addrs := l.addresses(b)
			return !strings.Contains(addrs, "10.9.0.1"), addrs
		})
	})
	if l.active(5*time.Second) != a {
		t.Fatal("the standby did not take over from a killed master")
	}
	if s := l.rs[b].HAState(); s != HAFault {
		t.Fatalf("the killed instance reports %s, not fault", s)
	}
	t.Logf("crash: %v without replies", lost)
	l.apply(b)
	time.Sleep(time.Second)
	if s := l.rs[b].HAState(); s != HAStandby {
		t.Fatalf("the restarted instance is %s, not standby", s)
	}
	if addrs := l.addresses(b); strings.Contains(addrs, "10.9.0.1") {
		t.Fatalf("the restarted instance holds the router's address: %s", addrs)
	}
}

// BenchmarkHAFailover: the time an HA router's VM goes without replies
// (pinged every 10 ms) when its active instance stops in order, and when
// its keepalived is killed outright, over ten failovers of each
// (advertisements every 200 ms).
func BenchmarkHAFailover(b *testing.B) {
	l := newHALab(b, 200*time.Millisecond)
	for n := 0; n < b.N; n++ {
		var orderly, crash []time.Duration
		for i := 0; i < 10; i++ {
			a := l.active(15 * time.Second)
			orderly = append(orderly, l.pingLoss(func() { l.rs[a].StopHA() }))
			l.apply(a)
			a = l.active(15 * time.Second)
			l.rs[a].haMu.Lock()
			pid := l.rs[a].ka.pid
			l.rs[a].haMu.Unlock()
			vrrp := readPID(filepath.Join(l.spec[a].HA.Dir, kaVRRP))
			crash = append(crash, l.pingLoss(func() {
				syscall.Kill(vrrp, syscall.SIGKILL)
				syscall.Kill(pid, syscall.SIGKILL)
			}))
			time.Sleep(200 * time.Millisecond) // fenced by then
			l.apply(a)
		}
		b.Logf("orderly stops: %v; crashes: %v", orderly, crash)
		testutil.ReportP50Max(b, "orderly", orderly)
		testutil.ReportP50Max(b, "crash", crash)
	}
}
