package ml2

import (
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
)

// Segment is one L2 segment of a network.
type Segment struct {
	NetworkType     string
	PhysicalNetwork string // "" when none
	SegmentationID  int64  // 0 when none
}

func (s Segment) object() plugin.Object {
	o := plugin.Object{"provider:network_type": s.NetworkType, "provider:physical_network": nil, "provider:segmentation_id": nil}
	if s.PhysicalNetwork != "" {
		o["provider:physical_network"] = s.PhysicalNetwork
	}
	if s.SegmentationID != 0 {
		o["provider:segmentation_id"] = float64(s.SegmentationID)
	}
	return o
}

// TypeDriver allocates and validates the segments of one network type, as
// ML2's type drivers do.
type TypeDriver interface {
	Type() string
	// Validate checks a provider segment given by an admin.
	Validate(s *Segment) error
	// Reserve records s (allocating a segmentation id when it has none).
	Reserve(c *plugin.Ctx, s *Segment, networkID string) error
	// MTU is the largest MTU a network on s can offer its ports.
	MTU(s Segment) int
	// Tenant reports whether networks of this type may be allocated for
	// tenants without provider attributes.
	Tenant() bool
}

// rangeDriver implements vlan, vxlan and gre: ids from configured ranges,
// unique per (type, physical network); and flat: one network per physnet.
type rangeDriver struct {
	typ       string
	physnet   int // 1 required, -1 forbidden
	maxID     int64
	ranges    map[string][][2]int64 // physnet ("" for tunnels) -> ranges
	physnets  map[string]bool       // known physnets (vlan, flat); "*" means any (flat)
	overhead  int
	cfg       *Config
	tenantUse bool
}

func (d *rangeDriver) Type() string { return d.typ }
func (d *rangeDriver) Tenant() bool { return d.tenantUse }

func (d *rangeDriver) MTU(s Segment) int {
	mtu := d.cfg.GlobalPhysnetMTU
	for _, pm := range d.cfg.PhysicalNetworkMTUs {
		name, v, _ := strings.Cut(pm, ":")
		if n, err := strconv.Atoi(v); err == nil && name == s.PhysicalNetwork && s.PhysicalNetwork != "" {
			mtu = n
		}
	}
	return mtu - d.overhead
}

func (d *rangeDriver) Validate(s *Segment) error {
	switch {
	case d.physnet < 0 && s.PhysicalNetwork != "":
		return fault.InvalidInput("provider:physical_network specified for %s network", d.typ)
	case d.typ == "flat" && s.PhysicalNetwork == "":
		return fault.InvalidInput("physical_network required for flat provider network")
	case d.typ == "flat" && s.SegmentationID != 0:
		return fault.InvalidInput("provider:segmentation_id specified for flat network")
	case d.typ == "flat" && !d.physnets["*"] && !d.physnets[s.PhysicalNetwork]:
		return fault.InvalidInput("physical_network '%s' unknown for flat provider network", s.PhysicalNetwork)
	case d.typ == "vlan" && s.PhysicalNetwork == "" && s.SegmentationID != 0:
		return fault.InvalidInput("segmentation_id requires physical_network for VLAN provider network")
	case d.typ == "vlan" && s.PhysicalNetwork != "" && !d.physnets[s.PhysicalNetwork]:
		return fault.InvalidInput("physical_network '%s' unknown for VLAN provider network", s.PhysicalNetwork)
	case s.SegmentationID != 0 && (s.SegmentationID < 1 || s.SegmentationID > d.maxID):
		if d.typ == "vlan" {
			return fault.InvalidInput("segmentation_id out of range (1 through 4094)")
		}
		return fault.InvalidInput("segmentation_id out of range (1 through %d)", d.maxID)
	}
	return nil
}

