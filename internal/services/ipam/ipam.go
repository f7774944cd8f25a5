// Package ipam allocates addresses: subnets' allocation pools, the next
// free address or a chosen one, SLAAC (EUI-64) addresses, and subnet
// pools from which subnets take their prefixes.
package ipam

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/netip"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// Pool is an inclusive address range of a subnet.
type Pool struct{ Start, End netip.Addr }

func (p Pool) Contains(a netip.Addr) bool { return p.Start.Compare(a) <= 0 && a.Compare(p.End) <= 0 }
func (p Pool) String() string             { return p.Start.String() + "-" + p.End.String() }

func addrToInt(a netip.Addr) *big.Int { b := a.As16(); return new(big.Int).SetBytes(b[:]) }

func intToAddr(n *big.Int, v6 bool) netip.Addr {
	var b [16]byte
	n.FillBytes(b[:])
	a := netip.AddrFrom16(b)
	if !v6 {
		return a.Unmap()
	}
	return a
}

// lastAddr is the highest address of p.
func LastAddr(p netip.Prefix) netip.Addr {
	n := addrToInt(p.Addr())
	host := p.Addr().BitLen() - p.Bits()
	ones := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), uint(host)), big.NewInt(1))
	return intToAddr(n.Or(n, ones), p.Addr().Is6())
}

// defaultPools is the usable range of cidr minus the gateway, as Neutron
// computes it: IPv4 excludes network and broadcast, IPv6 the subnet-router
// anycast address.
func DefaultPools(p netip.Prefix, gw netip.Addr) []Pool {
	first := p.Addr().Next()
	last := LastAddr(p)
	if p.Addr().Is4() {
		if p.Bits() >= 31 {
			first, last = p.Addr(), LastAddr(p)
		} else {
			last = last.Prev()
		}
	}
	if !first.IsValid() || first.Compare(last) > 0 {
		return nil
	}
	whole := Pool{first, last}
	if !gw.IsValid() || !whole.Contains(gw) {
		return []Pool{whole}
	}
	var out []Pool
	if gw.Compare(first) > 0 {
		out = append(out, Pool{first, gw.Prev()})
	}
	if gw.Compare(last) < 0 {
		out = append(out, Pool{gw.Next(), last})
	}
	return out
}

func PoolsToList(ps []Pool) []any {
	out := make([]any, 0, len(ps))
	for _, p := range ps {
		out = append(out, map[string]any{"start": p.Start.String(), "end": p.End.String()})
	}
	return out
}

// subnetPools reads a subnet's allocation_pools.
func Ranges(sn plugin.Object) []Pool {
	var out []Pool
	for _, e := range attr.List(sn, "allocation_pools") {
		m, _ := e.(map[string]any)
		s, err1 := netip.ParseAddr(attr.Str(m, "start"))
		e, err2 := netip.ParseAddr(attr.Str(m, "end"))
		if err1 == nil && err2 == nil {
			out = append(out, Pool{s, e})
		}
	}
	return out
}

// parsePools validates requested allocation pools against cidr and gateway.
func ParsePools(v any, p netip.Prefix, gw netip.Addr) ([]Pool, error) {
	l, ok := v.([]any)
	if !ok {
		return nil, fault.BadRequest("Invalid input for allocation_pools. Reason: Invalid data format for IP pool: '%v'.", v)
	}
	var out []Pool
	for _, e := range l {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, fault.BadRequest("Invalid input for allocation_pools. Reason: Invalid data format for IP pool: '%v'.", e)
		}
		s, err1 := netip.ParseAddr(attr.Str(m, "start"))
		en, err2 := netip.ParseAddr(attr.Str(m, "end"))
		if err1 != nil || err2 != nil || len(m) != 2 {
			return nil, fault.BadRequest("Invalid input for allocation_pools. Reason: Invalid data format for IP pool: '%v'.", e)
		}
		s, en = s.Unmap(), en.Unmap()
		if s.Is4() != p.Addr().Is4() || en.Is4() != p.Addr().Is4() {
			return nil, fault.New(http.StatusBadRequest, "OutOfBoundsAllocationPool",
				"The allocation pool %s-%s spans beyond the subnet cidr %s.", s, en, p)
		}
		if s.Compare(en) > 0 {
			return nil, fault.New(http.StatusBadRequest, "InvalidAllocationPool", "The allocation pool %s-%s is not valid.", s, en)
		}
		// Pools hold usable addresses only: not the network address, nor
		// IPv4's broadcast (except in /31 and /32).
		lo, hi := p.Addr(), LastAddr(p)
		if p.Addr().Is4() && p.Bits() < 31 || p.Addr().Is6() && p.Bits() < 127 {
			lo = lo.Next()
		}
		if p.Addr().Is4() && p.Bits() < 31 {
			hi = hi.Prev()
		}
		if !p.Contains(s) || !p.Contains(en) || s.Compare(lo) < 0 || en.Compare(hi) > 0 {
			return nil, fault.New(http.StatusBadRequest, "OutOfBoundsAllocationPool",
				"The allocation pool %s-%s spans beyond the subnet cidr %s.", s, en, p)
		}
		out = append(out, Pool{s, en})
	}
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[i].Contains(out[j].Start) || out[j].Contains(out[i].Start) {
				return nil, fault.New(http.StatusConflict, "OverlappingAllocationPools",
					"Found overlapping allocation pools: %s %s for subnet %s.", out[i], out[j], p)
			}
		}
	}
	if gw.IsValid() {
		for _, pl := range out {
			if pl.Contains(gw) {
				return nil, fault.New(http.StatusConflict, "GatewayConflictWithAllocationPools",
					"Gateway ip %s conflicts with allocation pool %s.", gw, pl)
			}
		}
	}
	return out, nil
}

