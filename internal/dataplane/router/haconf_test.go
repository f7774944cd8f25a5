package router

import (
	"net"
	"strings"
	"testing"
	"time"

	"neutrino/internal/dataplane"
)

// keepalived's configuration carries the instance's VRRP settings, the
// router's addresses (link-local ones too) for the active instance only,
// and its routes; no root needed.
func TestKeepalivedConfig(t *testing.T) {
	spec := Spec{
		Ports: []Port{{PortVeth: dataplane.PortVeth{Dev: "qr-a", MAC: "fa:16:3e:00:00:01"}, Addrs: []string{"10.0.0.1/24"}},
			{PortVeth: dataplane.PortVeth{Dev: "qg-b", MAC: "fa:16:3e:00:00:02"}, Addrs: []string{"203.0.113.5/24", "2001:db8::5/64"}}},
		Gateway:         "qg-b",
		DefaultGateways: []net.IP{net.ParseIP("203.0.113.1"), net.ParseIP("203.0.113.2"), net.ParseIP("2001:db8::1")},
		Routes:          []Route{{Destination: "192.168.0.0/16", NextHop: "10.0.0.254"}},
	}
	ha := HA{Port: dataplane.PortVeth{Dev: "ha-c"}, Addr: "169.254.192.3/18", VRID: 9, Advert: 2 * time.Second}
	addrs := map[string][]string{"qr-a": {"10.0.0.1/24"}, "qg-b": {"203.0.113.5/24", "2001:db8::5/64", "203.0.113.50/32"}}
	conf := keepalivedConfig("ns1", ha, spec, addrs)
	for _, want := range []string{
		"vrrp_version 3", "state BACKUP", "interface ha-c", "virtual_router_id 9", "nopreempt", "advert_int 2\n",
		"169.254.0.9/24 dev ha-c",
		"10.0.0.1/24 dev qr-a", "203.0.113.50/32 dev qg-b", "2001:db8::5/64 dev qg-b",
		"fe80::f816:3eff:fe00:1/64 dev qr-a scope link", "fe80::f816:3eff:fe00:2/64 dev qg-b scope link",
		"0.0.0.0/0 via 203.0.113.1 dev qg-b", "::/0 via 2001:db8::1 dev qg-b", "192.168.0.0/16 via 10.0.0.254",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("keepalived.conf lacks %q:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, "203.0.113.2") {
		t.Errorf("a second IPv4 default gateway made it in:\n%s", conf)
	}
	ha.Advert = 200 * time.Millisecond
	if conf := keepalivedConfig("ns1", ha, spec, addrs); !strings.Contains(conf, "advert_int 0.2\n") {
		t.Errorf("a 200 ms interval is not advert_int 0.2:\n%s", conf)
	}
}