func (d *rangeDriver) Reserve(c *plugin.Ctx, s *Segment, networkID string) error {
	if d.typ == "flat" {
		if err := insertSegment(c, s, networkID); err != nil {
			if err == errSegmentTaken {
				return fault.Conflict("FlatNetworkInUse", "Unable to create the flat network. Physical network %s is in use.", s.PhysicalNetwork)
			}
			return err
		}
		return nil
	}
	if s.SegmentationID != 0 {
		if err := insertSegment(c, s, networkID); err != nil {
			if err == errSegmentTaken {
				if d.typ == "vlan" {
					return fault.Conflict("VlanIdInUse", "Unable to create the network. The VLAN %d on physical network %s is in use.", s.SegmentationID, s.PhysicalNetwork)
				}
				return fault.Conflict("TunnelIdInUse", "Unable to create the network. The tunnel ID %d is in use.", s.SegmentationID)
			}
			return err
		}
		return nil
	}
	// Allocate the lowest free id from the ranges (of any physnet for vlan
	// when none was named).
	var physnets []string
	if d.typ == "vlan" && s.PhysicalNetwork == "" {
		for p := range d.ranges {
			physnets = append(physnets, p)
		}
		sort.Strings(physnets)
	} else {
		physnets = []string{s.PhysicalNetwork}
	}
	for _, p := range physnets {
		for _, rg := range d.ranges[p] {
			s.PhysicalNetwork = p
			ok, err := claimSegment(c, s, rg[0], rg[1], networkID)
			if err != nil || ok {
				return err
			}
		}
	}
	return fault.New(http.StatusServiceUnavailable, "NoNetworkAvailable",
		"Unable to create the network. No tenant network is available for allocation.")
}

// claimSegment allocates an id in [lo, hi] for networkID: a few random
// probes, each one insert that yields on conflict (as Neutron picks at
// random, which also keeps a just-released id from being reused at once),
// then the lowest free id after an allocated one.
func claimSegment(c *plugin.Ctx, s *Segment, lo, hi int64, networkID string) (bool, error) {
	try := func(id int64) (bool, error) {
		ok, err := c.Tx.ClaimSegment(s.NetworkType, s.PhysicalNetwork, id, networkID)
		if ok {
			s.SegmentationID = id
		}
		return ok, err
	}
	for i := 0; i < 4; i++ {
		if ok, err := try(lo + mrand.Int64N(hi-lo+1)); ok || err != nil {
			return ok, err
		}
	}
	if ok, err := try(lo); ok || err != nil {
		return ok, err
	}
	next, ok, err := c.Tx.NextFreeSegment(s.NetworkType, s.PhysicalNetwork, lo, hi)
	if err != nil || !ok {
		return false, err
	}
	return try(next)
}

// errSegmentTaken: a requested segment is allocated already.
var errSegmentTaken = errors.New("segment in use")

func insertSegment(c *plugin.Ctx, s *Segment, networkID string) error {
	ok, err := c.Tx.ClaimSegment(s.NetworkType, s.PhysicalNetwork, s.SegmentationID, networkID)
	if err == nil && !ok {
		return errSegmentTaken
	}
	return err
}

