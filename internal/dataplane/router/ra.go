package router

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"

	"neutrino/internal/dataplane"
)

// Router advertisements (RFC 4861) on a router's internal interfaces, as
// Neutron's radvd sends them: the M and O flags, prefixes (on-link, and
// autonomous for SLAAC), the MTU and DNS servers (RDNSS, RFC 8106). They
// are sent from a raw ICMPv6 socket made inside the router's namespace,
// every raInterval and three times a second apart when they change.

const raInterval = 10 * time.Second

// RAPrefix is one advertised prefix.
type RAPrefix struct {
	Prefix     netip.Prefix
	Autonomous bool
}

// RA is what one interface advertises.
type RA struct {
	Managed, Other bool
	Prefixes       []RAPrefix
	MTU            int
	DNS            []netip.Addr
	MAC            net.HardwareAddr
}

func (c RA) key() string { return fmt.Sprint(c) }

// raSender advertises on one interface until cancelled.
type raSender struct {
	key    string
	cancel context.CancelFunc
}

// Marshal builds the router advertisement message body (after the ICMPv6
// type, code and checksum).
func (c RA) Marshal() []byte {
	b := make([]byte, 12)
	b[0] = 64 // current hop limit
	if c.Managed {
		b[1] |= 0x80
	}
	if c.Other {
		b[1] |= 0x40
	}
	binary.BigEndian.PutUint16(b[2:], 1800) // router lifetime, seconds
	if len(c.MAC) == 6 {
		b = append(b, 1, 1) // source link-layer address
		b = append(b, c.MAC...)
	}
	if c.MTU > 0 {
		opt := make([]byte, 8)
		opt[0], opt[1] = 5, 1
		binary.BigEndian.PutUint32(opt[4:], uint32(c.MTU))
		b = append(b, opt...)
	}
	for _, p := range c.Prefixes {
		opt := make([]byte, 32)
		opt[0], opt[1], opt[2] = 3, 4, byte(p.Prefix.Bits())
		opt[3] = 0x80 // on-link
		if p.Autonomous {
			opt[3] |= 0x40
		}
		binary.BigEndian.PutUint32(opt[4:], 86400) // valid lifetime
		binary.BigEndian.PutUint32(opt[8:], 14400) // preferred lifetime
		a := p.Prefix.Masked().Addr().As16()
		copy(opt[16:], a[:])
		b = append(b, opt...)
	}
	if len(c.DNS) > 0 {
		opt := make([]byte, 8, 8+16*len(c.DNS))
		opt[0], opt[1] = 25, byte(1+2*len(c.DNS))
		binary.BigEndian.PutUint32(opt[4:], 600) // lifetime
		for _, d := range c.DNS {
			a := d.As16()
			opt = append(opt, a[:]...)
		}
		b = append(b, opt...)
	}
	return b
}

// ensureRA makes the router's advertisements match want (device -> config):
// senders start, restart on a change, and stop for devices gone.
func (rs *Router) ensureRA(ctx context.Context, want map[string]RA) error {
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
		conn, ifIndex, err := raSocket(rs.NS, dev)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		sctx, cancel := context.WithCancel(ctx)
		rs.ra[dev] = &raSender{key: c.key(), cancel: cancel}
		var active func() bool
		if rs.IsHA() {
			active = func() bool { return rs.HAState() == HAActive }
		}
		go sendRA(sctx, conn, ifIndex, c, active)
	}
	if len(errs) > 0 {
		return fmt.Errorf("router advertisements: %s", strings.Join(errs, "; "))
	}
	return nil
}

// raSocket opens a raw ICMPv6 socket inside namespace ns for dev.
func raSocket(ns, dev string) (*icmp.PacketConn, int, error) {
	type opened struct {
		conn *icmp.PacketConn
		idx  int
	}
	o, err := dataplane.Open(ns, func() (opened, error) {
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
// second apart first) until ctx ends; with active set (an HA router's
// instance), only while active says so, starting over when it becomes so.
func sendRA(ctx context.Context, conn *icmp.PacketConn, ifIndex int, c RA, active func() bool) {
	defer conn.Close()
	msg, err := (&icmp.Message{Type: ipv6.ICMPTypeRouterAdvertisement, Body: &icmp.RawBody{Data: c.Marshal()}}).Marshal(nil)
	if err != nil {
		return
	}
	dst := &net.IPAddr{IP: net.ParseIP("ff02::1")}
	cm := &ipv6.ControlMessage{HopLimit: 255, IfIndex: ifIndex}
	for i := 0; ; i++ {
		wait := raInterval
		if i < 3 {
			wait = time.Second
		}
		if active != nil && !active() {
			i, wait = -1, 200*time.Millisecond // a standby: wait to be active
		} else {
			conn.IPv6PacketConn().WriteTo(msg, cm, dst)
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
	mac, _ := dataplane.Open(ns, func() (net.HardwareAddr, error) {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return nil, err
		}
		return ifi.HardwareAddr, nil
	})
	sendRA(ctx, conn, idx, RA{Prefixes: []RAPrefix{{Prefix: prefix, Autonomous: true}}, MTU: mtu, MAC: mac}, nil)
	return nil
}
