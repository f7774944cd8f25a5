package dhcp

import (
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
)

var (
	known   = net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, 1}
	unknown = net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, 9}
	server  = net.IPv4(10, 0, 0, 2).To4()
)

func table4() *Table[Lease] {
	t := &Table[Lease]{}
	_, dst, _ := net.ParseCIDR("10.99.0.0/16")
	t.Set(map[string]Lease{known.String(): {IP: net.IPv4(10, 0, 0, 5).To4(), Mask: net.CIDRMask(24, 32), Router: net.IPv4(10, 0, 0, 1).To4(),
		DNS: []net.IP{net.IPv4(10, 0, 0, 53).To4()}, Routes: []Route{{Dest: dst, NextHop: net.IPv4(10, 0, 0, 254).To4()}},
		MTU: 1450, Domain: "openstacklocal", LeaseTime: time.Hour, Extra: map[string]string{"bootfile-name": "pxe.0", "42": "10.0.0.123"}}})
	return t
}

func message4(t *testing.T, mac net.HardwareAddr, typ dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(typ)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestReply4: a known client's DISCOVER gets an OFFER with its lease and
// options (RFC 3442 routes carry the default route too), a REQUEST for
// its address an ACK, for another address a NAK; an unknown client and a
// RELEASE get nothing.
func TestReply4(t *testing.T) {
	tab := table4()
	offer := reply(message4(t, known, dhcpv4.MessageTypeDiscover), server, tab)
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("discover: %v", offer)
	}
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"address", offer.YourIPAddr.String() == "10.0.0.5"},
		{"mask", net.IP(offer.SubnetMask()).String() == "255.255.255.0"},
		{"router", len(offer.Router()) == 1 && offer.Router()[0].String() == "10.0.0.1"},
		{"dns", len(offer.DNS()) == 1 && offer.DNS()[0].String() == "10.0.0.53"},
		{"server id", offer.ServerIdentifier().Equal(server)},
		{"lease time", offer.IPAddressLeaseTime(0) == time.Hour},
		{"renew", offer.IPAddressRenewalTime(0) == 30*time.Minute},
		{"routes", len(offer.ClasslessStaticRoute()) == 2 && offer.ClasslessStaticRoute()[1].Dest.String() == "0.0.0.0/0"},
		{"mtu", string(offer.Options.Get(dhcpv4.OptionInterfaceMTU)) == "\x05\xaa"},
		{"domain", offer.DomainName() == "openstacklocal"},
		{"extra by name", string(offer.Options.Get(dhcpv4.OptionBootfileName)) == "pxe.0"},
		{"extra by number", net.IP(offer.Options.Get(dhcpv4.GenericOptionCode(42))).String() == "10.0.0.123"},
	} {
		if !c.ok {
			t.Errorf("offer's %s: %v", c.name, offer.Summary())
		}
	}
	ack := reply(message4(t, known, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 0, 0, 5)))), server, tab)
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || ack.YourIPAddr.String() != "10.0.0.5" {
		t.Fatalf("request: %v", ack)
	}
	nak := reply(message4(t, known, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 0, 0, 6)))), server, tab)
	if nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("request for another address: %v", nak)
	}
	inform := reply(message4(t, known, dhcpv4.MessageTypeInform), server, tab)
	if inform == nil || inform.MessageType() != dhcpv4.MessageTypeAck || !inform.YourIPAddr.IsUnspecified() || inform.DomainName() != "openstacklocal" {
		t.Fatalf("inform: %v", inform)
	}
	if r := reply(message4(t, unknown, dhcpv4.MessageTypeDiscover), server, tab); r != nil {
		t.Fatalf("an unknown client got %v", r)
	}
	if r := reply(message4(t, known, dhcpv4.MessageTypeRelease), server, tab); r != nil {
		t.Fatalf("a release got %v", r)
	}
	if r := reply(message4(t, known, dhcpv4.MessageTypeDiscover), server, &Table[Lease]{}); r != nil {
		t.Fatalf("an empty table answered %v", r)
	}
}

func table6(addrs ...net.IP) *Table[Lease6] {
	t := &Table[Lease6]{}
	t.Set(map[string]Lease6{known.String(): {Addrs: addrs, DNS: []net.IP{net.ParseIP("2001:db8::53")}, Domain: "openstacklocal",
		LeaseTime: time.Hour, Extra: map[string]string{"domain-search": "v6.example"}}})
	return t
}

