package ipam_test

import (
	"fmt"
	"net/netip"
	"testing"

	"neutrino/internal/fault"
	"neutrino/internal/plugin"
	"neutrino/internal/services"
	"neutrino/internal/services/ipam"
	"neutrino/internal/services/servicetest"
)

func TestDefaultPools(t *testing.T) {
	for _, c := range []struct{ name, cidr, gw, want string }{
		{"gateway first", "10.0.0.0/24", "10.0.0.1", "[10.0.0.2-10.0.0.254]"},
		{"no gateway", "10.0.0.0/24", "", "[10.0.0.1-10.0.0.254]"},
		{"gateway inside", "10.0.0.0/24", "10.0.0.100", "[10.0.0.1-10.0.0.99 10.0.0.101-10.0.0.254]"},
		{"gateway last", "10.0.0.0/24", "10.0.0.254", "[10.0.0.1-10.0.0.253]"},
		{"point to point", "10.0.0.0/31", "", "[10.0.0.0-10.0.0.1]"},
		{"single address", "10.0.0.7/32", "", "[10.0.0.7-10.0.0.7]"},
		{"IPv6 without the anycast address", "2001:db8::/64", "2001:db8::1", "[2001:db8::2-2001:db8::ffff:ffff:ffff:ffff]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			gw, _ := netip.ParseAddr(c.gw)
			if got := fmt.Sprint(ipam.DefaultPools(netip.MustParsePrefix(c.cidr), gw)); got != c.want {
				t.Errorf("%s gateway %q: %s, want %s", c.cidr, c.gw, got, c.want)
			}
		})
	}
}

func TestParsePools(t *testing.T) {
	p := netip.MustParsePrefix("10.0.0.0/24")
	gw := netip.MustParseAddr("10.0.0.1")
	pool := func(s, e string) map[string]any { return map[string]any{"start": s, "end": e} }
	for _, c := range []struct {
		name string
		in   any
		want string // the error type, or the pools
	}{
		{"two pools", []any{pool("10.0.0.10", "10.0.0.20"), pool("10.0.0.30", "10.0.0.40")}, "[10.0.0.10-10.0.0.20 10.0.0.30-10.0.0.40]"},
		{"overlap", []any{pool("10.0.0.10", "10.0.0.20"), pool("10.0.0.20", "10.0.0.40")}, "OverlappingAllocationPools"},
		{"network address", []any{pool("10.0.0.0", "10.0.0.20")}, "OutOfBoundsAllocationPool"},
		{"broadcast", []any{pool("10.0.0.200", "10.0.0.255")}, "OutOfBoundsAllocationPool"},
		{"outside", []any{pool("10.0.1.1", "10.0.1.2")}, "OutOfBoundsAllocationPool"},
		{"other family", []any{pool("2001:db8::1", "2001:db8::2")}, "OutOfBoundsAllocationPool"},
		{"backwards", []any{pool("10.0.0.20", "10.0.0.10")}, "InvalidAllocationPool"},
		{"gateway inside", []any{pool("10.0.0.1", "10.0.0.10")}, "GatewayConflictWithAllocationPools"},
		{"not a list", "10.0.0.1-10.0.0.2", "HTTPBadRequest"},
		{"missing end", []any{map[string]any{"start": "10.0.0.5"}}, "HTTPBadRequest"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pools, err := ipam.ParsePools(c.in, p, gw)
			got := fmt.Sprint(pools)
			if fe, ok := fault.As(err); ok {
				got = fe.Type
			} else if err != nil {
				got = err.Error()
			}
			if got != c.want {
				t.Errorf("%v: %s, want %s", c.in, got, c.want)
			}
		})
	}
}

func TestEUI64(t *testing.T) {
	a, err := ipam.EUI64(netip.MustParsePrefix("2001:db8:1:2::/64"), "fa:16:3e:00:12:34")
	if err != nil || a.String() != "2001:db8:1:2:f816:3eff:fe00:1234" {
		t.Fatalf("EUI-64: %v %v", a, err)
	}
	if _, err := ipam.EUI64(netip.MustParsePrefix("2001:db8::/64"), "nonsense"); err == nil {
		t.Fatal("a bad MAC gives an address")
	}
}

// TestAllocation: the next free address is never the gateway nor outside
// the pools, never given twice, exhaustion says so, a released address
// can be taken again, and a chosen address that is taken is a conflict.
func TestAllocation(t *testing.T) {
	e := servicetest.New(t, services.Config{ServicePlugins: []string{}})
	sn := plugin.Object{"id": "s1", "network_id": "n1", "cidr": "10.9.0.0/29", "gateway_ip": "10.9.0.1",
		"allocation_pools": ipam.PoolsToList(ipam.DefaultPools(netip.MustParsePrefix("10.9.0.0/29"), netip.MustParseAddr("10.9.0.1")))}
	next := func(port string) (netip.Addr, bool) {
		var a netip.Addr
		var ok bool
		if err := e.Write(func(c *plugin.Ctx) error {
			var err error
			a, ok, err = ipam.AllocateNext(c, sn, port)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return a, ok
	}
	got := map[netip.Addr]bool{}
	for i := 0; i < 5; i++ { // .2 to .6
		a, ok := next(fmt.Sprint("p", i))
		if !ok || got[a] || a.String() == "10.9.0.1" || !netip.MustParsePrefix("10.9.0.0/29").Contains(a) || a.String() == "10.9.0.7" {
			t.Fatalf("allocation %d: %v %v (have %v)", i, a, ok, got)
		}
		got[a] = true
	}
	if a, ok := next("p9"); ok {
		t.Fatalf("a full subnet gave %v", a)
	}
	var freed netip.Addr
	for a := range got {
		freed = a
		break
	}
	if err := e.Write(func(c *plugin.Ctx) error { return ipam.ReleaseIP(c, "s1", freed.String()) }); err != nil {
		t.Fatal(err)
	}
	if a, ok := next("p10"); !ok || a != freed {
		t.Fatalf("after a release: %v %v, want %v", a, ok, freed)
	}
	err := e.Write(func(c *plugin.Ctx) error { return ipam.Allocate(c, sn, freed, "p11") })
	if fe, ok := fault.As(err); !ok || fe.Type != "IpAddressAlreadyAllocated" {
		t.Fatalf("a taken address: %v", err)
	}
	// A port's addresses go with it.
	if err := e.Write(func(c *plugin.Ctx) error { return ipam.ReleasePortIPs(c, "p10") }); err != nil {
		t.Fatal(err)
	}
	if err := e.Write(func(c *plugin.Ctx) error { return ipam.Allocate(c, sn, freed, "p11") }); err != nil {
		t.Fatalf("address of a released port: %v", err)
	}
}
