// Package dhcp is Neutrino's DHCPv4 and DHCPv6 responder. DHCPv4 answers, on one network's
// DHCP port, each known port (by MAC) with that port's fixed address and the
// subnet's options — mask, router, DNS servers, classless routes (option
// 121), MTU (option 26), lease time, domain, and the port's extra_dhcp_opts.
// Unknown MACs get no answer: addresses come from the API, not a pool.
package dhcp

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Route is a classless static route.
type Route struct {
	Dest    *net.IPNet
	NextHop net.IP
}

// Lease is what one port is told.
type Lease struct {
	IP        net.IP
	Mask      net.IPMask
	Router    net.IP // nil: no gateway
	DNS       []net.IP
	Routes    []Route
	MTU       int
	Domain    string
	LeaseTime time.Duration
	Extra     map[string]string // extra_dhcp_opts for IPv4: name or number -> value
}

// Table maps MAC addresses to leases (Lease or Lease6); it is replaced
// whole on each update.
type Table[L any] struct {
	p atomic.Pointer[map[string]L]
}

// Set replaces the table.
func (t *Table[L]) Set(m map[string]L) { t.p.Store(&m) }

func (t *Table[L]) get(mac string) (L, bool) {
	m := t.p.Load()
	if m == nil {
		var zero L
		return zero, false
	}
	l, ok := (*m)[mac]
	return l, ok
}

// Serve answers on conn (a UDP socket on port 67 bound to the DHCP port's
// device) until ctx ends. serverIP identifies this server (option 54).
func Serve(ctx context.Context, conn *net.UDPConn, serverIP net.IP, t *Table[Lease], log *slog.Logger) error {
	return serveUDP(ctx, conn, func(pkt []byte, _ *net.UDPAddr) {
		req, err := dhcpv4.FromBytes(pkt)
		if err != nil || req.OpCode != dhcpv4.OpcodeBootRequest {
			return
		}
		resp := reply(req, serverIP, t)
		if resp == nil {
			return
		}
		dst := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
		if !req.ClientIPAddr.IsUnspecified() && req.ClientIPAddr != nil {
			dst.IP = req.ClientIPAddr
		}
		if _, err := conn.WriteTo(resp.ToBytes(), dst); err != nil {
			log.Warn("dhcp reply failed", "mac", req.ClientHWAddr.String(), "err", err)
		}
	})
}

// serveUDP hands each datagram conn receives to handle, one at a time (pkt
// is only valid during the call), until ctx ends or reading fails.
func serveUDP(ctx context.Context, conn *net.UDPConn, handle func(pkt []byte, from *net.UDPAddr)) error {
	go func() { <-ctx.Done(); conn.Close() }()
	buf := make([]byte, 4096)
	for {
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		handle(buf[:n], from)
	}
}

// reply builds the answer to req, or nil when there is none to give.
func reply(req *dhcpv4.DHCPv4, serverIP net.IP, t *Table[Lease]) *dhcpv4.DHCPv4 {
	lease, ok := t.get(req.ClientHWAddr.String())
	if !ok {
		return nil
	}
	var typ dhcpv4.MessageType
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		typ = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		want := req.RequestedIPAddress()
		if want == nil || want.IsUnspecified() {
			want = req.ClientIPAddr
		}
		typ = dhcpv4.MessageTypeAck
		if want != nil && !want.IsUnspecified() && !want.Equal(lease.IP) {
			typ = dhcpv4.MessageTypeNak
		}
	case dhcpv4.MessageTypeInform:
		typ = dhcpv4.MessageTypeAck
	default:
		return nil
	}
	resp, err := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithMessageType(typ), dhcpv4.WithServerIP(serverIP),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverIP)))
	if err != nil {
		return nil
	}
	if typ == dhcpv4.MessageTypeNak {
		return resp
	}
	if req.MessageType() != dhcpv4.MessageTypeInform {
		resp.YourIPAddr = lease.IP
		lt := lease.LeaseTime
		if lt == 0 {
			lt = 24 * time.Hour
		}
		resp.UpdateOption(dhcpv4.OptIPAddressLeaseTime(lt))
		resp.UpdateOption(dhcpv4.OptRenewTimeValue(lt / 2))
		resp.UpdateOption(dhcpv4.OptRebindingTimeValue(lt * 7 / 8))
	}
	resp.UpdateOption(dhcpv4.OptSubnetMask(lease.Mask))
	routes := lease.Routes
	if lease.Router != nil {
		resp.UpdateOption(dhcpv4.OptRouter(lease.Router))
		if len(routes) > 0 {
			// RFC 3442: clients ignore option 3 when 121 is present, so the
			// default route goes in 121 too.
			routes = append(routes, Route{Dest: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, NextHop: lease.Router})
		}
	}
	if len(lease.DNS) > 0 {
		resp.UpdateOption(dhcpv4.OptDNS(lease.DNS...))
	}
	if len(routes) > 0 {
		var rs []*dhcpv4.Route
		for _, r := range routes {
			rs = append(rs, &dhcpv4.Route{Dest: r.Dest, Router: r.NextHop})
		}
		resp.UpdateOption(dhcpv4.OptClasslessStaticRoute(rs...))
	}
	if lease.MTU > 0 {
		resp.UpdateOption(dhcpv4.Option{Code: dhcpv4.OptionInterfaceMTU, Value: dhcpv4.Uint16(lease.MTU)})
	}
	if lease.Domain != "" {
		resp.UpdateOption(dhcpv4.OptDomainName(lease.Domain))
	}
	for name, value := range lease.Extra {
		applyExtra(resp, name, value)
	}
	return resp
}

// extraCodes maps the extra_dhcp_opts names Neutron documents to codes.
var extraCodes = map[string]uint8{
	"router": 3, "dns-server": 6, "domain-name": 15, "mtu": 26, "ntp-server": 42, "tftp-server": 66,
	"bootfile-name": 67, "tftp-server-address": 150,
}

func applyExtra(resp *dhcpv4.DHCPv4, name, value string) {
	switch name {
	case "server-ip-address":
		if ip := net.ParseIP(value); ip != nil {
			resp.ServerIPAddr = ip
		}
		return
	}
	code, ok := extraCodes[name]
	if !ok {
		n, err := strconv.Atoi(name)
		if err != nil || n < 1 || n > 254 {
			return
		}
		code = uint8(n)
	}
	var raw []byte
	switch code {
	case 3, 6, 42, 150:
		for _, s := range splitList(value) {
			if ip := net.ParseIP(s).To4(); ip != nil {
				raw = append(raw, ip...)
			}
		}
	case 26:
		n, err := strconv.Atoi(value)
		if err != nil {
			return
		}
		raw = []byte{byte(n >> 8), byte(n)}
	default:
		raw = []byte(value)
	}
	resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(code), raw))
}

func splitList(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' || s[i] == ' ' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}
