package dataplane

import (
	"errors"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/google/nftables"
)

// Remote groups' address sets change with every VM that joins or leaves a
// group, on every host holding the group: the hot path of the filters.
// Such a change, when it is all that changed in a table, is written
// through netlink in one batch (atomic, as an nft transaction is) instead
// of by an nft process, whose start costs more than the change (a new
// member on 50 hosts: nft processes were 46 % of the machine's CPU).

// nlGroupWrites counts the changes written through netlink (for tests).
var nlGroupWrites atomic.Int64

// elemChange is what to add to and take out of one set.
type elemChange struct{ add, remove []string }

// groupElemsOnly returns, per set, the elements to add and remove when
// the only difference between have and want is the elements of remote
// groups' address sets; ok is false otherwise.
func groupElemsOnly(have, want *nftState) (map[string]elemChange, bool) {
	if len(have.sets) != len(want.sets) || len(have.chains) != len(want.chains) {
		return nil, false
	}
	for name, d := range want.sets {
		if h, ok := have.sets[name]; !ok || h.typ != d.typ || h.isMap != d.isMap || h.typeOf != d.typeOf || !slices.Equal(h.flags, d.flags) {
			return nil, false
		}
	}
	for name, rules := range want.chains {
		if old, ok := have.chains[name]; !ok || !slices.Equal(old, rules) {
			return nil, false
		}
	}
	out := map[string]elemChange{}
	for name := range want.sets {
		cur, next := have.elems[name], want.elems[name]
		group := strings.HasPrefix(name, "g4-") || strings.HasPrefix(name, "g6-")
		var ch elemChange
		for key, e := range next {
			old, ok := cur[key]
			if !ok {
				ch.add = append(ch.add, key)
			} else if !slices.Equal(old.Value, e.Value) {
				return nil, false
			}
		}
		for key := range cur {
			if _, ok := next[key]; !ok {
				ch.remove = append(ch.remove, key)
			}
		}
		if len(ch.add)+len(ch.remove) == 0 {
			continue
		}
		if !group {
			return nil, false
		}
		slices.Sort(ch.add)
		slices.Sort(ch.remove)
		out[name] = ch
	}
	return out, true
}

// writeGroupElems applies the changes to the inet table's sets through
// netlink, in one batch, on a connection kept open in the host's namespace.
// (One opened per batch from a thread switched into the namespace cost ten
// times the change: the Go runtime hands such a locked thread over at
// every wait on the socket.)
func (h *Host) writeGroupElems(changes map[string]elemChange) error {
	if h.nft == nil {
		c, err := nftables.New(nftables.WithNetNSFd(int(h.ns)), nftables.AsLasting())
		if err != nil {
			return err
		}
		h.nft = c
	}
	if err := writeGroupElems(h.nft, filterTable, changes); err != nil {
		h.nft.CloseLasting()
		h.nft = nil // a new connection next time
		return err
	}
	return nil
}

// writeGroupElems writes the changes to table's sets on c, in one batch.
func writeGroupElems(c *nftables.Conn, table string, changes map[string]elemChange) error {
	t := &nftables.Table{Name: table, Family: nftables.TableFamilyINet}
	for _, name := range slices.Sorted(maps.Keys(changes)) {
		ch := changes[name]
		set := &nftables.Set{Table: t, Name: name, KeyType: nftables.TypeIPAddr, Interval: true}
		if strings.HasPrefix(name, "g6-") {
			set.KeyType = nftables.TypeIP6Addr
		}
		remove, err := intervalElems(ch.remove)
		if err != nil {
			return err
		}
		add, err := intervalElems(ch.add)
		if err != nil {
			return err
		}
		if len(remove) > 0 {
			if err := c.SetDeleteElements(set, remove); err != nil {
				return err
			}
		}
		if len(add) > 0 {
			if err := c.SetAddElements(set, add); err != nil {
				return err
			}
		}
	}
	if err := c.Flush(); err != nil {
		return err
	}
	nlGroupWrites.Add(1)
	return nil
}

// intervalElems turns addresses and prefixes into an interval set's
// elements, as nft does: each range's first address, and the address after
// its last marked as the interval's end.
func intervalElems(keys []string) ([]nftables.SetElement, error) {
	var out []nftables.SetElement
	for _, k := range keys {
		p, err := netip.ParsePrefix(k)
		if err != nil {
			a, aerr := netip.ParseAddr(k)
			if aerr != nil {
				return nil, err
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		p = p.Masked()
		last := lastAddr(p)
		end := last.Next()
		if !end.IsValid() {
			return nil, errors.New("dataplane: a range to the end of the address space") // nft marks it otherwise
		}
		out = append(out, nftables.SetElement{Key: p.Addr().AsSlice()}, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
	}
	return out, nil
}

// lastAddr is the last address of prefix p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
