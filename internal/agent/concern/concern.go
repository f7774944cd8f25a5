// Package concern is what the host agent's reconcilers share: the
// Reconciler interface, and the environment of one pass over a host's
// span. Each concern (L2, security groups, DHCP, L3, metering) is a
// package of its own with one reconciler; the agent runs those its flags
// enable, in order, each against the same span.
package concern

import (
	"context"
	"log/slog"

	"neutrino/internal/attr"
	"neutrino/internal/dataplane"
	"neutrino/internal/hostapi"
)

// Reconciler makes one concern of a host's kernel match the host's span.
// Apply is idempotent: it never flushes what is already right, and it may
// skip what it applied unchanged since its last full pass.
type Reconciler interface {
	Name() string
	// Kinds are the kinds of change this concern depends on: a change of
	// no enabled reconciler's kinds never makes the agent list again.
	Kinds() []string
	Apply(ctx context.Context, env *Env, span *hostapi.Span) error
	// Close releases what outlives a pass (responders, senders); what is
	// in the kernel stays, for the next start to adopt.
	Close()
}

// Reporter is a reconciler that reports to the server at each heartbeat.
type Reporter interface {
	Report(ctx context.Context, env *Env) error
}

// API calls the server.
type API interface {
	Call(ctx context.Context, method, path string, body, out any) error
}

// Env is one pass over a host's span.
type Env struct {
	Host     *dataplane.Host
	HostName string
	// NetNS is the host's namespace ("" for this process's).
	NetNS string
	API   API
	Log   *slog.Logger
	// Full says everything is applied again this pass, nothing skipped.
	Full bool
	// Nets are the networks wired on the host this pass (L2 fills it).
	Nets map[string]dataplane.Network
	// Unsafe are ports whose filters could not be installed: never wired.
	Unsafe map[string]bool
	// Active are the ports wired this pass (L2's ports fills it).
	Active []string
}

// Namespaces the agent makes for DHCP ports and routers: Neutron's names
// (qdhcp-<network>, qrouter-<router>) on a real host; on a host that is
// itself a namespace, short names under its own, so they go with it.
const (
	DHCPNS   = "d"
	RouterNS = "r"
	// SNATNS holds a distributed router's centralized SNAT part, FIPNS a
	// host's floating IP namespace for an external network.
	SNATNS = "s"
	FIPNS  = "f"
	// LBNS holds a load balancer (haproxy and its VIP port).
	LBNS = "l"
)

var longPrefix = map[string]string{DHCPNS: "qdhcp-", RouterNS: "qrouter-", SNATNS: "snat-", FIPNS: "fip-", LBNS: "qlbaas-"}

// NSPrefix starts the names of this host's namespaces of a kind.
func (e *Env) NSPrefix(kind string) string {
	if e.NetNS != "" {
		return e.NetNS + "-" + kind
	}
	return longPrefix[kind]
}

// NSName names the namespace of a kind for the object id.
func (e *Env) NSName(kind, id string) string {
	if e.NetNS != "" {
		id = id[:min(8, len(id))]
	}
	return e.NSPrefix(kind) + id
}

// Memo is what a reconciler applied (key -> the value applied) since its
// last full pass.
type Memo map[string]string

// Once runs fn unless value was applied under key since the last full
// pass (env.Full clears the memo first).
func (m Memo) Once(key, value string, fn func() error) error {
	if m[key] == value {
		return nil
	}
	delete(m, key)
	if err := fn(); err != nil {
		return err
	}
	m[key] = value
	return nil
}

// Reset forgets everything when the pass is a full one.
func (m *Memo) Reset(env *Env) {
	if env.Full || *m == nil {
		*m = Memo{}
	}
}

// Network reads a network's segment as the data plane needs it.
func Network(o map[string]any) dataplane.Network {
	n := dataplane.Network{ID: attr.Str(o, "id"), Type: attr.Str(o, "provider:network_type"), PhysicalNetwork: attr.Str(o, "provider:physical_network")}
	if v, ok := o["provider:segmentation_id"].(float64); ok {
		n.SegmentationID = int(v)
	}
	if v, ok := o["mtu"].(float64); ok {
		n.MTU = int(v)
	}
	return n
}
