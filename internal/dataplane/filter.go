package dataplane

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net"
	"runtime"
	"slices"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"sigs.k8s.io/knftables"
)

// Security groups and anti-spoofing, with nftables in the host's namespace.
// Per-port state lives in sets and maps, not in rules, so a host with a
// thousand ports has a few dozen rules, and a change touches only what it
// changes (elements added or deleted, one group's chain rewritten):
//
//   - table bridge neutrino: a frame from a filtered port's tap must carry
//     its MAC and one of its addresses (ARP and IPv6 too), checked against
//     sets keyed by (tap . address); a VM may not answer DHCP or send
//     router advertisements. The bridge family has no conntrack here, and
//     br_netfilter's inet hooks see only the bridge as device, so the port
//     travels in the mark: a frame from a filtered tap gets the port's
//     number in the high 16 bits; forwarded to a filtered tap, the mark is
//     replaced by that port's number (low 16 bits).
//   - table inet neutrino, reached through br_netfilter: replies of allowed
//     flows pass (conntrack). New traffic from a filtered port is checked
//     in prerouting (before the mark is replaced), by a verdict map from
//     the mark to the chain of the port's set of groups; traffic to a
//     filtered port is checked in forward, the same way. A group's rules
//     are one chain per direction shared by all its ports, ending in
//     accept (an accepted packet goes on to the next hook); remote groups
//     are address sets.

// FilterRule is one security group rule as the data plane applies it.
type FilterRule struct {
	EtherType   string // IPv4 or IPv6
	Protocol    string // "" (any), tcp, udp, icmp, ipv6-icmp, or a number
	PortMin     int    // tcp/udp: port range; icmp: type; -1 when unset
	PortMax     int    // tcp/udp: port range; icmp: code; -1 when unset
	RemoteCIDR  string
	RemoteGroup string
}

// SecurityGroup is a group's rules.
type SecurityGroup struct {
	ID      string
	Ingress []FilterRule
	Egress  []FilterRule
}

// PortFilter is a port's security state.
type PortFilter struct {
	PortID   string
	Network  string // the port's network (its conntrack zone)
	MAC      string
	Addrs    []string // allowed sources: fixed IPs and address pairs (IPs or CIDRs)
	PairMACs []string
	Groups   []string // security group ids
}

const filterTable = "neutrino"

// nftState is what the agent last wrote to one table: its sets and maps
// with their elements, and its regular chains with their rules. Base
// chains are fixed and written only when the table is built whole.
type nftState struct {
	sets   map[string]nftSet
	elems  map[string]map[string]*knftables.Element // set or map -> key -> element
	chains map[string][]string
}

type nftSet struct {
	typ    string
	typeOf bool // typ is a "typeof" expression
	isMap  bool
	flags  []knftables.SetFlag
}

func newState() *nftState {
	return &nftState{sets: map[string]nftSet{}, elems: map[string]map[string]*knftables.Element{}, chains: map[string][]string{}}
}

func (s *nftState) set(name, typ string, isMap bool, flags ...knftables.SetFlag) {
	s.sets[name] = nftSet{typ: typ, isMap: isMap, flags: flags}
	if s.elems[name] == nil {
		s.elems[name] = map[string]*knftables.Element{}
	}
}

func (s *nftState) elem(name string, key []string, value ...string) {
	e := &knftables.Element{Key: key, Value: value}
	if s.sets[name].isMap {
		e.Map = name
	} else {
		e.Set = name
	}
	s.elems[name][strings.Join(key, " . ")] = e
}

