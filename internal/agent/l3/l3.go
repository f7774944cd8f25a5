// Package l3 is the host agent's L3 concern: a namespace per router
// hosted here (router.Router), made from the router, its ports (bound
// to this host), their subnets and its floating IPs.
package l3

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"neutrino/internal/agent/concern"
	"neutrino/internal/attr"
	"neutrino/internal/dataplane"
	"neutrino/internal/dataplane/router"
	"neutrino/internal/hostapi"
)

// Routers is the L3 reconciler.
type Routers struct {
	routers map[string]*router.Router // by namespace
	applied concern.Memo

	// HA router instances: the states last reported, and the watch that
	// reports a change at once.
	haAdvert   time.Duration
	reportMu   sync.Mutex // one report at a time
	haMu       sync.Mutex
	ha         map[string]*router.Router // HA routers here, by router id
	haReported map[string]string         // router id -> state
	haWatching bool

	// mode is the agent's mode (legacy, dvr, dvr_snat); fips are the
	// floating IP namespaces here, by name.
	mode string
	fips map[string]*router.FIPNamespace
}

// HAStateRoot keeps each HA router instance's keepalived files, under the
// router namespace's name.
var HAStateRoot = "/run/neutrino/keepalived"

// DefaultHAAdvert is the VRRP advertisement interval of HA routers unless
// told otherwise: a standby takes over from a master that died about three
// intervals after its last advertisement (Neutron's default, 2 s, makes
// that 6 s or more).
const DefaultHAAdvert = 200 * time.Millisecond

// New returns the L3 reconciler; haAdvert is HA routers' VRRP
// advertisement interval (0: DefaultHAAdvert), mode the agent's mode
// (ModeLegacy, ModeDVR or ModeDVRSNAT; "": legacy).
func New(haAdvert time.Duration, mode string) *Routers {
	if haAdvert <= 0 {
		haAdvert = DefaultHAAdvert
	}
	if mode == "" {
		mode = ModeLegacy
	}
	return &Routers{routers: map[string]*router.Router{}, ha: map[string]*router.Router{}, haAdvert: haAdvert,
		mode: mode, fips: map[string]*router.FIPNamespace{}}
}

func (*Routers) Name() string { return "l3" }
func (*Routers) Kinds() []string {
	return []string{"router", "floatingip", "l3_binding", "port", "subnet", "network", "dvr_host_mac"}
}

// Close stops the routers' advertisements and the HA watch (the
// namespaces, and HA routers' keepalived, stay).
func (r *Routers) Close() {
	for _, rt := range r.routers {
		rt.Close()
	}
	r.haMu.Lock()
	r.ha = nil
	r.haMu.Unlock()
}

// Dev names the router end of a router port's veth pair.
func Dev(port map[string]any) string {
	prefix := "qr-"
	switch attr.Str(port, "device_owner") {
	case hostapi.OwnerRouterGateway:
		prefix = "qg-"
	case hostapi.OwnerRouterSNAT:
		prefix = "sg-"
	}
	id := attr.Str(port, "id")
	return prefix + id[:min(11, len(id))]
}

// Ports are a router's ports in the span.
func Ports(span *hostapi.Span, routerID string) []map[string]any {
	var out []map[string]any
	for _, p := range span.Ports {
		if attr.Str(p, "device_id") == routerID && hostapi.IsRouterPort(attr.Str(p, "device_owner")) &&
			attr.Str(p, "device_owner") != hostapi.OwnerRouterHA {
			out = append(out, p)
		}
	}
	return out
}

