package dataplane

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sort"
	"strings"

	"github.com/vishvananda/netns"
	"sigs.k8s.io/knftables"
)

// Security groups and anti-spoofing, with nftables in the host's namespace:
//
//   - table bridge neutrino: frames from a port's tap must carry its MAC and
//     one of its addresses (ARP too); a VM may not answer DHCP or send router
//     advertisements. A frame forwarded to a port's tap is marked with the
//     port's number (the bridge family has no conntrack here).
//   - table inet neutrino, reached through br_netfilter: replies of allowed
//     flows pass (conntrack); new traffic from a filtered port goes through
//     its egress chain (returning when a rule allows it, else drop), then
//     traffic to a filtered port through its ingress chain (accept, else
//     drop). Remote groups are sets of member addresses, not one rule per
//     member. The mark carries the source port in its high 16 bits (set as
//     a frame enters from a tap) and the destination port in the low 16
//     (set as it is forwarded to one).

// FilterRule is one security group rule as the data plane applies it.
type FilterRule struct {
	EtherType   string // IPv4 or IPv6
	Protocol    string // "" (any), tcp, udp, icmp, ipv6-icmp, or a number
	PortMin     int    // tcp/udp: port range; icmp: type; -1 when unset
	PortMax     int    // tcp/udp: port range; icmp: code; -1 when unset
	RemoteCIDR  string
	RemoteGroup string
}

// PortFilter is a port's security state.
type PortFilter struct {
	PortID   string
	MAC      string
	Addrs    []string // allowed sources: fixed IPs and address pairs (IPs or CIDRs)
	PairMACs []string
	Ingress  []FilterRule
	Egress   []FilterRule
}

const filterTable = "neutrino"

// SetFilters makes the host's filtering exactly the given ports' (ports not
// listed are not filtered: port security off, or network-owned ports), with
// members[group] the addresses of each remote group. The tables are rebuilt
// in one atomic nftables transaction each.
func (h *Host) SetFilters(ports []PortFilter, members map[string][]string) error {
	sort.Slice(ports, func(i, j int) bool { return ports[i].PortID < ports[j].PortID })
	return h.inNamespace(func() error {
		bnft, err := knftables.New(knftables.BridgeFamily, filterTable)
		if err != nil {
			return fmt.Errorf("dataplane: nftables: %w", err)
		}
		inft, err := knftables.New(knftables.InetFamily, filterTable)
		if err != nil {
			return fmt.Errorf("dataplane: nftables: %w", err)
		}
		br, in := bnft.NewTransaction(), inft.NewTransaction()
		buildBridge(br, ports)
		buildInet(in, ports, members)
		ctx := context.Background()
		if err := bnft.Run(ctx, br); err != nil {
			return fmt.Errorf("dataplane: bridge rules: %w", err)
		}
		if err := inft.Run(ctx, in); err != nil {
			return fmt.Errorf("dataplane: inet rules: %w", err)
		}
		return nil
	})
}

// inNamespace runs fn on a thread in the host's namespace; processes it
// starts (nft) inherit that namespace.
func (h *Host) inNamespace(fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := netns.Set(h.ns); err != nil {
		return err
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		panic("dataplane: cannot return to the original namespace: " + err.Error())
	}
	return ferr
}

