// Command neutrino is networking-as-a-service speaking the OpenStack
// Networking API v2.0. Subcommands: serve, migrate, identity, version.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"neutrino/internal/api"
	"neutrino/internal/identity"
	"neutrino/internal/services"
	"neutrino/internal/services/keymanager"
	"neutrino/internal/services/lbaas"
	"neutrino/internal/services/ml2"
	"neutrino/internal/store"
)

const version = "0.1.0"

func usage() {
	fmt.Fprintf(os.Stderr, `neutrino %s — OpenStack Networking API v2.0

Usage:
  neutrino serve [flags]              run the API server (and built-in identity)
  neutrino migrate [flags]            apply database migrations and exit
  neutrino identity bootstrap [flags] create the admin and demo projects and users
  neutrino bench [flags]              run the API benchmark against a server
  neutrino agent --host H --vtep IP   run the host agent (VXLAN networks and ports)
  neutrino sandbox up|down|openrc|vm  a multi-host lab in network namespaces
  neutrino version

Run "neutrino <command> -h" for a command's flags.
`, version)
}

// commands are neutrino's commands, each run with the arguments after its
// name.
var commands = map[string]func(args []string) error{
	"serve": serve, "migrate": migrate, "identity": identityCmd, "bench": bench, "agent": agent, "sandbox": sandbox,
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	switch cmd := os.Args[1]; cmd {
	case "version", "--version", "-v":
		fmt.Println("neutrino", version)
	case "help", "-h", "--help":
		usage()
	default:
		run, ok := commands[cmd]
		if !ok {
			usage()
			os.Exit(2)
		}
		err = run(os.Args[2:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "neutrino:", err)
		os.Exit(1)
	}
}

// storeFlags are shared by every command that opens the store.
type storeFlags struct {
	dataDir  string
	database string
}

func (f *storeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.dataDir, "data-dir", envOr("NEUTRINO_DATA_DIR", "neutrino-data"), "directory for the embedded SQLite database and generated files")
	fs.StringVar(&f.database, "database", os.Getenv("NEUTRINO_DATABASE"), "database DSN: a postgres:// URL selects PostgreSQL (default: SQLite in --data-dir)")
}

