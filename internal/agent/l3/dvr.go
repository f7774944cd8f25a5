package l3

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"neutrino/internal/agent/concern"
	"neutrino/internal/attr"
	"neutrino/internal/dataplane"
	"neutrino/internal/dataplane/router"
	"neutrino/internal/hostapi"
)

// The L3 agent's modes (Neutron's agent_mode): legacy hosts whole
// routers; dvr runs the distributed parts of distributed routers for the
// host's VMs; dvr_snat does both, and hosts distributed routers'
// centralized SNAT parts.
const (
	ModeLegacy  = "legacy"
	ModeDVR     = "dvr"
	ModeDVRSNAT = "dvr_snat"
)

func distributed(mode string) bool { return mode == ModeDVR || mode == ModeDVRSNAT }

// vmPorts are the ports of VMs here (bound here, owned by no network
// service), by id, and their networks.
func vmPorts(env *concern.Env, span *hostapi.Span) (ports, nets map[string]bool) {
	ports, nets = map[string]bool{}, map[string]bool{}
	for _, p := range span.Ports {
		if attr.Str(p, "binding:host_id") == env.HostName && !strings.HasPrefix(attr.Str(p, "device_owner"), "network:") {
			ports[attr.Str(p, "id")] = true
			nets[attr.Str(p, "network_id")] = true
		}
	}
	return ports, nets
}

// part is one part of a distributed router: its ports and floating IPs.
type part struct{ ports, fips []map[string]any }

// split divides a distributed router's ports and floating IPs between
// its distributed part (interfaces; the floating IPs of VMs here, when
// this agent runs distributed parts) and its centralized one (gateway and
// SNAT ports; every other floating IP).
func (r *Routers) split(env *concern.Env, span *hostapi.Span, ports, fips []map[string]any) (dvr, central part) {
	vms, _ := vmPorts(env, span)
	for _, p := range ports {
		if hostapi.IsRouterInterface(attr.Str(p, "device_owner")) {
			dvr.ports = append(dvr.ports, p)
		} else {
			central.ports = append(central.ports, p)
		}
	}
	for _, f := range fips {
		if distributed(r.mode) && vms[attr.Str(f, "port_id")] {
			dvr.fips = append(dvr.fips, f)
		} else {
			central.fips = append(central.fips, f)
		}
	}
	return dvr, central
}

// hostsCentral reports whether this host runs the router's centralized
// part: an instance of it for an HA router, else its gateway bound here.
func hostsCentral(env *concern.Env, span *hostapi.Span, rt map[string]any) bool {
	for _, p := range span.Ports {
		if attr.Str(p, "device_id") == attr.Str(rt, "id") && attr.Str(p, "binding:host_id") == env.HostName {
			switch attr.Str(p, "device_owner") {
			case hostapi.OwnerRouterHA:
				return rt["ha"] == true
			case hostapi.OwnerRouterGateway:
				if rt["ha"] != true {
					return true
				}
			}
		}
	}
	return false
}

// servesVMs reports whether one of the interfaces is on a network of a VM
// here.
func servesVMs(env *concern.Env, span *hostapi.Span, ifaces []map[string]any) bool {
	_, nets := vmPorts(env, span)
	for _, p := range ifaces {
		if nets[attr.Str(p, "network_id")] {
			return true
		}
	}
	return false
}

// dvrOf is the distributed part of rt here: each internal subnet's SNAT
// hop (the server's snat_hops), the floating IP namespace of its external
// network (fipNS, by network), and every port of its networks as a
// permanent neighbour.
func dvrOf(span *hostapi.Span, rt map[string]any, ifaces []map[string]any, subnets map[string]map[string]any, fipNS map[string]string) *router.DVR {
	id := attr.Str(rt, "id")
	d := &router.DVR{Link: id[:min(11, len(id))], Neighbors: neighbors(span, ifaces, subnets, true)}
	if info, _ := rt["external_gateway_info"].(map[string]any); info != nil {
		d.FIPNS = fipNS[attr.Str(info, "network_id")]
	}
	devOf := map[string]string{} // subnet -> interface device
	for _, p := range ifaces {
		for _, f := range attr.Objects(p, "fixed_ips") {
			devOf[attr.Str(f, "subnet_id")] = Dev(p)
		}
	}
	for _, h := range attr.Objects(rt, "snat_hops") {
		sid := attr.Str(h, "subnet_id")
		pf, err1 := netip.ParsePrefix(attr.Str(subnets[sid], "cidr"))
		via, err2 := netip.ParseAddr(attr.Str(h, "ip_address"))
		if err1 != nil || err2 != nil || devOf[sid] == "" {
			continue
		}
		d.SNATHops = append(d.SNATHops, router.SNATHop{Source: pf, Via: via, Dev: devOf[sid]})
	}
	return d
}

// applyFIPNamespaces makes a floating IP namespace for each external
// network the host has a floating IP agent gateway port on, and returns
// their names by network.
func (r *Routers) applyFIPNamespaces(env *concern.Env, span *hostapi.Span, subnets map[string]map[string]any, want map[string]bool) (map[string]string, error) {
	out := map[string]string{}
	if !distributed(r.mode) {
		return out, nil
	}
	vms, _ := vmPorts(env, span)
	var errs []string
	for _, p := range span.Ports {
		if attr.Str(p, "device_owner") != hostapi.OwnerFIPGateway || attr.Str(p, "binding:host_id") != env.HostName {
			continue
		}
		netID := attr.Str(p, "network_id")
		n, ok := env.Nets[netID]
		if !ok {
			continue
		}
		ns := env.NSName(concern.FIPNS, netID)
		want[ns] = true
		id := attr.Str(p, "id")
		spec := router.FIPSpec{Port: router.Port{PortVeth: dataplane.PortVeth{Tap: dataplane.TapName(id), Dev: "fg-" + id[:min(11, len(id))],
			MAC: attr.Str(p, "mac_address"), MTU: n.MTU}}}
		for _, f := range attr.Objects(p, "fixed_ips") {
			sn := subnets[attr.Str(f, "subnet_id")]
			cidr := attr.Str(sn, "cidr")
			if sn == nil || !strings.Contains(cidr, "/") {
				continue
			}
			spec.Port.Addrs = append(spec.Port.Addrs, attr.Str(f, "ip_address")+cidr[strings.LastIndex(cidr, "/"):])
			if gw := net.ParseIP(attr.Str(sn, "gateway_ip")); gw != nil {
				spec.DefaultGateways = append(spec.DefaultGateways, gw)
			}
		}
		for _, f := range span.FloatingIPs {
			if attr.Str(f, "floating_network_id") == netID && vms[attr.Str(f, "port_id")] {
				spec.FloatingIPs = append(spec.FloatingIPs, attr.Str(f, "floating_ip_address"))
			}
		}
		err := r.applied.Once("fip "+ns, fmt.Sprint(spec, dataplane.NamespaceExists(ns)), func() error {
			f := r.fips[ns]
			if f == nil || !dataplane.NamespaceExists(ns) {
				var err error
				if f, err = router.OpenFIP(ns, env.NetNS); err != nil {
					return err
				}
				r.fips[ns] = f
			}
			return f.Apply(spec)
		})
		if err != nil {
			errs = append(errs, fmt.Sprintf("floating IP namespace %s: %v", ns, err))
			continue
		}
		out[netID] = ns
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return out, nil
}