func split(addrs []string) (v4, v6 []string) {
	for _, a := range addrs {
		ip := a
		if i := strings.IndexByte(a, '/'); i >= 0 {
			ip = a[:i]
		}
		if p := net.ParseIP(ip); p == nil {
			continue
		} else if p.To4() != nil {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	return
}

// linkLocal is the IPv6 link-local address a MAC gives (EUI-64).
func linkLocal(mac string) string {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return ""
	}
	ip := net.IP{0xfe, 0x80, 0, 0, 0, 0, 0, 0, hw[0] ^ 2, hw[1], hw[2], 0xff, 0xfe, hw[3], hw[4], hw[5]}
	return ip.String()
}

func set(items []string) string { return "{ " + strings.Join(items, ", ") + " }" }

func buildBridge(tx *knftables.Transaction, ports []PortFilter) {
	tx.Add(&knftables.Table{})
	tx.Flush(&knftables.Table{})
	tx.Add(&knftables.Chain{Name: "ports-in", Type: knftables.PtrTo(knftables.FilterType),
		Hook: knftables.PtrTo(knftables.PreroutingHook), Priority: knftables.PtrTo(knftables.BaseChainPriority("-300"))})
	// Before br_netfilter's forward hook (priority -1): mark the output port.
	tx.Add(&knftables.Chain{Name: "ports-out", Type: knftables.PtrTo(knftables.FilterType),
		Hook: knftables.PtrTo(knftables.ForwardHook), Priority: knftables.PtrTo(knftables.BaseChainPriority("-200"))})
	for i, p := range ports {
		tap := TapName(p.PortID)
		rule := func(chain string, parts ...string) {
			tx.Add(&knftables.Rule{Chain: chain, Rule: knftables.Concat(parts)})
		}
		macs := append([]string{p.MAC}, p.PairMACs...)
		rule("ports-in", "iifname", tap, "ether saddr !=", set(macs), "drop")
		v4, v6 := split(p.Addrs)
		// DHCP: a client without an address may ask; no VM may answer.
		rule("ports-in", "iifname", tap, "ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept")
		rule("ports-in", "iifname", tap, "udp sport 67 drop")
		rule("ports-in", "iifname", tap, "udp sport 547 drop")
		rule("ports-in", "iifname", tap, "icmpv6 type nd-router-advert drop")
		if len(v4) > 0 {
			rule("ports-in", "iifname", tap, "ether type arp arp saddr ip !=", set(append(v4, "0.0.0.0")), "drop")
			rule("ports-in", "iifname", tap, "ether type ip ip saddr !=", set(v4), "drop")
		} else {
			rule("ports-in", "iifname", tap, "ether type arp arp saddr ip != 0.0.0.0 drop")
			rule("ports-in", "iifname", tap, "ether type ip drop")
		}
		ll := []string{"::"}
		if l := linkLocal(p.MAC); l != "" {
			ll = append(ll, l)
		}
		rule("ports-in", "iifname", tap, "ether type ip6 ip6 saddr !=", set(append(v6, ll...)), "drop")
		rule("ports-in", "iifname", tap, "meta mark set", fmt.Sprintf("0x%08x", (i+1)<<16))
		rule("ports-out", "oifname", tap, "meta mark set meta mark or", fmt.Sprintf("0x%08x", i+1))
	}
}

func groupSet(gid, family string) string {
	return "g" + family + "-" + strings.ReplaceAll(gid, "-", "")[:min(16, len(strings.ReplaceAll(gid, "-", "")))]
}

func buildInet(tx *knftables.Transaction, ports []PortFilter, members map[string][]string) {
	tx.Add(&knftables.Table{})
	tx.Flush(&knftables.Table{})
	for gid, addrs := range members {
		v4, v6 := split(addrs)
		for _, f := range []struct {
			fam, typ string
			elems    []string
		}{{"4", "ipv4_addr", v4}, {"6", "ipv6_addr", v6}} {
			name := groupSet(gid, f.fam)
			tx.Add(&knftables.Set{Name: name, Type: f.typ, Flags: []knftables.SetFlag{knftables.IntervalFlag}})
			for _, e := range f.elems {
				tx.Add(&knftables.Element{Set: name, Key: []string{e}})
			}
		}
	}
	tx.Add(&knftables.Chain{Name: "forward", Type: knftables.PtrTo(knftables.FilterType),
		Hook: knftables.PtrTo(knftables.ForwardHook), Priority: knftables.PtrTo(knftables.FilterPriority)})
	tx.Add(&knftables.Rule{Chain: "forward", Rule: "ct state established,related accept"})
	tx.Add(&knftables.Rule{Chain: "forward", Rule: "ct state invalid drop"})
	for i, p := range ports {
		id := strings.ReplaceAll(p.PortID, "-", "")
		id = id[:min(20, len(id))]
		out, in := "out-"+id, "in-"+id
		tx.Add(&knftables.Chain{Name: out})
		tx.Add(&knftables.Chain{Name: in})
		tx.Add(&knftables.Rule{Chain: "forward", Rule: knftables.Concat("meta mark and 0xffff0000 ==", fmt.Sprintf("0x%08x", (i+1)<<16), "jump", out)})
		tx.Add(&knftables.Rule{Chain: "forward", Rule: knftables.Concat("meta mark and 0x0000ffff ==", fmt.Sprintf("0x%08x", i+1), "jump", in)})
		// Each direction: what a port always needs (DHCP, neighbour
		// discovery), then its rules, then drop. The remote side is the
		// destination for egress and the source for ingress; an allowed
		// egress packet returns to be checked by the receiver's ingress.
		for _, d := range []struct {
			chain, remote, verdict string
			always                 []string
			rules                  []FilterRule
		}{
			{out, "daddr", "return", []string{"udp sport 68 udp dport 67", "udp sport 546 udp dport 547",
				"icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert }"}, p.Egress},
			{in, "saddr", "accept", []string{"udp sport 67 udp dport 68", "udp sport 547 udp dport 546",
				"icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert }"}, p.Ingress},
		} {
			for _, m := range d.always {
				tx.Add(&knftables.Rule{Chain: d.chain, Rule: knftables.Concat(m, d.verdict)})
			}
			for _, r := range d.rules {
				if m, ok := ruleMatch(r, members, d.remote); ok {
					tx.Add(&knftables.Rule{Chain: d.chain, Rule: knftables.Concat(m, d.verdict)})
				}
			}
			tx.Add(&knftables.Rule{Chain: d.chain, Rule: "drop"})
		}
	}
}

// ruleMatch renders a rule as an nftables match on the remote side's
// address (saddr for ingress, daddr for egress); false if it can match
// nothing, such as a remote group with no members.
func ruleMatch(r FilterRule, members map[string][]string, remote string) (string, bool) {
	fam, nfproto, l3 := "4", "ipv4", "ip"
	if r.EtherType == "IPv6" {
		fam, nfproto, l3 = "6", "ipv6", "ip6"
	}
	parts := []string{"meta nfproto", nfproto}
	switch {
	case r.RemoteCIDR != "":
		parts = append(parts, l3, remote, r.RemoteCIDR)
	case r.RemoteGroup != "":
		if _, ok := members[r.RemoteGroup]; !ok {
			return "", false
		}
		parts = append(parts, l3, remote, "@"+groupSet(r.RemoteGroup, fam))
	}
	switch p := strings.ToLower(r.Protocol); p {
	case "":
	case "tcp", "udp", "6", "17", "sctp", "132", "udplite", "136", "dccp", "33":
		names := map[string]string{"6": "tcp", "17": "udp", "132": "sctp", "136": "udplite", "33": "dccp"}
		if n, ok := names[p]; ok {
			p = n
		}
		parts = append(parts, "meta l4proto", p)
		if r.PortMin > 0 {
			parts = append(parts, "th dport", fmt.Sprintf("%d-%d", r.PortMin, max(r.PortMin, r.PortMax)))
		}
	case "icmp", "1", "ipv6-icmp", "icmpv6", "58":
		proto, kw := "icmp", "icmp"
		if fam == "6" {
			proto, kw = "ipv6-icmp", "icmpv6"
		}
		parts = append(parts, "meta l4proto", proto)
		if r.PortMin >= 0 {
			parts = append(parts, kw, "type", fmt.Sprint(r.PortMin))
			if r.PortMax >= 0 {
				parts = append(parts, kw, "code", fmt.Sprint(r.PortMax))
			}
		}
	default:
		parts = append(parts, "meta l4proto", p)
	}
	return strings.Join(parts, " "), true
}
