package dhcp

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/insomniacslk/dhcp/rfc1035label"
)

// Lease6 is what one port is told over DHCPv6: its addresses on the
// network's dhcpv6-stateful subnets (IA_NA), and the options of its
// dhcpv6-stateful and dhcpv6-stateless subnets. A port with no addresses
// here gets options only (information-request, RFC 8415 §18.2.6).
type Lease6 struct {
	Addrs     []net.IP
	DNS       []net.IP
	Domain    string
	LeaseTime time.Duration
	Extra     map[string]string // extra_dhcp_opts for IPv6: name or number -> value
}

// Serve6 answers DHCPv6 on conn (UDP port 547, bound to the DHCP port's
// device and joined to All_DHCP_Relay_Agents_and_Servers) until ctx ends.
// serverID is this server's DUID. Clients are known by MAC: the link-layer
// address in their DUID, or the one their EUI-64 link-local address holds.
func Serve6(ctx context.Context, conn *net.UDPConn, serverID dhcpv6.DUID, t *Table[Lease6], log *slog.Logger) error {
	return serveUDP(ctx, conn, func(pkt []byte, from *net.UDPAddr) {
		msg, err := dhcpv6.MessageFromBytes(pkt)
		if err != nil {
			return
		}
		resp := reply6(msg, from.IP, serverID, t)
		if resp == nil {
			return
		}
		// The socket is bound to the device, so a link-local destination
		// needs no zone.
		dst := &net.UDPAddr{IP: from.IP, Port: dhcpv6.DefaultClientPort}
		if _, err := conn.WriteToUDP(resp.ToBytes(), dst); err != nil {
			log.Warn("dhcpv6 reply failed", "client", from.IP.String(), "err", err)
		}
	})
}

// clientMAC finds the MAC a client speaks for.
func clientMAC(msg *dhcpv6.Message, src net.IP) string {
	switch d := msg.Options.ClientID().(type) {
	case *dhcpv6.DUIDLLT:
		if d.HWType == iana.HWTypeEthernet && len(d.LinkLayerAddr) == 6 {
			return d.LinkLayerAddr.String()
		}
	case *dhcpv6.DUIDLL:
		if d.HWType == iana.HWTypeEthernet && len(d.LinkLayerAddr) == 6 {
			return d.LinkLayerAddr.String()
		}
	}
	if ip := src.To16(); ip != nil && ip.IsLinkLocalUnicast() && ip[11] == 0xff && ip[12] == 0xfe {
		return net.HardwareAddr{ip[8] ^ 2, ip[9], ip[10], ip[13], ip[14], ip[15]}.String()
	}
	return ""
}

// reply6 builds the answer to msg, or nil when there is none to give.
func reply6(msg *dhcpv6.Message, src net.IP, serverID dhcpv6.DUID, t *Table[Lease6]) *dhcpv6.Message {
	if msg.Options.ClientID() == nil {
		return nil
	}
	if sid := msg.Options.ServerID(); sid != nil && !sid.Equal(serverID) {
		return nil // meant for another server
	}
	lease, ok := t.get(clientMAC(msg, src))
	if !ok {
		return nil
	}
	var resp *dhcpv6.Message
	var err error
	withAddrs := false
	switch msg.Type() {
	case dhcpv6.MessageTypeSolicit:
		if len(lease.Addrs) == 0 || msg.Options.OneIANA() == nil {
			return nil // nothing to offer: the subnet is stateless
		}
		if msg.GetOneOption(dhcpv6.OptionRapidCommit) != nil {
			resp, err = dhcpv6.NewReplyFromMessage(msg)
		} else {
			resp, err = dhcpv6.NewAdvertiseFromSolicit(msg)
		}
		withAddrs = true
	case dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRebind:
		resp, err = dhcpv6.NewReplyFromMessage(msg)
		withAddrs = true
	case dhcpv6.MessageTypeConfirm, dhcpv6.MessageTypeRelease, dhcpv6.MessageTypeDecline:
		resp, err = dhcpv6.NewReplyFromMessage(msg)
		if err == nil {
			resp.AddOption(&dhcpv6.OptStatusCode{StatusCode: iana.StatusSuccess})
		}
	case dhcpv6.MessageTypeInformationRequest:
		resp, err = dhcpv6.NewReplyFromMessage(msg)
	default:
		return nil
	}
	if err != nil {
		return nil
	}
	resp.AddOption(dhcpv6.OptServerID(serverID))
	if msg.Type() == dhcpv6.MessageTypeDecline || msg.Type() == dhcpv6.MessageTypeRelease {
		return resp
	}
	lt := lease.LeaseTime
	if lt == 0 {
		lt = 24 * time.Hour
	}
	if withAddrs {
		// Each IA_NA the client asked for gets the port's addresses (a
		// client asking for several is given them in each).
		for _, ia := range msg.Options.IANA() {
			out := &dhcpv6.OptIANA{IaId: ia.IaId, T1: lt / 2, T2: lt * 4 / 5}
			if len(lease.Addrs) == 0 {
				out.Options.Add(&dhcpv6.OptStatusCode{StatusCode: iana.StatusNoAddrsAvail, StatusMessage: "stateless subnet"})
			}
			for _, a := range lease.Addrs {
				out.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: a, PreferredLifetime: lt, ValidLifetime: lt})
			}
			resp.AddOption(out)
		}
	}
	if len(lease.DNS) > 0 {
		resp.AddOption(dhcpv6.OptDNS(lease.DNS...))
	}
	if lease.Domain != "" {
		resp.AddOption(dhcpv6.OptDomainSearchList(&rfc1035label.Labels{Labels: []string{lease.Domain}}))
	}
	if msg.Type() == dhcpv6.MessageTypeInformationRequest {
		resp.AddOption(dhcpv6.OptInformationRefreshTime(lt))
	}
	for name, value := range lease.Extra {
		applyExtra6(resp, name, value)
	}
	return resp
}

// extraCodes6 maps the IPv6 extra_dhcp_opts names to option codes.
var extraCodes6 = map[string]dhcpv6.OptionCode{
	"dns-server": dhcpv6.OptionDNSRecursiveNameServer, "domain-search": dhcpv6.OptionDomainSearchList,
	"ntp-server": dhcpv6.OptionNTPServer, "bootfile-url": dhcpv6.OptionBootfileURL, "sntp-server": dhcpv6.OptionSNTPServerList,
}

func applyExtra6(resp *dhcpv6.Message, name, value string) {
	code, ok := extraCodes6[strings.TrimPrefix(name, "option6:")]
	if !ok {
		n, err := strconv.Atoi(name)
		if err != nil || n < 1 || n > 65535 {
			return
		}
		code = dhcpv6.OptionCode(n)
	}
	var raw []byte
	switch code {
	case dhcpv6.OptionDNSRecursiveNameServer, dhcpv6.OptionSNTPServerList:
		for _, s := range splitList(value) {
			if ip := net.ParseIP(strings.Trim(s, "[]")); ip != nil && ip.To4() == nil {
				raw = append(raw, ip.To16()...)
			}
		}
		if raw == nil {
			return
		}
	case dhcpv6.OptionDomainSearchList:
		raw = (&rfc1035label.Labels{Labels: splitList(value)}).ToBytes()
	default:
		raw = []byte(value)
	}
	resp.UpdateOption(&dhcpv6.OptionGeneric{OptionCode: code, OptionData: raw})
}