// Apply implements concern.Reconciler.
func (r *Routers) Apply(ctx context.Context, env *concern.Env, span *hostapi.Span) error {
	r.applied.Reset(env)
	var errs []string
	subnets := map[string]map[string]any{}
	for _, sn := range span.Subnets {
		subnets[attr.Str(sn, "id")] = sn
	}
	want := map[string]bool{}
	fipNS, err := r.applyFIPNamespaces(env, span, subnets, want)
	if err != nil {
		errs = append(errs, err.Error())
	}
	var routerMACs []string
	for _, rt := range span.Routers {
		if rt["admin_state_up"] != true {
			continue
		}
		id := attr.Str(rt, "id")
		all := Ports(span, id)
		var fips []map[string]any
		for _, f := range span.FloatingIPs {
			if attr.Str(f, "router_id") == id {
				fips = append(fips, f)
			}
		}
		if rt["distributed"] != true {
			if err := r.applyRouter(ctx, env, span, rt, env.NSName(concern.RouterNS, id), all, fips, subnets, nil, want); err != nil {
				errs = append(errs, fmt.Sprintf("router %s: %v", id, err))
			}
			continue
		}
		// A distributed router: its centralized part here if this host
		// runs it (its gateway is bound here, or it has an HA instance
		// here), its distributed part if VMs here are on its networks.
		dvr, central := r.split(env, span, all, fips)
		if hostsCentral(env, span, rt) {
			if err := r.applyRouter(ctx, env, span, rt, env.NSName(concern.SNATNS, id), central.ports, central.fips, subnets, nil, want); err != nil {
				errs = append(errs, fmt.Sprintf("router %s (snat): %v", id, err))
			}
		}
		if !distributed(r.mode) || !servesVMs(env, span, dvr.ports) {
			continue
		}
		d := dvrOf(span, rt, dvr.ports, subnets, fipNS)
		if err := r.applyRouter(ctx, env, span, rt, env.NSName(concern.RouterNS, id), dvr.ports, dvr.fips, subnets, d, want); err != nil {
			errs = append(errs, fmt.Sprintf("router %s: %v", id, err))
		}
		for _, p := range dvr.ports {
			routerMACs = append(routerMACs, attr.Str(p, "mac_address"))
		}
	}
	// The host's bridges keep the distributed routers' frames here.
	var hostMAC string
	for _, m := range span.DVRMACs {
		if attr.Str(m, "host") == env.HostName {
			hostMAC = attr.Str(m, "mac_address")
		}
	}
	sort.Strings(routerMACs)
	if err := r.applied.Once("dvr", fmt.Sprint(hostMAC, routerMACs), func() error { return env.Host.SetDVR(hostMAC, routerMACs) }); err != nil {
		errs = append(errs, "dvr rules: "+err.Error())
	}
	// Routers no longer hosted here (deleted, moved, disabled) go, and
	// their ports' devices with their namespaces.
	for _, kind := range []string{concern.RouterNS, concern.SNATNS, concern.FIPNS} {
		dataplane.SweepNamespaces(env.NSPrefix(kind), want, r.forget)
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// forget stops what a namespace that goes runs (its HA instance).
func (r *Routers) forget(ns string) {
	if rt := r.routers[ns]; rt != nil {
		r.haMu.Lock()
		for id, h := range r.ha {
			if h == rt {
				delete(r.ha, id)
			}
		}
		r.haMu.Unlock()
		rt.StopHA()
		rt.Close()
	} else {
		router.KillHA(filepath.Join(HAStateRoot, ns)) // left by an earlier agent
	}
	delete(r.fips, ns)
	delete(r.applied, "router "+ns)
	delete(r.applied, "neighbors "+ns)
	delete(r.applied, "fip "+ns)
	delete(r.routers, ns)
}

// applyRouter makes namespace ns the router (or, with d, its distributed
// part) from its ports and floating IPs here.
func (r *Routers) applyRouter(ctx context.Context, env *concern.Env, span *hostapi.Span, rt map[string]any, ns string,
	ports, fips []map[string]any, subnets map[string]map[string]any, d *router.DVR, want map[string]bool) error {
	want[ns] = true
	// Everything the router's namespace is made from.
	var used []any
	for _, p := range ports {
		used = append(used, env.Nets[attr.Str(p, "network_id")])
		for _, f := range attr.Objects(p, "fixed_ips") {
			used = append(used, subnets[attr.Str(f, "subnet_id")])
		}
	}
	var ha *router.HA
	if rt["ha"] == true && d == nil {
		if ha = haOf(env, span, rt, subnets, ns, r.haAdvert); ha == nil {
			return nil // its HA port here is not there yet: no instance
		}
		used = append(used, *ha)
	}
	if d != nil {
		used = append(used, *d)
	}
	existing, exists := r.routers[ns]
	if exists && ha != nil && existing.HAState() == router.HAFault {
		delete(r.applied, "router "+ns) // keepalived died: fenced, start it again
	}
	err := r.applied.Once("router "+ns, fmt.Sprint(rt, ports, fips, used, exists && dataplane.NamespaceExists(ns)), func() error {
		return r.ensure(ctx, env, ns, rt, ports, fips, subnets, ha, d)
	})
	if err != nil {
		return err
	}
	if ha != nil {
		r.watchHA(env, attr.Str(rt, "id"), r.routers[ns])
	}
	if d != nil {
		return nil // its neighbours are permanent (DVR.Neighbors)
	}
	// The peers on its networks, whose MACs it is given (see
	// router.Router.SeedNeighbors): again when they change.
	neigh := neighbors(span, ports, subnets, false)
	return r.applied.Once("neighbors "+ns, fmt.Sprint(neigh), func() error {
		return r.routers[ns].SeedNeighbors(neigh)
	})
}

func (r *Routers) ensure(ctx context.Context, env *concern.Env, ns string, rt map[string]any, ports, fips []map[string]any,
	subnets map[string]map[string]any, ha *router.HA, d *router.DVR) error {
	rtr := r.routers[ns]
	if rtr == nil || !dataplane.NamespaceExists(ns) {
		if rtr != nil {
			rtr.Close() // its sockets belong to the namespace that vanished
		}
		var err error
		if rtr, _, err = router.Open(ns, env.NetNS); err != nil {
			return err
		}
		r.routers[ns] = rtr
	}
	spec := router.Spec{HA: ha, DVR: d}
	var gwIPs []netip.Addr
	var internal []string
	for _, p := range ports {
		n, ok := env.Nets[attr.Str(p, "network_id")]
		if !ok {
			continue // its network is not wired here yet
		}
		dev := Dev(p)
		rp := router.Port{PortVeth: dataplane.PortVeth{Tap: dataplane.TapName(attr.Str(p, "id")), Dev: dev,
			MAC: attr.Str(p, "mac_address"), MTU: n.MTU}, Addrs: []string{}}
		if c, ok := raFor(p, subnets, n.MTU); ok && strings.HasPrefix(dev, "qr-") {
			rp.RA = &c
		}
		for _, f := range attr.Objects(p, "fixed_ips") {
			sn := subnets[attr.Str(f, "subnet_id")]
			if sn == nil {
				continue
			}
			cidr := attr.Str(sn, "cidr")
			rp.Addrs = append(rp.Addrs, attr.Str(f, "ip_address")+cidr[strings.LastIndex(cidr, "/"):])
			if strings.HasPrefix(dev, "qg-") {
				if ip, err := netip.ParseAddr(attr.Str(f, "ip_address")); err == nil {
					gwIPs = append(gwIPs, ip)
				}
				if gw := net.ParseIP(attr.Str(sn, "gateway_ip")); gw != nil {
					spec.DefaultGateways = append(spec.DefaultGateways, gw)
				} else if strings.Contains(cidr, ":") {
					spec.LearnRA = true // an external IPv6 subnet without a gateway
				}
			} else {
				internal = append(internal, cidr)
			}
		}
		if strings.HasPrefix(dev, "qg-") {
			spec.Gateway = dev
		}
		spec.Ports = append(spec.Ports, rp)
	}
	for _, e := range attr.Objects(rt, "routes") {
		spec.Routes = append(spec.Routes, router.Route{Destination: attr.Str(e, "destination"), NextHop: attr.Str(e, "nexthop")})
	}
	for _, f := range fips {
		spec.FloatingIPs = append(spec.FloatingIPs, router.FloatingIP{Address: attr.Str(f, "floating_ip_address"), Fixed: attr.Str(f, "fixed_ip_address")})
	}
	info, _ := rt["external_gateway_info"].(map[string]any)
	if info != nil && info["enable_snat"] != false && d == nil {
		for _, ip := range gwIPs {
			if ip.Is4() {
				spec.SNATAddress = ip.String()
				break
			}
		}
		spec.SNAT = internal
	}
	return rtr.Apply(ctx, spec)
}

// neighbors are the peers' addresses on the subnets of a router's
// internal (and SNAT) ports, by the port's device; withLocal adds the
// ports bound here.
func neighbors(span *hostapi.Span, ports []map[string]any, subnets map[string]map[string]any, withLocal bool) map[string][]router.Neighbor {
	out := map[string][]router.Neighbor{}
	for _, p := range ports {
		dev := Dev(p)
		if !strings.HasPrefix(dev, "qr-") && !strings.HasPrefix(dev, "sg-") {
			continue
		}
		var prefixes []netip.Prefix
		for _, f := range attr.Objects(p, "fixed_ips") {
			if pf, err := netip.ParsePrefix(attr.Str(subnets[attr.Str(f, "subnet_id")], "cidr")); err == nil {
				prefixes = append(prefixes, pf)
			}
		}
		for _, peer := range peersOf(span, withLocal) {
			if peer.NetworkID != attr.Str(p, "network_id") {
				continue
			}
			mac, err := net.ParseMAC(peer.MACAddress)
			if err != nil {
				continue
			}
			for _, ip := range peer.IPs {
				a, err := netip.ParseAddr(ip)
				if err != nil {
					continue
				}
				for _, pf := range prefixes {
					if pf.Contains(a) {
						out[dev] = append(out[dev], router.Neighbor{IP: net.IP(a.AsSlice()), MAC: mac})
						break
					}
				}
			}
		}
	}
	return out
}

// peersOf are the span's peers, and with local the ports bound here too
// (but routers' interfaces: a distributed router's are its own).
func peersOf(span *hostapi.Span, local bool) []hostapi.Peer {
	if !local {
		return span.Peers
	}
	out := slices.Clip(span.Peers)
	for _, p := range span.Ports {
		if hostapi.IsRouterInterface(attr.Str(p, "device_owner")) || attr.Str(p, "binding:host_id") == "" {
			continue
		}
		peer := hostapi.Peer{NetworkID: attr.Str(p, "network_id"), PortID: attr.Str(p, "id"), MACAddress: attr.Str(p, "mac_address")}
		for _, f := range attr.Objects(p, "fixed_ips") {
			peer.IPs = append(peer.IPs, attr.Str(f, "ip_address"))
		}
		for _, f := range attr.Objects(p, "allowed_address_pairs") {
			if m := attr.Str(f, "mac_address"); m == "" || m == peer.MACAddress {
				peer.IPs = append(peer.IPs, attr.Str(f, "ip_address"))
			}
		}
		out = append(out, peer)
	}
	return out
}

// raFor derives an interface's advertisement from its port's subnets, per
// ipv6_ra_mode, as Neutron's radvd does:
//
//	slaac             prefix on-link and autonomous
//	dhcpv6-stateless  prefix on-link and autonomous, O flag (options by DHCPv6)
//	dhcpv6-stateful   prefix on-link only, M and O flags (addresses by DHCPv6)
//
// ok is false when no subnet asks for advertisements.
func raFor(p map[string]any, subnets map[string]map[string]any, mtu int) (router.RA, bool) {
	cfg := router.RA{MTU: mtu}
	cfg.MAC, _ = net.ParseMAC(attr.Str(p, "mac_address"))
	for _, f := range attr.Objects(p, "fixed_ips") {
		sn := subnets[attr.Str(f, "subnet_id")]
		mode := attr.Str(sn, "ipv6_ra_mode")
		if sn == nil || mode == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(attr.Str(sn, "cidr"))
		if err != nil || !prefix.Addr().Is6() {
			continue
		}
		cfg.Prefixes = append(cfg.Prefixes, router.RAPrefix{Prefix: prefix, Autonomous: mode != "dhcpv6-stateful"})
		switch mode {
		case "dhcpv6-stateful":
			cfg.Managed, cfg.Other = true, true
		case "dhcpv6-stateless":
			cfg.Other = true
		}
		dns, _ := sn["dns_nameservers"].([]any)
		for _, d := range dns {
			if a, err := netip.ParseAddr(fmt.Sprint(d)); err == nil && a.Is6() {
				cfg.DNS = append(cfg.DNS, a)
			}
		}
	}
	sort.Slice(cfg.Prefixes, func(i, j int) bool { return cfg.Prefixes[i].Prefix.String() < cfg.Prefixes[j].Prefix.String() })
	return cfg, len(cfg.Prefixes) > 0
}

// haOf is the HA part of an HA router's instance here: its HA port (bound
// to this host), its address on the HA network and the router's virtual
// router id; nil while the port or its network is not in the span.
func haOf(env *concern.Env, span *hostapi.Span, rt map[string]any, subnets map[string]map[string]any, ns string, advert time.Duration) *router.HA {
	vrid, _ := rt["ha_vr_id"].(float64)
	for _, p := range span.Ports {
		if attr.Str(p, "device_id") != attr.Str(rt, "id") || attr.Str(p, "device_owner") != hostapi.OwnerRouterHA ||
			attr.Str(p, "binding:host_id") != env.HostName {
			continue
		}
		n, ok := env.Nets[attr.Str(p, "network_id")]
		ips := attr.Objects(p, "fixed_ips")
		if !ok || len(ips) == 0 || vrid < 1 {
			return nil
		}
		sn := subnets[attr.Str(ips[0], "subnet_id")]
		cidr := attr.Str(sn, "cidr")
		if sn == nil || !strings.Contains(cidr, "/") {
			return nil
		}
		id := attr.Str(p, "id")
		return &router.HA{Port: dataplane.PortVeth{Tap: dataplane.TapName(id), Dev: "ha-" + id[:min(11, len(id))],
			MAC: attr.Str(p, "mac_address"), MTU: n.MTU}, Addr: attr.Str(ips[0], "ip_address") + cidr[strings.LastIndex(cidr, "/"):],
			VRID: int(vrid), Advert: advert, Dir: filepath.Join(HAStateRoot, ns)}
	}
	return nil
}

// haStates are the states of the HA router instances here, by router
// (the caller holds haMu).
func (r *Routers) haStates() map[string]string {
	out := map[string]string{}
	for id, rt := range r.ha {
		out[id] = rt.HAState()
	}
	return out
}

// watchHA keeps rt (router id's instance here) among the HA instances
// reported, and starts the watch that reports any change of their states
// at once (polled every 50 ms).
func (r *Routers) watchHA(env *concern.Env, id string, rt *router.Router) {
	r.haMu.Lock()
	defer r.haMu.Unlock()
	r.ha[id] = rt
	if r.haWatching {
		return
	}
	r.haWatching = true
	api, host := env.API, env.HostName
	go func() {
		for {
			time.Sleep(50 * time.Millisecond)
			r.haMu.Lock()
			closed := r.ha == nil
			changed := !closed && !maps.Equal(r.haStates(), r.haReported)
			r.haMu.Unlock()
			if closed {
				return
			}
			if changed {
				r.reportHA(context.Background(), api, host)
			}
		}
	}()
}

// Report implements concern.Reporter: every HA instance's state, at each
// heartbeat (a change is also reported at once, see watchHA).
func (r *Routers) Report(ctx context.Context, env *concern.Env) error {
	return r.reportHA(ctx, env.API, env.HostName)
}

// reportHA sends the instances' states, one report at a time; no lock is
// held while the server answers (a pass must not wait on it).
func (r *Routers) reportHA(ctx context.Context, api concern.API, host string) error {
	r.reportMu.Lock()
	defer r.reportMu.Unlock()
	r.haMu.Lock()
	states, before := r.haStates(), r.haReported
	r.haMu.Unlock()
	if len(states) == 0 && len(before) == 0 {
		return nil
	}
	if err := api.Call(ctx, "PUT", "/neutrino/v1/hosts/"+host+"/ha-routers", map[string]any{"states": states}, nil); err != nil {
		return err
	}
	r.haMu.Lock()
	r.haReported = states
	r.haMu.Unlock()
	return nil
}