var serverDUID = &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, 2}}

func message6(t *testing.T, typ dhcpv6.MessageType, mac net.HardwareAddr, withIA bool) *dhcpv6.Message {
	t.Helper()
	m, err := dhcpv6.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	m.MessageType = typ
	m.AddOption(dhcpv6.OptClientID(&dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: mac}))
	if withIA {
		m.AddOption(&dhcpv6.OptIANA{IaId: [4]byte{0, 0, 0, 1}})
	}
	return m
}

// TestReply6: a stateful client's SOLICIT gets an ADVERTISE with its
// address in its IA_NA and the options; its REQUEST a REPLY; a client
// known by the MAC in its EUI-64 link-local address (another DUID type)
// too; a stateless client's INFORMATION-REQUEST a REPLY with options and a
// refresh time but no address; a SOLICIT on a stateless subnet nothing; a
// message for another server nothing.
func TestReply6(t *testing.T) {
	addr := net.ParseIP("2001:db8:1::5")
	stateful := table6(addr)
	adv := reply6(message6(t, dhcpv6.MessageTypeSolicit, known, true), nil, serverDUID, stateful)
	if adv == nil || adv.Type() != dhcpv6.MessageTypeAdvertise {
		t.Fatalf("solicit: %v", adv)
	}
	ia := adv.Options.OneIANA()
	if ia == nil || ia.Options.OneAddress() == nil || !ia.Options.OneAddress().IPv6Addr.Equal(addr) || ia.T1 != 30*time.Minute {
		t.Fatalf("advertised IA_NA: %v", ia)
	}
	if dns := adv.Options.DNS(); len(dns) != 1 || dns[0].String() != "2001:db8::53" {
		t.Fatalf("advertised DNS: %v", dns)
	}
	if sl := adv.GetOneOption(dhcpv6.OptionDomainSearchList); sl == nil || string(sl.ToBytes()) != "\x02v6\x07example\x00" {
		t.Fatalf("domain search (the extra option replaces the default): %v", sl)
	}
	if !adv.Options.ServerID().Equal(serverDUID) {
		t.Fatalf("server id: %v", adv.Options.ServerID())
	}
	req := message6(t, dhcpv6.MessageTypeRequest, known, true)
	req.AddOption(dhcpv6.OptServerID(serverDUID))
	if r := reply6(req, nil, serverDUID, stateful); r == nil || r.Type() != dhcpv6.MessageTypeReply || r.Options.OneIANA() == nil {
		t.Fatalf("request: %v", r)
	}
	other := message6(t, dhcpv6.MessageTypeRequest, known, true)
	other.AddOption(dhcpv6.OptServerID(&dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: unknown}))
	if r := reply6(other, nil, serverDUID, stateful); r != nil {
		t.Fatalf("a request for another server got %v", r)
	}
	// A DUID-EN client is known by its EUI-64 link-local source address.
	en, _ := dhcpv6.NewMessage()
	en.MessageType = dhcpv6.MessageTypeSolicit
	en.AddOption(dhcpv6.OptClientID(&dhcpv6.DUIDEN{EnterpriseNumber: 9, EnterpriseIdentifier: []byte{1, 2}}))
	en.AddOption(&dhcpv6.OptIANA{IaId: [4]byte{0, 0, 0, 2}})
	if r := reply6(en, net.ParseIP("fe80::f816:3eff:fe00:1"), serverDUID, stateful); r == nil || r.Options.OneIANA() == nil {
		t.Fatalf("a client known by its link-local address: %v", r)
	}
	stateless := table6()
	info := reply6(message6(t, dhcpv6.MessageTypeInformationRequest, known, false), nil, serverDUID, stateless)
	if info == nil || info.Type() != dhcpv6.MessageTypeReply || info.Options.OneIANA() != nil || len(info.Options.DNS()) != 1 ||
		info.Options.InformationRefreshTime(0) != time.Hour {
		t.Fatalf("information-request: %v", info)
	}
	if r := reply6(message6(t, dhcpv6.MessageTypeSolicit, known, true), nil, serverDUID, stateless); r != nil {
		t.Fatalf("a solicit on a stateless subnet got %v", r)
	}
	if r := reply6(message6(t, dhcpv6.MessageTypeSolicit, unknown, true), nil, serverDUID, stateful); r != nil {
		t.Fatalf("an unknown client got %v", r)
	}
}
