package l3

import (
	"encoding/binary"
	"testing"
)

// TestRAConfig: each ipv6_ra_mode gives Neutron's flags: SLAAC autonomous,
// stateless autonomous with O, stateful M and O without autonomy; the MTU,
// prefix and RDNSS options carry the subnet's values.
func TestRAConfig(t *testing.T) {
	for _, c := range []struct {
		mode        string
		flags       byte
		prefixFlags byte
	}{{"slaac", 0, 0xc0}, {"dhcpv6-stateless", 0x40, 0xc0}, {"dhcpv6-stateful", 0xc0, 0x80}} {
		subnets := map[string]map[string]any{"s6": {"cidr": "2001:db8:7::/64", "ipv6_ra_mode": c.mode, "dns_nameservers": []any{"2001:db8::53"}},
			"s4": {"cidr": "10.0.0.0/24"}}
		port := map[string]any{"mac_address": "fa:16:3e:00:00:01", "fixed_ips": []any{
			map[string]any{"subnet_id": "s4"}, map[string]any{"subnet_id": "s6"}}}
		cfg, ok := raFor(port, subnets, 1450)
		if !ok {
			t.Fatalf("%s: nothing to advertise", c.mode)
		}
		b := cfg.Marshal()
		if b[1] != c.flags || binary.BigEndian.Uint16(b[2:]) != 1800 {
			t.Errorf("%s: flags %#x lifetime %d", c.mode, b[1], binary.BigEndian.Uint16(b[2:]))
		}
		opts := map[byte][]byte{}
		for o := b[12:]; len(o) >= 8; o = o[int(o[1])*8:] {
			opts[o[0]] = o[:int(o[1])*8]
		}
		if mtu := opts[5]; mtu == nil || binary.BigEndian.Uint32(mtu[4:]) != 1450 {
			t.Errorf("%s: MTU option %v", c.mode, mtu)
		}
		if p := opts[3]; p == nil || p[2] != 64 || p[3] != c.prefixFlags || p[16] != 0x20 || p[17] != 0x01 || p[21] != 0x07 {
			t.Errorf("%s: prefix option %v", c.mode, p)
		}
		if d := opts[25]; d == nil || d[1] != 3 || d[len(d)-1] != 0x53 {
			t.Errorf("%s: RDNSS option %v", c.mode, d)
		}
		if l := opts[1]; l == nil || l[7] != 0x01 {
			t.Errorf("%s: source link-layer option %v", c.mode, l)
		}
	}
	if _, ok := raFor(map[string]any{"fixed_ips": []any{map[string]any{"subnet_id": "x"}}}, nil, 1500); ok {
		t.Error("advertising for a port without IPv6 router-advertisement subnets")
	}
}
