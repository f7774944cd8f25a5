package netlab

import (
	"os"
	"strings"
	"testing"
)

// A static underlay resolves every host from every other one before any
// ARP, with entries the kernel's table limit does not count (permanent),
// and hosts reach each other over it.
func TestStaticUnderlay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	l, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ips := []string{"10.250.0.1", "10.250.0.2", "10.250.0.3"}
	for i, ip := range ips {
		if err := l.Host(string(rune('a'+i)), ip); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.StaticUnderlay(); err != nil {
		t.Fatal(err)
	}
	out, err := l.Output("a", "ip", "neigh", "show", "dev", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"10.250.0.2 lladdr " + underlayMAC("10.250.0.2") + " PERMANENT",
		"10.250.0.3 lladdr " + underlayMAC("10.250.0.3") + " PERMANENT"} {
		if !strings.Contains(out, want) {
			t.Fatalf("host a's underlay neighbours lack %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "10.250.0.1 ") {
		t.Fatalf("host a holds an entry for itself:\n%s", out)
	}
	if err := l.Run("c", "ping", "-c1", "-W2", "10.250.0.1"); err != nil {
		t.Fatal(err)
	}
	if mac, _ := l.Output("b", "cat", "/sys/class/net/eth0/address"); strings.TrimSpace(mac) != underlayMAC("10.250.0.2") {
		t.Fatalf("host b's eth0 has MAC %q, its neighbours hold %s", mac, underlayMAC("10.250.0.2"))
	}
}
