package agent

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// Router advertisements (RFC 4861) on a router's internal interfaces, for
// the IPv6 subnets with an ipv6_ra_mode, as Neutron's radvd does:
//
//	slaac             prefix on-link and autonomous
//	dhcpv6-stateless  prefix on-link and autonomous, O flag (options by DHCPv6)
//	dhcpv6-stateful   prefix on-link only, M and O flags (addresses by DHCPv6)
//
// with the network's MTU and the subnets' DNS servers (RDNSS, RFC 8106).
// They are sent from a raw ICMPv6 socket made inside the router's
// namespace, every raInterval and three times quickly when they change.

const raInterval = 10 * time.Second

// raPrefix is one advertised prefix.
type raPrefix struct {
	prefix     netip.Prefix
	autonomous bool
}

// raConfig is what one interface advertises.
type raConfig struct {
	managed, other bool
	prefixes       []raPrefix
	mtu            int
	dns            []netip.Addr
	mac            net.HardwareAddr
}

func (c raConfig) key() string { return fmt.Sprint(c) }

// raSender advertises on one interface until cancelled.
type raSender struct {
	key    string
	cancel context.CancelFunc
}

// raConfigFor derives an interface's advertisement from its port's
// subnets; ok is false when none asks for advertisements.
func raConfigFor(p map[string]any, subnets map[string]map[string]any, mtu int) (raConfig, bool) {
	cfg := raConfig{mtu: mtu}
	cfg.mac, _ = net.ParseMAC(str(p, "mac_address"))
	for _, f := range list(p, "fixed_ips") {
		sn := subnets[str(f, "subnet_id")]
		mode := str(sn, "ipv6_ra_mode")
		if sn == nil || mode == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(str(sn, "cidr"))
		if err != nil || !prefix.Addr().Is6() {
			continue
		}
		cfg.prefixes = append(cfg.prefixes, raPrefix{prefix: prefix, autonomous: mode != "dhcpv6-stateful"})
		switch mode {
		case "dhcpv6-stateful":
			cfg.managed, cfg.other = true, true
		case "dhcpv6-stateless":
			cfg.other = true
		}
		dns, _ := sn["dns_nameservers"].([]any)
		for _, d := range dns {
			if a, err := netip.ParseAddr(fmt.Sprint(d)); err == nil && a.Is6() {
				cfg.dns = append(cfg.dns, a)
			}
		}
	}
	sort.Slice(cfg.prefixes, func(i, j int) bool { return cfg.prefixes[i].prefix.String() < cfg.prefixes[j].prefix.String() })
	return cfg, len(cfg.prefixes) > 0
}

// marshal builds the router advertisement message body (after the ICMPv6
// type, code and checksum).
func (c raConfig) marshal() []byte {
	b := make([]byte, 12)
	b[0] = 64 // current hop limit
	if c.managed {
		b[1] |= 0x80
	}
	if c.other {
		b[1] |= 0x40
	}
	binary.BigEndian.PutUint16(b[2:], 1800) // router lifetime, seconds
	if len(c.mac) == 6 {
		b = append(b, 1, 1) // source link-layer address
		b = append(b, c.mac...)
	}
	if c.mtu > 0 {
		opt := make([]byte, 8)
		opt[0], opt[1] = 5, 1
		binary.BigEndian.PutUint32(opt[4:], uint32(c.mtu))
		b = append(b, opt...)
	}
	for _, p := range c.prefixes {
		opt := make([]byte, 32)
		opt[0], opt[1], opt[2] = 3, 4, byte(p.prefix.Bits())
		opt[3] = 0x80 // on-link
		if p.autonomous {
			opt[3] |= 0x40
		}
		binary.BigEndian.PutUint32(opt[4:], 86400) // valid lifetime
		binary.BigEndian.PutUint32(opt[8:], 14400) // preferred lifetime
		a := p.prefix.Masked().Addr().As16()
		copy(opt[16:], a[:])
		b = append(b, opt...)
	}
	if len(c.dns) > 0 {
		opt := make([]byte, 8, 8+16*len(c.dns))
		opt[0], opt[1] = 25, byte(1+2*len(c.dns))
		binary.BigEndian.PutUint32(opt[4:], 600) // lifetime
		for _, d := range c.dns {
			a := d.As16()
			opt = append(opt, a[:]...)
		}
		b = append(b, opt...)
	}
	return b
}

// ensureRA makes the router's advertisements match want (device -> config):
// senders start, restart on a change, and stop for devices gone.
func (rs *routerState) ensureRA(ctx context.Context, ns string, want map[string]raConfig) error {
	if rs.ra == nil {
		rs.ra = map[string]*raSender{}
	}
	for dev, s := range rs.ra {
		if c, ok := want[dev]; !ok || c.key() != s.key {
			s.cancel()
			delete(rs.ra, dev)
		}
	}
	var errs []string
	for dev, c := range want {
		if _, ok := rs.ra[dev]; ok {
			continue
		}
		conn, ifIndex, err := raSocket(ns, dev)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		sctx, cancel := context.WithCancel(ctx)
		rs.ra[dev] = &raSender{key: c.key(), cancel: cancel}
		go sendRA(sctx, conn, ifIndex, c)
	}
	if len(errs) > 0 {
		return fmt.Errorf("router advertisements: %s", strings.Join(errs, "; "))
	}
	return nil
}

// stop ends the router's advertisements.
func (rs *routerState) stop() {
	for _, s := range rs.ra {
		s.cancel()
	}
}

// raSocket opens a raw ICMPv6 socket inside namespace ns for dev.
func raSocket(ns, dev string) (*icmp.PacketConn, int, error) {
	type opened struct {
		conn *icmp.PacketConn
		idx  int
	}
	o, err := inNS(ns, func() (opened, error) {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return opened{}, err
		}
		conn, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
		return opened{conn, ifi.Index}, err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", dev, err)
	}
	pc := o.conn.IPv6PacketConn()
	pc.SetMulticastHopLimit(255)
	pc.SetHopLimit(255)
	return o.conn, o.idx, nil
}

// sendRA advertises c on the interface every raInterval (three times a
// second apart first) until ctx ends.
func sendRA(ctx context.Context, conn *icmp.PacketConn, ifIndex int, c raConfig) {
	defer conn.Close()
	msg, err := (&icmp.Message{Type: ipv6.ICMPTypeRouterAdvertisement, Body: &icmp.RawBody{Data: c.marshal()}}).Marshal(nil)
	if err != nil {
		return
	}
	dst := &net.IPAddr{IP: net.ParseIP("ff02::1")}
	cm := &ipv6.ControlMessage{HopLimit: 255, IfIndex: ifIndex}
	for i := 0; ; i++ {
		conn.IPv6PacketConn().WriteTo(msg, cm, dst)
		wait := raInterval
		if i < 3 {
			wait = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Advertise sends router advertisements for prefix (SLAAC) with the given
// MTU on dev inside namespace ns until ctx ends: the sandbox's upstream
// host uses it as a router outside the cloud would.
func Advertise(ctx context.Context, ns, dev string, prefix netip.Prefix, mtu int) error {
	conn, idx, err := raSocket(ns, dev)
	if err != nil {
		return err
	}
	mac, _ := inNS(ns, func() (net.HardwareAddr, error) {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return nil, err
		}
		return ifi.HardwareAddr, nil
	})
	sendRA(ctx, conn, idx, raConfig{prefixes: []raPrefix{{prefix: prefix, autonomous: true}}, mtu: mtu, mac: mac})
	return nil
}
