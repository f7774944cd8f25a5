package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	agentpkg "neutrino/internal/agent"
	agentl3 "neutrino/internal/agent/l3"
)

// agent runs the host agent: it registers and heartbeats, lists its host's
// desired state and watches the change log, and wires VXLAN networks and
// ports in the host's kernel (or the network namespace given by --netns).
func agent(args []string) error {
	fs := flag.NewFlagSet("agent", flag.ExitOnError)
	host, _ := os.Hostname()
	hostName := fs.String("host", host, "this host's name (binding:host_id of its ports)")
	server := fs.String("server", envOr("NEUTRINO_SERVER", "http://127.0.0.1:9696"), "Neutrino server URL")
	token := fs.String("token", os.Getenv("OS_TOKEN"), "token to use (default: log in with the OS_* variables of an openrc)")
	interval := fs.Duration("report-interval", 30*time.Second, "heartbeat interval")
	netnsName := fs.String("netns", "", "network namespace that is this host's kernel (default: the agent's own)")
	vtep := fs.String("vtep", "", "this host's tunnel endpoint address on the underlay (required)")
	serveDHCP := fs.Bool("dhcp", false, "serve DHCP for networks with DHCP-enabled subnets")
	l3 := fs.Bool("l3", false, "host routers (an L3 agent): router namespaces with routing, SNAT and floating IPs")
	lbaasOn := fs.Bool("lbaas", false, "run the load balancers scheduled to this host (haproxy in namespaces)")
	l3Mode := fs.String("l3-mode", agentl3.ModeLegacy, "L3 agent mode: legacy (whole routers), dvr (distributed routers' parts for this host's VMs: compute hosts), dvr_snat (both, and distributed routers' centralized SNAT: network hosts)")
	haAdvert := fs.Duration("ha-vrrp-advert-int", agentl3.DefaultHAAdvert, "VRRP advertisement interval of HA routers (a crashed master is replaced about three intervals later; Neutron's default is 2s)")
	mappings := fs.String("physical-interfaces", "", "physical networks and their interfaces, e.g. physnet1=eth1 (flat and VLAN networks)")
	fs.Parse(args)
	ip := net.ParseIP(*vtep)
	if ip == nil {
		return errors.New("agent: --vtep must be this host's underlay address")
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("host", *hostName)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	physnets := map[string]string{}
	for _, m := range strings.Split(*mappings, ",") {
		if name, ifname, ok := strings.Cut(strings.TrimSpace(m), "="); ok {
			physnets[name] = ifname
		}
	}
	fixed := *token
	a, err := agentpkg.New(agentpkg.Config{
		Host: *hostName, Server: strings.TrimSuffix(*server, "/"), NetNS: *netnsName, VTEP: ip,
		Interval: *interval, Log: log, DHCP: *serveDHCP, L3: *l3, HAAdvert: *haAdvert, L3Mode: *l3Mode, LBaaS: *lbaasOn, Physnets: physnets,
		Token: func(ctx context.Context, renew bool) (string, error) {
			if fixed != "" && !renew {
				return fixed, nil
			}
			return loginFromEnv()
		},
	})
	if err != nil {
		return err
	}
	defer a.Close()
	log.Info("agent running", "server", *server, "netns", *netnsName, "vtep", ip.String())
	return a.Run(ctx)
}