// eui64 derives the SLAAC address of mac in a /64.
func EUI64(p netip.Prefix, mac string) (netip.Addr, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return netip.Addr{}, fmt.Errorf("bad mac %q", mac)
	}
	b := p.Addr().As16()
	b[8] = hw[0] ^ 0x02
	b[9], b[10] = hw[1], hw[2]
	b[11], b[12] = 0xff, 0xfe
	b[13], b[14], b[15] = hw[3], hw[4], hw[5]
	return netip.AddrFrom16(b), nil
}

// isAutoAddress reports whether a subnet gives addresses by SLAAC.
func IsAutoAddress(sn plugin.Object) bool {
	m := attr.Str(sn, "ipv6_address_mode")
	return m == "slaac" || m == "dhcpv6-stateless"
}

// allocated returns the addresses taken in a subnet.
func allocated(c *plugin.Ctx, subnetID string) (map[netip.Addr]bool, error) {
	rows, err := c.Tx.SubnetIPs(subnetID)
	if err != nil {
		return nil, err
	}
	used := make(map[netip.Addr]bool, len(rows))
	for _, r := range rows {
		if a, err := netip.ParseAddr(r); err == nil {
			used[a] = true
		}
	}
	return used, nil
}

// heldAddress is the ports' derived attribute "subnet address", one value
// per fixed IP.
const heldAddress = "ipam:subnet_address"

// held reports whether a port is known to hold address a of subnet sid.
// A probe skips such an address: its claim would fail, and in an
// optimistic PostgreSQL write it would be found only at commit, costing
// the write (and the batch it is in) a second run.
func held(c *plugin.Ctx, sid string, a netip.Addr) bool {
	ports, err := c.Tx.List(schema.Port.Kind, store.Filter{Attr: heldAddress, Values: []string{sid + " " + a.String()}})
	return err == nil && len(ports) > 0
}

// allocateNext claims a free address of the subnet for port: a few random
// probes, each one insert that yields on conflict (Neutron allocates at
// random too, and an address just released is not handed out again at
// once); then the first free address scanning upward, which also detects
// exhaustion.
func AllocateNext(c *plugin.Ctx, sn plugin.Object, portID string) (netip.Addr, bool, error) {
	gw, _ := netip.ParseAddr(attr.Str(sn, "gateway_ip"))
	pools := Ranges(sn)
	sid := attr.Str(sn, "id")
	claim := func(a netip.Addr) (bool, error) {
		return c.Tx.ClaimIP(sid, a.String(), portID, attr.Str(sn, "network_id"))
	}
	for _, pl := range pools {
		size := new(big.Int).Sub(addrToInt(pl.End), addrToInt(pl.Start))
		size.Add(size, big.NewInt(1))
		for try := 0; try < 4; try++ {
			off, err := rand.Int(rand.Reader, size)
			if err != nil {
				break
			}
			a := intToAddr(off.Add(off, addrToInt(pl.Start)), pl.Start.Is6())
			if a == gw || held(c, sid, a) {
				continue
			}
			if ok, err := claim(a); ok || err != nil {
				return a, ok, err
			}
		}
	}
	used, err := allocated(c, sid)
	if err != nil {
		return netip.Addr{}, false, err
	}
	for _, pl := range pools {
		for a := pl.Start; a.IsValid() && a.Compare(pl.End) <= 0; a = a.Next() {
			if !used[a] && a != gw {
				ok, err := claim(a)
				return a, ok, err
			}
		}
	}
	return netip.Addr{}, false, nil
}

// allocate records ip for port in subnet; a taken address is a conflict.
func Allocate(c *plugin.Ctx, sn plugin.Object, ip netip.Addr, portID string) error {
	ok, err := c.Tx.ClaimIP(attr.Str(sn, "id"), ip.String(), portID, attr.Str(sn, "network_id"))
	if err == nil && !ok {
		return fault.Conflict("IpAddressAlreadyAllocated", "IP address %s already allocated in subnet %s", ip, attr.Str(sn, "id"))
	}
	return err
}

func ReleasePortIPs(c *plugin.Ctx, portID string) error {
	return c.Tx.ReleasePortIPs(portID)
}

func ReleaseIP(c *plugin.Ctx, subnetID string, ip string) error {
	return c.Tx.ReleaseIP(subnetID, ip)
}
