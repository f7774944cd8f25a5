package dataplane

import (
	"context"
	"net"
	"slices"
	"strings"

	"sigs.k8s.io/knftables"
)

// Distributed routers have the same interfaces (addresses and MACs) on
// every host that runs them, so a host's bridges must keep their frames
// to the host: a frame from one of them leaving by a network's uplink (its
// VXLAN device, or its patch into a physical network) is one the router
// routed to a VM elsewhere, and leaves with the host's own DVR MAC as
// source instead (the remote bridges, and the physical network's
// switches, never see one router MAC from many hosts). What a router
// answers or announces (ARP, neighbour discovery, advertisements, any
// broadcast or multicast) is for the host's VMs only and does not leave;
// nor does a frame to a router's MAC (each host's VMs use their own
// router), and none comes in.

const dvrTable = "neutrino-dvr"

// uplinks match the devices by which a network's frames leave the host.
var uplinks = []string{"vxlan-*", "pn*"}

// SetDVR makes the host's DVR rules: routerMACs are the MACs of the
// distributed routers' interfaces here, hostMAC the host's DVR MAC. No
// router MAC (or no host MAC) removes the rules.
func (h *Host) SetDVR(hostMAC string, routerMACs []string) error {
	if h.closed {
		return errClosed
	}
	var macs []string
	for _, m := range routerMACs {
		if hw, err := net.ParseMAC(m); err == nil {
			macs = append(macs, hw.String())
		}
	}
	slices.Sort(macs)
	macs = slices.Compact(macs)
	hw, err := net.ParseMAC(hostMAC)
	return h.inNamespace(func() error {
		if h.nftd == nil {
			n, err := knftables.New(knftables.BridgeFamily, dvrTable)
			if err != nil {
				return err
			}
			h.nftd = n
		}
		tx := h.nftd.NewTransaction()
		tx.Add(&knftables.Table{})
		tx.Delete(&knftables.Table{})
		if len(macs) == 0 || err != nil {
			return h.nftd.Run(context.Background(), tx)
		}
		tx.Add(&knftables.Table{})
		tx.Add(&knftables.Set{Name: "routers", Type: "ether_addr"})
		for _, m := range macs {
			tx.Add(&knftables.Element{Set: "routers", Key: []string{m}})
		}
		tx.Add(&knftables.Chain{Name: "forward", Type: knftables.PtrTo(knftables.FilterType),
			Hook: knftables.PtrTo(knftables.ForwardHook), Priority: knftables.PtrTo(knftables.FilterPriority)})
		tx.Add(&knftables.Chain{Name: "out"})
		for _, up := range uplinks {
			q := `"` + up + `"`
			tx.Add(&knftables.Rule{Chain: "forward", Rule: knftables.Concat("oifname", q, "ether saddr @routers jump out")})
			tx.Add(&knftables.Rule{Chain: "forward", Rule: knftables.Concat("oifname", q, "ether daddr @routers counter drop")})
			tx.Add(&knftables.Rule{Chain: "forward", Rule: knftables.Concat("iifname", q, "ether daddr @routers counter drop")})
		}
		tx.Add(&knftables.Rule{Chain: "out", Rule: "ether type arp counter drop"})
		tx.Add(&knftables.Rule{Chain: "out", Rule: "ether daddr & 01:00:00:00:00:00 == 01:00:00:00:00:00 counter drop"})
		tx.Add(&knftables.Rule{Chain: "out", Rule: "icmpv6 type { nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect } counter drop"})
		tx.Add(&knftables.Rule{Chain: "out", Rule: knftables.Concat("counter ether saddr set", strings.ToLower(hw.String()))})
		return h.nftd.Run(context.Background(), tx)
	})
}
