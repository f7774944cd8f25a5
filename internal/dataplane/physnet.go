package dataplane

import (
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Physical networks (flat and VLAN segments) share one trunk bridge per
// physical network on each host, with the host's physical interface on it.
// Each network's bridge is joined to the trunk by a veth pair; on the
// trunk side of that pair two tc programs do what 802.1Q devices would on
// a kernel that has them (this one has neither 8021q nor bridge VLAN
// filtering):
//
//	ingress (network → trunk): VLAN networks push their tag; flat ones pass
//	                           untagged frames only.
//	egress  (trunk → network): only frames of the network's VLAN pass, with
//	                           the tag popped; flat networks take only
//	                           untagged frames.
//
// So VLAN networks on one physical network are isolated from each other
// and from its flat network.

// TrunkName is the trunk bridge of a physical network.
func TrunkName(physnet string) string {
	h := fnv.New32a()
	h.Write([]byte(physnet))
	return fmt.Sprintf("brp%08x", h.Sum32())
}

// patchNames are the network-side and trunk-side ends of a network's veth
// pair into its trunk.
func patchNames(networkID string) (netSide, trunkSide string) {
	return "pn" + short(networkID), "pt" + short(networkID)
}

// ensurePhysical wires a flat or VLAN network's bridge to its physical
// network's trunk.
func (h *Host) ensurePhysical(n Network, br netlink.Link) error {
	ifname, ok := h.Physnets[n.PhysicalNetwork]
	if !ok {
		return fmt.Errorf("dataplane: network %s: no interface for physical network %q on this host", n.ID, n.PhysicalNetwork)
	}
	if n.Type == "vlan" && (n.SegmentationID < 1 || n.SegmentationID > 4094) {
		return fmt.Errorf("dataplane: network %s: VLAN id %d out of range", n.ID, n.SegmentationID)
	}
	phy, err := h.nl.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("dataplane: physical interface %s: %w", ifname, err)
	}
	trunk, err := h.ensureLink(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: TrunkName(n.PhysicalNetwork), MTU: phy.Attrs().MTU}})
	if err != nil {
		return err
	}
	if err := h.enslave(phy, trunk); err != nil {
		return err
	}
	netSide, trunkSide := patchNames(n.ID)
	if _, err := h.ensureLink(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: netSide, MTU: n.MTU}, PeerName: trunkSide}); err != nil {
		return err
	}
	ns, err := h.nl.LinkByName(netSide)
	if err != nil {
		return fmt.Errorf("dataplane: %s: %w", netSide, err)
	}
	ts, err := h.nl.LinkByName(trunkSide)
	if err != nil {
		return fmt.Errorf("dataplane: %s: %w", trunkSide, err)
	}
	if err := h.enslave(ns, br); err != nil {
		return err
	}
	if err := h.enslave(ts, trunk); err != nil {
		return err
	}
	if err := h.ensureTags(ts, n); err != nil {
		return err
	}
	for _, l := range []netlink.Link{ns, ts} {
		if l.Attrs().MTU != n.MTU {
			if err := h.nl.LinkSetMTU(l, n.MTU); err != nil {
				return fmt.Errorf("dataplane: mtu of %s: %w", l.Attrs().Name, err)
			}
		}
	}
	for _, l := range []netlink.Link{trunk, phy, ts, ns, br} {
		if err := h.nl.LinkSetUp(l); err != nil {
			return fmt.Errorf("dataplane: up %s: %w", l.Attrs().Name, err)
		}
	}
	return h.nl.LinkSetMTU(br, n.MTU)
}

func (h *Host) enslave(l, master netlink.Link) error {
	if l.Attrs().MasterIndex == master.Attrs().Index {
		return nil
	}
	if err := h.nl.LinkSetMaster(l, master); err != nil {
		return fmt.Errorf("dataplane: %s into %s: %w", l.Attrs().Name, master.Attrs().Name, err)
	}
	return nil
}

// tagPrograms names the two programs a network needs on its trunk side;
// the names are what tc shows, and say what the programs do, so an agent
// restart can tell that what is attached is already right.
func tagPrograms(n Network) (ingress, egress string) {
	if n.Type == "vlan" {
		v := strconv.Itoa(n.SegmentationID)
		return "neutrino-vlan-push-" + v, "neutrino-vlan-pop-" + v
	}
	return "neutrino-untagged-only-in", "neutrino-untagged-out"
}