func (f *storeFlags) open(ctx context.Context) (*store.DB, error) {
	dsn := f.database
	if dsn == "" {
		dsn = filepath.Join(f.dataDir, "neutrino.db")
	}
	db, err := store.Open(dsn)
	if err != nil {
		return nil, err
	}
	if _, err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func migrate(args []string) error {
	fs := flag.NewFlagSet("migrate", flag.ExitOnError)
	var sf storeFlags
	sf.register(fs)
	fs.Parse(args)
	dsn := sf.database
	if dsn == "" {
		dsn = filepath.Join(sf.dataDir, "neutrino.db")
	}
	db, err := store.Open(dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	n, err := db.Migrate(context.Background())
	if err != nil {
		return err
	}
	fmt.Printf("applied %d migration(s)\n", n)
	return nil
}

// passwords reads or creates the bootstrap passwords kept in the data dir.
func passwords(dataDir, adminPw, demoPw string) (string, string, error) {
	path := filepath.Join(dataDir, "passwords")
	if b, err := os.ReadFile(path); err == nil {
		parts := strings.Fields(string(b))
		if len(parts) == 2 {
			if adminPw == "" {
				adminPw = parts[0]
			}
			if demoPw == "" {
				demoPw = parts[1]
			}
		}
	}
	gen := func() string {
		b := make([]byte, 9)
		rand.Read(b)
		return hex.EncodeToString(b)
	}
	if adminPw == "" {
		adminPw = gen()
	}
	if demoPw == "" {
		demoPw = gen()
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return "", "", err
	}
	return adminPw, demoPw, os.WriteFile(path, []byte(adminPw+" "+demoPw+"\n"), 0o600)
}

func writeOpenrc(dataDir, url, user, project, password string) (string, error) {
	path := filepath.Join(dataDir, "openrc-"+user)
	content := fmt.Sprintf(`# Source this file to point the openstack CLI at Neutrino.
export OS_AUTH_URL=%s/v3
export OS_IDENTITY_API_VERSION=3
export OS_AUTH_TYPE=password
export OS_USERNAME=%s
export OS_PASSWORD=%s
export OS_PROJECT_NAME=%s
export OS_USER_DOMAIN_NAME=Default
export OS_PROJECT_DOMAIN_NAME=Default
export OS_REGION_NAME=RegionOne
export OS_INTERFACE=public
`, url, user, password, project)
	return path, os.WriteFile(path, []byte(content), 0o600)
}

// writeOpenrcs writes an openrc for admin and for demo, each only if its
// password is the one the database holds (a database bootstrapped by
// another server keeps that server's passwords): a stale one is removed
// rather than left to fail. It returns what to tell the operator.
func writeOpenrcs(ctx context.Context, ident *identity.Builtin, dataDir, base, adminPw, demoPw string) (string, error) {
	msg := fmt.Sprintf("neutrino: built-in identity at %s/v3\n", base)
	wrote := false
	for _, u := range []struct{ name, pw, flag string }{{"admin", adminPw, "--admin-password"}, {"demo", demoPw, "--demo-password"}} {
		ok, err := ident.PasswordMatches(ctx, u.name, u.pw)
		if err != nil {
			return "", err
		}
		if !ok {
			os.Remove(filepath.Join(dataDir, "openrc-"+u.name))
			msg += fmt.Sprintf("  %s: the database has another password for user %s (bootstrapped elsewhere); no openrc written (give it with %s)\n", u.name, u.name, u.flag)
			continue
		}
		path, err := writeOpenrc(dataDir, base, u.name, u.name, u.pw)
		if err != nil {
			return "", err
		}
		msg += fmt.Sprintf("  %s: source %s\n", u.name, path)
		wrote = true
	}
	if wrote {
		msg += "  then:  openstack network list\n"
	}
	return msg, nil
}

func identityCmd(args []string) error {
	if len(args) == 0 || args[0] != "bootstrap" {
		return errors.New("usage: neutrino identity bootstrap [--data-dir DIR] [--database DSN] [--admin-password PW] [--demo-password PW]")
	}
	fs := flag.NewFlagSet("identity bootstrap", flag.ExitOnError)
	var sf storeFlags
	sf.register(fs)
	adminPw := fs.String("admin-password", os.Getenv("NEUTRINO_ADMIN_PASSWORD"), "admin password (default: generated, kept in the data dir)")
	demoPw := fs.String("demo-password", os.Getenv("NEUTRINO_DEMO_PASSWORD"), "demo password (default: generated)")
	fs.Parse(args[1:])
	ctx := context.Background()
	db, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	a, d, err := passwords(sf.dataDir, *adminPw, *demoPw)
	if err != nil {
		return err
	}
	made, err := identity.NewBuiltin(db).Bootstrap(ctx, a, d)
	if err != nil {
		return err
	}
	fmt.Printf("identity bootstrap done (created: %v); passwords in %s\n", made, filepath.Join(sf.dataDir, "passwords"))
	for _, u := range []struct{ name, pw string }{{"admin", a}, {"demo", d}} {
		if ok, err := identity.NewBuiltin(db).PasswordMatches(ctx, u.name, u.pw); err == nil && !ok {
			fmt.Printf("note: user %s existed already with another password; the one in that file does not apply\n", u.name)
		}
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	var sf storeFlags
	sf.register(fs)
	listen := fs.String("listen", envOr("NEUTRINO_LISTEN", "127.0.0.1:9696"), "address to serve the API on")
	authMode := fs.String("auth", envOr("NEUTRINO_AUTH", "builtin"), "authentication: builtin, keystone or noauth")
	publicURL := fs.String("public-url", "", "URL clients use to reach this server (default: http://<listen>)")
	adminPw := fs.String("admin-password", os.Getenv("NEUTRINO_ADMIN_PASSWORD"), "builtin identity: admin password on first start (default: generated)")
	demoPw := fs.String("demo-password", os.Getenv("NEUTRINO_DEMO_PASSWORD"), "builtin identity: demo password on first start (default: generated)")
	ksURL := fs.String("keystone-url", os.Getenv("NEUTRINO_KEYSTONE_URL"), "keystone: identity v3 URL, e.g. http://127.0.0.1:5000/v3")
	ksUser := fs.String("keystone-user", envOr("NEUTRINO_KEYSTONE_USER", "neutron"), "keystone: service user")
	ksPassword := fs.String("keystone-password", os.Getenv("NEUTRINO_KEYSTONE_PASSWORD"), "keystone: service user's password")
	ksProject := fs.String("keystone-project", envOr("NEUTRINO_KEYSTONE_PROJECT", "service"), "keystone: service user's project")
	tenantTypes := fs.String("tenant-network-types", "vxlan", "ML2 tenant network types, in order")
	vlanRanges := fs.String("network-vlan-ranges", "physnet1:1000:2999,physnet2", "ML2 network_vlan_ranges")
	flatNets := fs.String("flat-networks", "*", "ML2 flat_networks")
	vniRanges := fs.String("vni-ranges", "1:65535", "ML2 vxlan vni_ranges")
	physMTU := fs.Int("global-physnet-mtu", 1500, "MTU of the underlying physical network")
	quotaSpec := fs.String("default-quotas", "", "default quotas, e.g. network=100,port=500 (-1 unlimited)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	dhcpPerNet := fs.Int("dhcp-agents-per-network", 1, "DHCP agents scheduled per network")
	l3HA := fs.Bool("l3-ha", false, "new routers are highly available (VRRP across L3 agents) unless created with ha false")
	maxL3 := fs.Int("max-l3-agents-per-router", 3, "L3 agents an HA router is scheduled to (at least 2)")
	downTime := fs.Duration("agent-down-time", 75*time.Second, "how long after its last report an agent counts as dead (its DHCP networks then move to live agents)")
	servicePlugins := fs.String("service-plugins", "all", "optional services to run, comma-separated ("+strings.Join(services.Optional(), ", ")+"), or all")
	mechDrivers := fs.String("mechanism-drivers", "linux", "ML2 mechanism drivers, in order")
	newDefaults := fs.Bool("enforce-new-defaults", true, "Neutron's current default policy: reader may read, member write (false: any role on a project may write)")
	lbListen := fs.String("lb-listen", envOr("NEUTRINO_LB_LISTEN", "127.0.0.1:9876"), "address to serve the load-balancer API (Octavia's v2) on, when the lbaas service runs (\"\": not served)")
	lbProvider := fs.String("lb-default-provider", "haproxy", "provider of load balancers created without one: haproxy (run by load-balancer agents) or noop_driver (the API alone)")
	lbPublicURL := fs.String("lb-public-url", "", "URL clients use to reach the load-balancer API (default: http://<lb-listen>)")
	kmListen := fs.String("km-listen", envOr("NEUTRINO_KM_LISTEN", "127.0.0.1:9311"), "address to serve the key-manager API (Barbican's v1 subset) on, when the key-manager service runs (\"\": not served)")
	kmPublicURL := fs.String("km-public-url", "", "URL clients use to reach the key-manager API (default: http://<km-listen>)")
	metricsListen := fs.String("metrics-listen", "", "serve /metrics without authentication on this address (on the API's own listener /metrics needs an admin token)")
	bodyTimeout := fs.Duration("body-timeout", 30*time.Second, "time a client has to send a request's body")
	perClient := fs.Int("max-connections-per-client", 256, "connections one client address may hold open at once")
	keepChanges := fs.Int64("changelog-keep", 200000, "revisions of change log kept for agents to resume from (older readers re-list)")
	stopProfile, err := parseProfiled(fs, args, "write a CPU profile of the whole run to this file (at shutdown)")
	if err != nil {
		return err
	}
	defer stopProfile()

	var lvl slog.Level
	lvl.UnmarshalText([]byte(*logLevel))
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	db, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()

	cfg := services.Config{ML2: ml2.Config{TenantNetworkTypes: splitList(*tenantTypes), NetworkVLANRanges: splitList(*vlanRanges),
		FlatNetworks: splitList(*flatNets), VNIRanges: splitList(*vniRanges), GlobalPhysnetMTU: *physMTU,
		MechanismDrivers: splitList(*mechDrivers)},
		Quotas: map[string]int{}, DHCPAgentsPerNetwork: *dhcpPerNet, AgentDownTime: *downTime,
		L3HA: *l3HA, MaxL3AgentsPerRouter: *maxL3, LBaaS: lbaas.Config{DefaultProvider: *lbProvider},
		KeyManager: keymanager.Config{KeyFile: filepath.Join(sf.dataDir, "key-manager.key")}}
	if *maxL3 < 2 {
		return fmt.Errorf("--max-l3-agents-per-router: %d (at least 2)", *maxL3)
	}
	if *servicePlugins != "all" {
		cfg.ServicePlugins = splitList(*servicePlugins)
		if cfg.ServicePlugins == nil {
			cfg.ServicePlugins = []string{}
		}
	}
	for _, kv := range splitList(*quotaSpec) {
		k, v, _ := strings.Cut(kv, "=")
		var n int
		if _, err := fmt.Sscanf(v, "%d", &n); err != nil {
			return fmt.Errorf("--default-quotas: %q", kv)
		}
		cfg.Quotas[k] = n
	}
	if err := os.MkdirAll(sf.dataDir, 0o700); err != nil {
		return err
	}
	reg, err := services.Build(db, cfg)
	if err != nil {
		return err
	}

	base := *publicURL
	if base == "" {
		base = "http://" + *listen
	}
	base = strings.TrimSuffix(base, "/")
	var auth identity.Authenticator
	var ident *identity.Builtin
	switch *authMode {
	case "builtin":
		ident = identity.NewBuiltin(db)
		ident.PublicURL = func(*http.Request) string { return base }
		if reg.HasService("lbaas") && *lbListen != "" {
			lbBase := *lbPublicURL
			if lbBase == "" {
				lbBase = "http://" + *lbListen
			}
			ident.LoadBalancerURL = strings.TrimSuffix(lbBase, "/")
		}
		if reg.HasService("key-manager") && *kmListen != "" {
			kmBase := *kmPublicURL
			if kmBase == "" {
				kmBase = "http://" + *kmListen
			}
			ident.KeyManagerURL = strings.TrimSuffix(kmBase, "/")
		}
		ident.Log = log
		a, d, err := passwords(sf.dataDir, *adminPw, *demoPw)
		if err != nil {
			return err
		}
		if _, err := ident.Bootstrap(ctx, a, d); err != nil {
			return err
		}
		msg, err := writeOpenrcs(ctx, ident, sf.dataDir, base, a, d)
		if err != nil {
			return err
		}
		fmt.Fprint(os.Stderr, msg)
		auth = ident
	case "keystone":
		if *ksURL == "" {
			return errors.New("--auth keystone needs --keystone-url")
		}
		auth = identity.NewKeystone(*ksURL, *ksUser, *ksPassword, *ksProject)
	case "noauth":
		auth = identity.NoAuth{}
	default:
		return fmt.Errorf("unknown --auth %q", *authMode)
	}

	srv := api.New(reg, auth, ident, log)
	srv.LegacyPolicy = !*newDefaults
	srv.BodyTimeout = *bodyTimeout
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	ln = api.LimitPerClient(ln, *perClient)
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	if *metricsListen != "" {
		mln, err := net.Listen("tcp", *metricsListen)
		if err != nil {
			return err
		}
		ms := &http.Server{Handler: srv.Metrics(), ReadHeaderTimeout: 10 * time.Second}
		go ms.Serve(mln)
		defer ms.Close()
	}
	if reg.HasService("lbaas") && *lbListen != "" {
		lln, err := net.Listen("tcp", *lbListen)
		if err != nil {
			return fmt.Errorf("load-balancer endpoint: %w (--lb-listen \"\" serves none)", err)
		}
		ls := &http.Server{Handler: srv.LoadBalancer(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
		go ls.Serve(api.LimitPerClient(lln, *perClient))
		defer ls.Close()
		log.Info("serving the load-balancer API", "listen", lln.Addr().String())
	}
	if reg.HasService("key-manager") && *kmListen != "" {
		kln, err := net.Listen("tcp", *kmListen)
		if err != nil {
			return fmt.Errorf("key-manager endpoint: %w (--km-listen \"\" serves none)", err)
		}
		ks := &http.Server{Handler: srv.KeyManager(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
		go ks.Serve(api.LimitPerClient(kln, *perClient))
		defer ks.Close()
		log.Info("serving the key-manager API", "listen", kln.Addr().String())
	}
	log.Info("serving", "listen", ln.Addr().String(), "auth", *authMode, "store", string(db.Dialect))
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	go func() {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := db.CompactKeeping(ctx, *keepChanges); err != nil && ctx.Err() == nil {
					log.Warn("change log compaction failed", "err", err)
				}
			}
		}
	}()
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return hs.Shutdown(sctx)
}

// parseProfiled adds --cpuprofile (described by usage) to fs, parses args,
// and profiles the process into the file it names until stop is called
// (nothing when it names none).
func parseProfiled(fs *flag.FlagSet, args []string, usage string) (stop func(), err error) {
	path := fs.String("cpuprofile", "", usage)
	fs.Parse(args)
	if *path == "" {
		return func() {}, nil
	}
	f, err := os.Create(*path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
