// Package l2 is the host agent's L2 concern: a bridge per network with
// its VXLAN or physical-network uplink, the forwarding entries for the
// ports on other hosts (peers), and each port's tap on its bridge. It runs
// as two reconcilers: Networks first, Ports last (after the filters, so a
// port is never wired before its security groups are in place).
package l2

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strings"

	"neutrino/internal/agent/concern"
	"neutrino/internal/attr"
	"neutrino/internal/dataplane"
	"neutrino/internal/hostapi"
)

// Networks wires the span's networks and their peers.
type Networks struct {
	applied concern.Memo
}

func (*Networks) Name() string    { return "l2" }
func (*Networks) Kinds() []string { return []string{"network", "subnet", "port", "agent"} }
func (*Networks) Close()          {}

// Apply implements concern.Reconciler.
func (r *Networks) Apply(ctx context.Context, env *concern.Env, span *hostapi.Span) error {
	r.applied.Reset(env)
	var errs []string
	env.Nets = map[string]dataplane.Network{}
	for _, o := range span.Networks {
		n := concern.Network(o)
		if err := r.applied.Once("network "+n.ID, fmt.Sprint(n), func() error { return env.Host.EnsureNetwork(n) }); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		env.Nets[n.ID] = n
	}
	peers := map[string][]dataplane.Peer{}
	for _, p := range span.Peers {
		mac, err1 := net.ParseMAC(p.MACAddress)
		vtep := net.ParseIP(p.VTEP)
		if err1 != nil || vtep == nil {
			continue // that host's agent has not reported its endpoint yet
		}
		var ips []net.IP
		for _, a := range p.IPs {
			if ip := net.ParseIP(a); ip != nil {
				ips = append(ips, ip)
			}
		}
		peers[p.NetworkID] = append(peers[p.NetworkID], dataplane.Peer{MAC: mac, IPs: ips, VTEP: vtep})
	}
	for id, n := range env.Nets {
		if err := r.applied.Once("peers "+id, fmt.Sprint(n, peers[id]), func() error { return env.Host.SetPeers(n, peers[id]) }); err != nil {
			errs = append(errs, err.Error())
		}
	}
	// What is no longer wired is made again if it returns.
	for key := range r.applied {
		if id, ok := strings.CutPrefix(key, "network "); ok && env.Nets[id].ID == "" {
			delete(r.applied, key)
			delete(r.applied, "peers "+id)
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// Ports wires the span's ports (those whose filters are in place) and
// removes the networks no port needs any more, including those deleted
// while the agent was not running. A port wired stays so until a tap
// device changes (the host's tap epoch) or the next full pass.
type Ports struct {
	applied concern.Memo
	epoch   uint64
}

func (*Ports) Name() string    { return "ports" }
func (*Ports) Kinds() []string { return []string{"port"} }
func (*Ports) Close()          {}

// Apply implements concern.Reconciler.
func (r *Ports) Apply(ctx context.Context, env *concern.Env, span *hostapi.Span) error {
	r.applied.Reset(env)
	if epoch, ok := env.Host.TapEpoch(); !ok || epoch != r.epoch {
		r.applied, r.epoch = concern.Memo{}, epoch
	}
	env.Active = []string{}
	seen := map[string]bool{"prune": true}
	for _, p := range span.Ports {
		id := attr.Str(p, "id")
		n, ok := env.Nets[attr.Str(p, "network_id")]
		if !ok || env.Unsafe[id] {
			continue
		}
		seen["port "+id] = true
		if err := r.applied.Once("port "+id, fmt.Sprint(n), func() error { return env.Host.EnsurePort(id, n) }); err != nil {
			continue // no device yet: the VM is not plugged in
		}
		env.Active = append(env.Active, id)
	}
	for key := range r.applied {
		if !seen[key] {
			delete(r.applied, key)
		}
	}
	sort.Strings(env.Active)
	keep := make([]dataplane.Network, 0, len(env.Nets))
	for _, id := range slices.Sorted(maps.Keys(env.Nets)) {
		keep = append(keep, env.Nets[id])
	}
	return r.applied.Once("prune", fmt.Sprint(keep), func() error { return env.Host.Prune(keep) })
}