// SetFilters makes the host's filtering exactly the given ports' (ports not
// listed are not filtered: port security off, or network-owned ports), with
// groups their security groups and members[group] the addresses of each
// remote group. The first call builds both tables whole (atomically, so
// traffic and connection tracking go on undisturbed across an agent
// restart); later calls change only the differences, each table in one
// transaction.
func (h *Host) SetFilters(ports []PortFilter, groups []SecurityGroup, members map[string][]string) error {
	if h.closed {
		return errClosed
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i].PortID < ports[j].PortID })
	if len(ports) > 0xffff {
		return fmt.Errorf("dataplane: %d filtered ports on one host; at most 65535 can be filtered", len(ports))
	}
	marks := h.portMarks(ports)
	zones := h.networkZones(ports)
	if done, err := h.setMembersOnly(ports, groups, members, marks, zones); done {
		return err
	}
	h.filterIn = nil
	bridge, inet := bridgeState(ports, marks), inetState(ports, groups, members, marks, zones)
	grants := portGrants(ports, groups, members)
	err := h.inNamespace(func() error {
		var err error
		if h.nftb == nil {
			if h.nftb, err = knftables.New(knftables.BridgeFamily, filterTable); err != nil {
				return fmt.Errorf("dataplane: nftables: %w", err)
			}
			if h.nfti, err = knftables.New(knftables.InetFamily, filterTable); err != nil {
				h.nftb = nil
				return fmt.Errorf("dataplane: nftables: %w", err)
			}
		}
		if h.nftBridge, err = writeTable(h.nftb, nil, h.nftBridge, bridge, bridgeBase); err != nil {
			return fmt.Errorf("dataplane: bridge rules: %w", err)
		}
		if h.nftInet, err = writeTable(h.nfti, h.writeGroupElems, h.nftInet, inet, inetBase); err != nil {
			return fmt.Errorf("dataplane: inet rules: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Flows allowed by what was just taken away stop now, not when their
	// conntrack entries time out: established traffic is accepted before
	// any rule is looked at. A flow still allowed starts again as new.
	if err := h.revoke(ports, grants, zones); err != nil {
		return fmt.Errorf("dataplane: conntrack: %w", err)
	}
	h.filterIn = newFilterInput(ports, groups, members, marks, zones)
	return nil
}

// networkZones numbers the networks of the filtered ports and of the
// networks wired here (1 to 65535), keeping each network's zone while it
// stays: each network's bridged traffic is tracked in a conntrack zone of
// its own, so two networks with the same addresses never share a flow's
// state.
func (h *Host) networkZones(ports []PortFilter) map[string]uint16 {
	want := map[string]bool{}
	for id := range h.wired {
		want[id] = true
	}
	for _, p := range ports {
		if p.Network != "" {
			want[p.Network] = true
		}
	}
	keep := map[string]uint16{}
	used := map[uint16]bool{}
	for id := range want {
		if z, ok := h.zones[id]; ok {
			keep[id] = z
			used[z] = true
		}
	}
	next := uint16(1)
	for _, id := range sortedKeys(want) {
		if _, ok := keep[id]; ok {
			continue
		}
		for used[next] && next < 0xffff {
			next++
		}
		keep[id] = next
		used[next] = true
	}
	h.zones = keep
	return keep
}

// grant is what a port's rules let in or out ("in"/"eg" and the match),
// and the members of the remote groups they name.
type grant struct {
	rules   map[string]bool
	members map[string]bool // addresses of the remote groups' members
}

// portGrants is each filtered port's grants.
func portGrants(ports []PortFilter, groups []SecurityGroup, members map[string][]string) map[string]grant {
	byID := map[string]SecurityGroup{}
	for _, g := range groups {
		byID[g.ID] = g
	}
	out := map[string]grant{}
	for _, p := range ports {
		g := grant{rules: map[string]bool{}, members: map[string]bool{}}
		for _, gid := range p.Groups {
			for _, d := range []struct {
				dir, remote string
				rules       []FilterRule
			}{{"in", "saddr", byID[gid].Ingress}, {"eg", "daddr", byID[gid].Egress}} {
				for _, r := range d.rules {
					if m, ok := ruleMatch(r, members, d.remote); ok {
						g.rules[d.dir+" "+m] = true
						for _, a := range members[r.RemoteGroup] {
							g.members[a] = true
						}
					}
				}
			}
		}
		out[p.PortID] = g
	}
	return out
}

// revoke deletes the conntrack entries of the ports that lost a rule, or
// a remote group member (the flows with that member), since the last call.
func (h *Host) revoke(ports []PortFilter, grants map[string]grant, zones map[string]uint16) error {
	before := h.grants
	h.grants = grants
	if before == nil {
		return nil // first call: nothing known to have been taken away
	}
	var filters []netlink.CustomConntrackFilter
	for _, p := range ports {
		old, ok := before[p.PortID]
		if !ok {
			continue
		}
		now := grants[p.PortID]
		lost := false
		for r := range old.rules {
			lost = lost || !now.rules[r]
		}
		var gone []net.IP
		for a := range old.members {
			if !now.members[a] {
				gone = append(gone, parseAddr(a)...)
			}
		}
		mine := map[string]bool{}
		for _, a := range p.Addrs {
			for _, ip := range parseAddr(a) {
				mine[ip.String()] = true
			}
		}
		if lost {
			filters = append(filters, flowFilter{zone: zones[p.Network], ends: mine})
		} else if len(gone) > 0 {
			peers := map[string]bool{}
			for _, ip := range gone {
				peers[ip.String()] = true
			}
			filters = append(filters, flowFilter{zone: zones[p.Network], ends: mine, peers: peers})
		}
	}
	if len(filters) == 0 {
		return nil
	}
	for _, fam := range []netlink.InetFamily{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		if _, err := h.nl.ConntrackDeleteFilters(netlink.ConntrackTable, fam, filters...); err != nil {
			return err
		}
	}
	return nil
}

// parseAddr reads an address (a prefix stands for its first address: a
// pair's prefix has no single flow end to match).
func parseAddr(a string) []net.IP {
	if ip := net.ParseIP(a); ip != nil {
		return []net.IP{ip}
	}
	return nil
}

// flowFilter matches the flows of one zone with an end among ends (and,
// when peers is set, the other end among peers).
type flowFilter struct {
	zone        uint16
	ends, peers map[string]bool
}

func (f flowFilter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	if flow.Zone != f.zone {
		return false
	}
	src, dst := flow.Forward.SrcIP.String(), flow.Forward.DstIP.String()
	if f.peers == nil {
		return f.ends[src] || f.ends[dst]
	}
	return f.ends[src] && f.peers[dst] || f.ends[dst] && f.peers[src]
}

// portMarks numbers the filtered ports (1 to 65535: the mark holds two),
// keeping each port's number for as long as it stays (a new port does not
// renumber the others).
func (h *Host) portMarks(ports []PortFilter) map[string]uint32 {
	keep := map[string]uint32{}
	used := map[uint32]bool{}
	for _, p := range ports {
		if n, ok := h.marks[p.PortID]; ok {
			keep[p.PortID] = n
			used[n] = true
		}
	}
	next := uint32(1)
	for _, p := range ports {
		if _, ok := keep[p.PortID]; ok {
			continue
		}
		for used[next] {
			next++
		}
		keep[p.PortID] = next
		used[next] = true
	}
	h.marks = keep
	return keep
}

// writeTable makes table match want: whole when nothing is known of it
// (or the incremental change fails, as when someone else changed it),
// otherwise by the differences from have.
//
// sets, when given, writes a change of remote groups' address sets alone
// through netlink (see Host.writeGroupElems).
func writeTable(nft knftables.Interface, sets func(map[string]elemChange) error, have, want *nftState, base func(*knftables.Transaction)) (*nftState, error) {
	ctx := context.Background()
	if have != nil {
		if changes, ok := groupElemsOnly(have, want); ok && (len(changes) == 0 || sets != nil && sets(changes) == nil) {
			return want, nil
		}
		tx := nft.NewTransaction()
		diffTable(tx, have, want)
		if tx.NumOperations() == 0 {
			return want, nil
		}
		if err := nft.Run(ctx, tx); err == nil {
			return want, nil
		}
	}
	tx := nft.NewTransaction()
	tx.Add(&knftables.Table{})
	tx.Delete(&knftables.Table{})
	tx.Add(&knftables.Table{})
	diffTable(tx, newState(), want)
	base(tx)
	if err := nft.Run(ctx, tx); err != nil {
		return nil, err
	}
	return want, nil
}

// chainOrder: chains that jump to others go first when deleting.
func chainOrder(name string) int {
	if strings.HasPrefix(name, "sg") {
		return 1
	}
	return 0
}

// diffTable adds to tx what turns have into want: new sets and chains,
// rewritten chains, elements added and removed, then what is gone.
func diffTable(tx *knftables.Transaction, have, want *nftState) {
	for _, name := range sortedKeys(want.sets) {
		if _, ok := have.sets[name]; !ok {
			d := want.sets[name]
			switch {
			case d.isMap && d.typeOf:
				tx.Add(&knftables.Map{Name: name, TypeOf: d.typ, Flags: d.flags})
			case d.isMap:
				tx.Add(&knftables.Map{Name: name, Type: d.typ, Flags: d.flags})
			case d.typeOf:
				tx.Add(&knftables.Set{Name: name, TypeOf: d.typ, Flags: d.flags})
			default:
				tx.Add(&knftables.Set{Name: name, Type: d.typ, Flags: d.flags})
			}
		}
	}
	for _, name := range sortedKeys(want.chains) {
		if _, ok := have.chains[name]; !ok {
			tx.Add(&knftables.Chain{Name: name})
		}
	}
	for _, name := range sortedKeys(want.chains) {
		rules, old := want.chains[name], have.chains[name]
		if _, existed := have.chains[name]; existed && slices.Equal(rules, old) {
			continue
		}
		if _, existed := have.chains[name]; existed {
			tx.Flush(&knftables.Chain{Name: name})
		}
		for _, r := range rules {
			tx.Add(&knftables.Rule{Chain: name, Rule: r})
		}
	}
	for _, name := range sortedKeys(want.elems) {
		cur := have.elems[name]
		for _, key := range sortedKeys(want.elems[name]) {
			e := want.elems[name][key]
			if old, ok := cur[key]; ok {
				if slices.Equal(old.Value, e.Value) {
					continue
				}
				tx.Delete(old)
			}
			tx.Add(e)
		}
	}
	for _, name := range sortedKeys(have.elems) {
		if _, ok := want.sets[name]; !ok {
			continue // the whole set goes below
		}
		for _, key := range sortedKeys(have.elems[name]) {
			if _, ok := want.elems[name][key]; !ok {
				tx.Delete(have.elems[name][key])
			}
		}
	}
	gone := []string{}
	for name := range have.chains {
		if _, ok := want.chains[name]; !ok {
			gone = append(gone, name)
		}
	}
	sort.Slice(gone, func(i, j int) bool {
		if a, b := chainOrder(gone[i]), chainOrder(gone[j]); a != b {
			return a < b
		}
		return gone[i] < gone[j]
	})
	for _, name := range gone {
		tx.Flush(&knftables.Chain{Name: name})
	}
	for _, name := range gone {
		tx.Delete(&knftables.Chain{Name: name})
	}
	for _, name := range sortedKeys(have.sets) {
		if _, ok := want.sets[name]; !ok {
			if have.sets[name].isMap {
				tx.Delete(&knftables.Map{Name: name})
			} else {
				tx.Delete(&knftables.Set{Name: name})
			}
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// inNamespace runs fn on a thread in the host's namespace; processes it
// starts (nft) inherit that namespace.
func (h *Host) inNamespace(fn func() error) error { return InNamespace(h.ns, fn) }

// InNamespace runs fn on a thread inside namespace ns.
func InNamespace(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
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

// LinkLocal is the IPv6 link-local address a MAC gives (EUI-64; "" for
// no MAC).
func LinkLocal(mac string) string {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return ""
	}
	ip := net.IP{0xfe, 0x80, 0, 0, 0, 0, 0, 0, hw[0] ^ 2, hw[1], hw[2], 0xff, 0xfe, hw[3], hw[4], hw[5]}
	return ip.String()
}

func quote(s string) string { return `"` + s + `"` }

func markHex(n uint32) string { return fmt.Sprintf("0x%08x", n) }

// bridgeState: each filtered port's chain, which its tap jumps to from the
// ports map (one lookup per packet; other devices' packets pass), checking
// its MAC and source addresses with plain comparisons and anonymous sets,
// then marking the packet with the port's number for the inet table; and
// the map from taps to their numbers as an output port.
func bridgeState(ports []PortFilter, marks map[string]uint32) *nftState {
	s := newState()
	s.set("ports", "ifname : verdict", true)
	s.set("outmark", "ifname : mark", true)
	for _, p := range ports {
		tap := quote(TapName(p.PortID))
		chain := "port-" + shortID(p.PortID, 20)
		s.chains[chain] = portRules(p, marks[p.PortID])
		s.elem("ports", []string{tap}, "goto "+chain)
		s.elem("outmark", []string{tap}, markHex(marks[p.PortID]))
	}
	return s
}

// portRules is a filtered port's anti-spoofing: only its MACs, its
// addresses (0.0.0.0: DHCP discovery and ARP probes; ::, link-local: DAD
// and neighbour discovery), neighbour advertisements for its own addresses
// (the target sits 8 bytes into the ICMPv6 message; nft has no name for
// it, so it is matched as a 128-bit number), and no DHCP answers or router
// advertisements: a VM may not act as a DHCP server or a router.
func portRules(p PortFilter, mark uint32) []string {
	var macs []string
	for _, m := range append([]string{p.MAC}, p.PairMACs...) {
		if hw, err := net.ParseMAC(m); err == nil && !slices.Contains(macs, hw.String()) {
			macs = append(macs, hw.String())
		}
	}
	v4, v6 := split(p.Addrs)
	v4 = append(v4, "0.0.0.0")
	var nd6 []string
	for _, a := range v6 {
		nd6 = append(nd6, v6Number(a))
	}
	if ll := LinkLocal(p.MAC); ll != "" {
		v6 = append(v6, ll)
		nd6 = append(nd6, v6Number(ll))
	}
	v6 = append(v6, "::")
	if len(macs) == 0 {
		return []string{"drop"} // no MAC it may send from
	}
	rules := []string{"ether saddr != " + anonSet(macs) + " drop",
		"ether type ip ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept",
		"udp sport { 67, 547 } drop",
		"icmpv6 type nd-router-advert drop",
		"ether type arp arp saddr ip != " + anonSet(v4) + " drop",
		"ether type ip ip saddr != " + anonSet(v4) + " drop",
		"ether type ip6 ip6 saddr != " + anonSet(v6) + " drop"}
	if len(nd6) > 0 {
		rules = append(rules, "icmpv6 type nd-neighbor-advert @th,64,128 != "+anonSet(nd6)+" drop")
	} else {
		rules = append(rules, "icmpv6 type nd-neighbor-advert drop")
	}
	return append(rules, "meta mark set "+markHex(mark<<16))
}

// anonSet writes values as one value or an anonymous set.
func anonSet(values []string) string {
	if len(values) == 1 {
		return values[0]
	}
	return "{ " + strings.Join(values, ", ") + " }"
}

// v6Number writes an IPv6 address, or a prefix as a range, as nft numbers.
func v6Number(a string) string {
	hexOf := func(ip net.IP) string { return "0x" + hex.EncodeToString(ip.To16()) }
	if _, cidr, err := net.ParseCIDR(a); err == nil {
		last := make(net.IP, 16)
		for i := range last {
			last[i] = cidr.IP.To16()[i] | ^cidr.Mask[i]
		}
		return hexOf(cidr.IP) + "-" + hexOf(last)
	}
	return hexOf(net.ParseIP(a))
}

func bridgeBase(tx *knftables.Transaction) {
	tx.Add(&knftables.Chain{Name: "ports-in", Type: knftables.PtrTo(knftables.FilterType),
		Hook: knftables.PtrTo(knftables.PreroutingHook), Priority: knftables.PtrTo(knftables.BaseChainPriority("-300"))})
	tx.Add(&knftables.Rule{Chain: "ports-in", Rule: "iifname vmap @ports"})
	// Before br_netfilter's forward hook (priority -1): mark the output port.
	tx.Add(&knftables.Chain{Name: "ports-out", Type: knftables.PtrTo(knftables.FilterType),
		Hook: knftables.PtrTo(knftables.ForwardHook), Priority: knftables.PtrTo(knftables.BaseChainPriority("-200"))})
	tx.Add(&knftables.Rule{Chain: "ports-out", Rule: "meta mark set oifname map @outmark"})
}

func groupSet(gid, family string) string {
	return "g" + family + "-" + shortID(gid, 16)
}

func shortID(id string, n int) string {
	id = strings.ReplaceAll(id, "-", "")
	return id[:min(n, len(id))]
}

func groupChain(dir, gid string) string { return "sg" + dir + "-" + shortID(gid, 20) }

// comboChain names the chain of one set of groups (ports with the same
// groups share it).
func comboChain(dir string, gids []string) string {
	sum := sha1.Sum([]byte(strings.Join(gids, ",")))
	return dir + "-" + hex.EncodeToString(sum[:8])
}

// inetState: the groups' chains, the remote-group sets, and the maps from
// ports to the chains of their groups.
func inetState(ports []PortFilter, groups []SecurityGroup, members map[string][]string, marks map[string]uint32, zones map[string]uint16) *nftState {
	s := newState()
	s.set("zones", "iifname : ct zone", true)
	s.sets["zones"] = nftSet{typ: "iifname : ct zone", typeOf: true, isMap: true}
	for id, z := range zones {
		s.elem("zones", []string{quote(BridgeName(id))}, fmt.Sprint(z))
	}
	s.set("egress", "mark : verdict", true)
	s.set("ingress", "mark : verdict", true)
	byID := map[string]SecurityGroup{}
	for _, g := range groups {
		byID[g.ID] = g
	}
	used := map[string]bool{}
	for _, p := range ports {
		gids := slices.Clone(p.Groups)
		sort.Strings(gids)
		gids = slices.Compact(gids)
		eg, in := comboChain("eg", gids), comboChain("in", gids)
		if _, ok := s.chains[eg]; !ok {
			// What a port always needs (DHCP, neighbour discovery), then
			// its groups (each accepts what it allows), then drop.
			egress := []string{"ct state invalid drop", "udp sport 68 udp dport 67 accept", "udp sport 546 udp dport 547 accept",
				"icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept"}
			ingress := []string{"ct state invalid drop", "udp sport 67 udp dport 68 accept", "udp sport 547 udp dport 546 accept",
				"icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } accept"}
			for _, g := range gids {
				egress = append(egress, "jump "+groupChain("e", g))
				ingress = append(ingress, "jump "+groupChain("i", g))
				used[g] = true
			}
			s.chains[eg], s.chains[in] = append(egress, "drop"), append(ingress, "drop")
		}
		s.elem("egress", []string{markHex(marks[p.PortID] << 16)}, "goto "+eg)
		s.elem("ingress", []string{markHex(marks[p.PortID])}, "goto "+in)
	}
	remote := map[string]bool{}
	for g := range used {
		eg, in := []string{}, []string{}
		for _, d := range []struct {
			rules  []FilterRule
			remote string
			out    *[]string
		}{{byID[g].Egress, "daddr", &eg}, {byID[g].Ingress, "saddr", &in}} {
			for _, r := range d.rules {
				if m, ok := ruleMatch(r, members, d.remote); ok {
					*d.out = append(*d.out, m+" accept")
					if r.RemoteGroup != "" {
						remote[r.RemoteGroup] = true
					}
				}
			}
		}
		s.chains[groupChain("e", g)], s.chains[groupChain("i", g)] = eg, in
	}
	for gid := range remote {
		v4, v6 := split(members[gid])
		for _, f := range []struct {
			fam, typ string
			elems    []string
		}{{"4", "ipv4_addr", v4}, {"6", "ipv6_addr", v6}} {
			name := groupSet(gid, f.fam)
			s.set(name, f.typ, false, knftables.IntervalFlag)
			for _, e := range f.elems {
				s.elem(name, []string{e})
			}
		}
	}
	return s
}

func inetBase(tx *knftables.Transaction) {
	// Before conntrack (-200): each network's bridged traffic in its zone
	// (br_netfilter shows the bridge as the input device).
	tx.Add(&knftables.Chain{Name: "zone", Type: knftables.PtrTo(knftables.FilterType),
		Hook: knftables.PtrTo(knftables.PreroutingHook), Priority: knftables.PtrTo(knftables.RawPriority)})
	tx.Add(&knftables.Rule{Chain: "zone", Rule: "ct zone set iifname map @zones"})
	for _, c := range []struct{ name, hook, match string }{
		// Prerouting runs after conntrack (-200), before the bridge's
		// forward chain replaces the mark.
		{"from-ports", string(knftables.PreroutingHook), "meta mark and 0xffff0000 vmap @egress"},
		{"to-ports", string(knftables.ForwardHook), "meta mark and 0x0000ffff vmap @ingress"},
	} {
		tx.Add(&knftables.Chain{Name: c.name, Type: knftables.PtrTo(knftables.FilterType),
			Hook: knftables.PtrTo(knftables.BaseChainHook(c.hook)), Priority: knftables.PtrTo(knftables.FilterPriority)})
		tx.Add(&knftables.Rule{Chain: c.name, Rule: "ct state established,related accept"})
		tx.Add(&knftables.Rule{Chain: c.name, Rule: c.match})
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