// releaseSegments frees a network's segments.
func releaseSegments(c *plugin.Ctx, net plugin.Object) error {
	for _, s := range NetworkSegments(net) {
		if err := c.Tx.ReleaseSegment(s.NetworkType, s.PhysicalNetwork, s.SegmentationID, attr.Str(net, "id")); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) initTypes() error {
	cfg := &s.cfg
	s.types = map[string]TypeDriver{}
	tenant := map[string]bool{}
	for _, t := range cfg.TenantNetworkTypes {
		tenant[t] = true
	}
	for _, t := range cfg.TypeDrivers {
		d := &rangeDriver{typ: t, cfg: cfg, ranges: map[string][][2]int64{}, physnets: map[string]bool{}, tenantUse: tenant[t]}
		switch t {
		case "flat":
			d.physnet = 1
			for _, p := range cfg.FlatNetworks {
				d.physnets[p] = true
			}
		case "vlan":
			d.physnet, d.maxID = 1, 4094
			for _, spec := range cfg.NetworkVLANRanges {
				name, rest, hasRange := strings.Cut(spec, ":")
				d.physnets[name] = true
				if hasRange {
					lo, hi, err := parseRange(rest)
					if err != nil || lo < 1 || hi > 4094 {
						return fmt.Errorf("core: network_vlan_ranges %q: invalid", spec)
					}
					d.ranges[name] = append(d.ranges[name], [2]int64{lo, hi})
				}
			}
		case "vxlan", "gre":
			d.physnet = -1
			d.maxID = 1<<24 - 1
			d.overhead = 50
			specs := cfg.VNIRanges
			if t == "gre" {
				d.maxID, d.overhead, specs = 1<<32-1, 42, cfg.TunnelIDRanges
			}
			for _, spec := range specs {
				lo, hi, err := parseRange(spec)
				if err != nil {
					return fmt.Errorf("core: %s ranges: %w", t, err)
				}
				d.ranges[""] = append(d.ranges[""], [2]int64{lo, hi})
			}
		default:
			return fmt.Errorf("core: unknown type driver %q", t)
		}
		s.types[t] = d
	}
	return nil
}

// segmentsFromRequest reads provider:* or segments from a create request.
func segmentsFromRequest(c *plugin.Ctx, in plugin.Object) ([]Segment, error) {
	provider := false
	for _, k := range []string{"provider:network_type", "provider:physical_network", "provider:segmentation_id"} {
		if v, ok := in[k]; ok && !schema.IsUnset(v) {
			provider = true
		}
	}
	segs, hasSegs := in["segments"].([]any)
	if hasSegs && provider {
		return nil, fault.New(http.StatusBadRequest, "InvalidInput", "Invalid input for operation: Segments and provider values cannot both be set..")
	}
	var out []Segment
	parse := func(m map[string]any) (Segment, error) {
		var s Segment
		s.NetworkType, _ = m["provider:network_type"].(string)
		if schema.IsUnset(m["provider:network_type"]) {
			s.NetworkType = ""
		}
		if p, ok := m["provider:physical_network"].(string); ok {
			s.PhysicalNetwork = p
		}
		switch v := m["provider:segmentation_id"].(type) {
		case float64:
			s.SegmentationID = int64(v)
		case string:
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return s, fault.InvalidInput("'%s' is not an integer", v)
			}
			s.SegmentationID = n
		}
		if s.NetworkType == "" {
			return s, fault.InvalidInput("network_type required")
		}
		d := From(c).types[s.NetworkType]
		if d == nil {
			return s, fault.InvalidInput("network_type value '%s' not supported", s.NetworkType)
		}
		return s, d.Validate(&s)
	}
	switch {
	case hasSegs:
		for _, e := range segs {
			m, _ := e.(map[string]any)
			s, err := parse(m)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
	case provider:
		s, err := parse(in)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// allocateSegments reserves the requested segments, or a tenant segment.
func allocateSegments(c *plugin.Ctx, requested []Segment, networkID string) ([]Segment, error) {
	if len(requested) > 0 {
		for i := range requested {
			if err := From(c).types[requested[i].NetworkType].Reserve(c, &requested[i], networkID); err != nil {
				return nil, err
			}
		}
		return requested, nil
	}
	var lastErr error = fault.New(http.StatusServiceUnavailable, "NoNetworkAvailable",
		"Unable to create the network. No tenant network is available for allocation.")
	for _, t := range From(c).cfg.TenantNetworkTypes {
		d := From(c).types[t]
		if d == nil {
			continue
		}
		s := Segment{NetworkType: t}
		if err := d.Reserve(c, &s, networkID); err != nil {
			lastErr = err
			continue
		}
		return []Segment{s}, nil
	}
	return nil, lastErr
}

// networkMTU is the smallest MTU the network's segments allow.
func networkMTU(c *plugin.Ctx, segs []Segment) int {
	mtu := 0
	for _, s := range segs {
		if d := From(c).types[s.NetworkType]; d != nil {
			if m := d.MTU(s); mtu == 0 || m < mtu {
				mtu = m
			}
		}
	}
	if mtu == 0 {
		mtu = From(c).cfg.GlobalPhysnetMTU
	}
	return mtu
}

// NetworkSegments returns a network's segments as stored.
func NetworkSegments(o plugin.Object) []Segment {
	var out []Segment
	for _, e := range attr.List(o, "segments") {
		m, _ := e.(map[string]any)
		s := Segment{NetworkType: attr.Str(m, "provider:network_type"), PhysicalNetwork: attr.Str(m, "provider:physical_network")}
		if n, ok := m["provider:segmentation_id"].(float64); ok {
			s.SegmentationID = int64(n)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		if t := attr.Str(o, "provider:network_type"); t != "" {
			s := Segment{NetworkType: t, PhysicalNetwork: attr.Str(o, "provider:physical_network")}
			if n, ok := o["provider:segmentation_id"].(float64); ok {
				s.SegmentationID = int64(n)
			}
			out = append(out, s)
		}
	}
	return out
}