// ensureTags attaches the network's tagging programs to the trunk side of
// its patch, replacing whatever else is there.
func (h *Host) ensureTags(ts netlink.Link, n Network) error {
	idx := ts.Attrs().Index
	// The clsact qdisc is added once: replacing it (at an agent's restart)
	// would take the programs below away for a moment, and a frame with
	// them.
	qs, err := h.nl.QdiscList(ts)
	if err != nil {
		return fmt.Errorf("dataplane: qdiscs of %s: %w", ts.Attrs().Name, err)
	}
	if !slices.ContainsFunc(qs, func(q netlink.Qdisc) bool { return q.Type() == "clsact" }) {
		q := &netlink.GenericQdisc{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: idx, Handle: netlink.MakeHandle(0xffff, 0),
			Parent: netlink.HANDLE_CLSACT}, QdiscType: "clsact"}
		if err := h.nl.QdiscAdd(q); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("dataplane: clsact on %s: %w", ts.Attrs().Name, err)
		}
	}
	inName, outName := tagPrograms(n)
	for _, f := range []struct {
		parent uint32
		name   string
		prog   func(Network) asm.Instructions
	}{{netlink.HANDLE_MIN_INGRESS, inName, ingressProgram}, {netlink.HANDLE_MIN_EGRESS, outName, egressProgram}} {
		have, err := h.nl.FilterList(ts, f.parent)
		if err != nil {
			return fmt.Errorf("dataplane: filters of %s: %w", ts.Attrs().Name, err)
		}
		if len(have) == 1 {
			if b, ok := have[0].(*netlink.BpfFilter); ok && b.Name == f.name && b.DirectAction {
				continue
			}
		}
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "neutrino_vlan", Type: ebpf.SchedCLS, License: "GPL",
			Instructions: f.prog(n)})
		if err != nil {
			return fmt.Errorf("dataplane: load %s: %w", f.name, err)
		}
		for _, old := range have {
			if err := h.nl.FilterDel(old); err != nil && !errors.Is(err, syscall.ENOENT) {
				prog.Close()
				return fmt.Errorf("dataplane: remove filter on %s: %w", ts.Attrs().Name, err)
			}
		}
		err = h.nl.FilterReplace(&netlink.BpfFilter{FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: f.parent,
			Handle: 1, Protocol: unix.ETH_P_ALL, Priority: 1}, Fd: prog.FD(), Name: f.name, DirectAction: true})
		prog.Close() // the attached filter holds its own reference
		if err != nil {
			return fmt.Errorf("dataplane: attach %s on %s: %w", f.name, ts.Attrs().Name, err)
		}
	}
	return nil
}

// Offsets in struct __sk_buff and tc verdicts.
const (
	skbVlanPresent = 20
	skbVlanTCI     = 24
	tcActOK        = 0
	tcActShot      = 2
)

// ingressProgram runs on frames leaving the network for the trunk.
func ingressProgram(n Network) asm.Instructions {
	if n.Type != "vlan" {
		// A flat network sends only untagged frames: a frame a VM tagged
		// itself would otherwise reach that VLAN's network.
		return untaggedOnly()
	}
	return passOrDrop(
		// bpf_skb_vlan_push(skb, htons(ETH_P_8021Q), vid); r1 is skb.
		asm.Mov.Imm(asm.R2, int32(htons(unix.ETH_P_8021Q))),
		asm.Mov.Imm(asm.R3, int32(n.SegmentationID)),
		asm.FnSkbVlanPush.Call(),
		asm.JNE.Imm(asm.R0, 0, "drop"),
	)
}

// untaggedOnly passes untagged frames and drops tagged ones.
func untaggedOnly() asm.Instructions {
	return passOrDrop(
		asm.LoadMem(asm.R2, asm.R1, skbVlanPresent, asm.Word),
		asm.JNE.Imm(asm.R2, 0, "drop"),
	)
}

// egressProgram runs on frames leaving the trunk for the network.
func egressProgram(n Network) asm.Instructions {
	if n.Type != "vlan" {
		return untaggedOnly()
	}
	return passOrDrop(
		asm.LoadMem(asm.R2, asm.R1, skbVlanPresent, asm.Word),
		asm.JEq.Imm(asm.R2, 0, "drop"),
		asm.LoadMem(asm.R2, asm.R1, skbVlanTCI, asm.Word),
		asm.And.Imm(asm.R2, 0x0fff),
		asm.JNE.Imm(asm.R2, int32(n.SegmentationID), "drop"),
		asm.FnSkbVlanPop.Call(),
		asm.JNE.Imm(asm.R0, 0, "drop"),
	)
}

// passOrDrop ends a program: a frame that runs through prog passes, one
// that jumps to "drop" is dropped.
func passOrDrop(prog ...asm.Instruction) asm.Instructions {
	return append(prog,
		asm.Mov.Imm(asm.R0, tcActOK),
		asm.Return(),
		asm.Mov.Imm(asm.R0, tcActShot).WithSymbol("drop"),
		asm.Return(),
	)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// isPatch tells the network-side patch devices the agent made.
func isPatch(l netlink.Link) bool {
	return l.Type() == "veth" && strings.HasPrefix(l.Attrs().Name, "pn")
}
