// Package lb is the kernel side of load balancers: a namespace per load
// balancer holding its VIP port, and haproxy (Debian's) running there with
// a configuration made from the load balancer's listeners, pools, members
// and health monitors. A change reloads haproxy gracefully (the old
// process finishes the connections it holds); haproxy outlives the agent
// and is adopted by its pid file.
package lb

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"neutrino/internal/dataplane"
)

// Spec is what a load balancer's namespace and haproxy are made to match.
type Spec struct {
	// VIP is the VIP port (its tap in the host's namespace) with its
	// addresses (CIDRs) and the subnets' gateways (default routes).
	VIP       dataplane.PortVeth
	Addrs     []string
	Gateways  []net.IP
	Listeners []Listener
}

// Listener is a frontend: a protocol and port on the VIP.
type Listener struct {
	ID       string
	Protocol string // HTTP, HTTPS (passed through), TCP
	Port     int
	// ConnLimit bounds concurrent connections (0: haproxy's default).
	ConnLimit int
	// Timeouts in milliseconds.
	ClientData, MemberConnect, MemberData int
	Pool                                  *Pool
	// Policies are the listener's L7 policies, in order.
	Policies []Policy
	// TERMINATED_HTTPS: the certificates (PEM, each with its key; the
	// first is the default, SNI chooses among the others), the CA client
	// certificates must chain to and its revocation list, and ClientAuth
	// (NONE, OPTIONAL, MANDATORY).
	Certs               [][]byte
	ClientCA, ClientCRL []byte
	ClientAuth          string
	// Headers are the headers to insert (Octavia's insert_headers names).
	Headers []string
	// Allowed are the source CIDRs that may connect (none: any).
	Allowed []string
}

// Policy is an L7 policy: when all its rules match, the request is
// rejected (REJECT), redirected (REDIRECT_TO_URL, REDIRECT_PREFIX, with
// Code) or sent to Pool (REDIRECT_TO_POOL).
type Policy struct {
	ID, Action  string
	Pool        *Pool
	URL, Prefix string
	Code        int
	Rules       []Rule
}

// Rule is an L7 rule: Type (HOST_NAME, PATH, FILE_TYPE, HEADER, COOKIE)
// compared (REGEX, STARTS_WITH, ENDS_WITH, CONTAINS, EQUAL_TO) to Value,
// inverted if Invert; Key names the header or cookie.
type Rule struct {
	ID, Type, Compare, Key, Value string
	Invert                        bool
}

// Pool is a backend.
type Pool struct {
	ID        string
	Protocol  string
	Algorithm string // ROUND_ROBIN, LEAST_CONNECTIONS, SOURCE_IP, SOURCE_IP_PORT
	// Persistence: SOURCE_IP, HTTP_COOKIE or APP_COOKIE ("" none) and the
	// cookie of APP_COOKIE.
	Persistence, Cookie string
	Members             []Member
	Monitor             *Monitor
	// TLS re-encrypts to members: with ClientCert presented when set,
	// checking their certificates against CA (and CRL) when set.
	TLS                 bool
	ClientCert, CA, CRL []byte
}

// Member is a server of a pool.
type Member struct {
	ID      string
	Address string
	Port    int
	Weight  int
	Backup  bool
	Down    bool // administratively down
}

// Monitor is a pool's health check.
type Monitor struct {
	Type                string // HTTP, HTTPS, TCP, PING, TLS-HELLO
	Delay, Timeout      int    // seconds
	Rise, Fall          int
	Method, Path, Codes string
}

// Balancer is one load balancer's namespace and haproxy.
type Balancer struct {
	NS, hostNS, dir string
	conf            string // the configuration haproxy runs
}

// Open returns the balancer of namespace ns (its VIP's tap in hostNS),
// keeping haproxy's files in dir; the namespace is made when missing.
func Open(ns, hostNS, dir string) (*Balancer, error) {
	if !dataplane.NamespaceExists(ns) {
		if err := dataplane.AddNamespace(ns, "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0",
			"net.ipv6.conf.default.accept_ra=0"); err != nil {
			return nil, err
		}
	}
	return &Balancer{NS: ns, hostNS: hostNS, dir: dir}, nil
}

func (b *Balancer) pidFile() string  { return filepath.Join(b.dir, "haproxy.pid") }
func (b *Balancer) sockFile() string { return filepath.Join(b.dir, "haproxy.sock") }
func (b *Balancer) confFile() string { return filepath.Join(b.dir, "haproxy.cfg") }

// Apply makes the namespace and haproxy match spec.
func (b *Balancer) Apply(spec Spec) error {
	if err := spec.VIP.Ensure(b.NS, b.hostNS); err != nil {
		return err
	}
	h, done, err := dataplane.HandleIn(b.NS)
	if err != nil {
		return err
	}
	defer done()
	if err := dataplane.SetAddrs(h, spec.VIP.Dev, spec.Addrs, ""); err != nil {
		return err
	}
	for _, gw := range spec.Gateways {
		dst := &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}
		if gw.To4() == nil {
			dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		}
		l, err := h.LinkByName(spec.VIP.Dev)
		if err != nil {
			return err
		}
		if err := h.RouteReplace(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: dst, Gw: gw}); err != nil {
			return fmt.Errorf("lb: default route via %s: %w", gw, err)
		}
	}
	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		return err
	}
	conf := Config(spec, b.dir)
	running := b.running()
	if conf == b.conf && len(running) > 0 {
		return nil
	}
	if err := writeTLS(spec, b.dir); err != nil {
		return err
	}
	if err := os.WriteFile(b.confFile()+".new", []byte(conf), 0o600); err != nil {
		return err
	}
	if out, err := exec.Command("haproxy", "-c", "-q", "-f", b.confFile()+".new").CombinedOutput(); err != nil {
		return fmt.Errorf("lb: haproxy refuses the configuration: %v %s", err, out)
	}
	if err := os.Rename(b.confFile()+".new", b.confFile()); err != nil {
		return err
	}
	// Start, or reload gracefully: the new process takes the sockets, the
	// old ones finish their connections and go.
	args := []string{"netns", "exec", b.NS, "haproxy", "-D", "-f", b.confFile(), "-p", b.pidFile()}
	if len(running) > 0 {
		args = append(args, "-sf")
		for _, p := range running {
			args = append(args, strconv.Itoa(p))
		}
	}
	cmd := exec.Command("ip", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("lb: haproxy: %v %s", err, out)
	}
	b.conf = conf
	return nil
}

// running lists haproxy's live processes (by its pid file).
func (b *Balancer) running() []int { return pids(b.pidFile()) }

func pids(file string) []int {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(raw)) {
		if p, err := strconv.Atoi(f); err == nil && syscall.Kill(p, 0) == nil {
			out = append(out, p)
		}
	}
	return out
}

// Stop ends the balancer's haproxy (the namespace is the caller's).
func (b *Balancer) Stop() { Kill(b.dir) }

// Kill ends the haproxy whose files are in dir, and removes them.
func Kill(dir string) {
	for _, p := range pids(filepath.Join(dir, "haproxy.pid")) {
		syscall.Kill(p, syscall.SIGTERM)
	}
	os.RemoveAll(dir)
}

// Counters are a listener's traffic as haproxy counts it (Octavia's
// statistics).
type Counters struct {
	ActiveConnections float64 `json:"active_connections"`
	TotalConnections  float64 `json:"total_connections"`
	BytesIn           float64 `json:"bytes_in"`
	BytesOut          float64 `json:"bytes_out"`
	RequestErrors     float64 `json:"request_errors"`
}

// Health reads haproxy's stats socket: the members' states (member id ->
// UP, DOWN, MAINT or "no check", haproxy's words) and each listener's
// counters.
func (b *Balancer) Health() (map[string]string, map[string]Counters, error) {
	conn, err := net.DialTimeout("unix", b.sockFile(), time.Second)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(conn, "show stat\n"); err != nil {
		return nil, nil, err
	}
	return parseStat(conn)
}

// parseStat reads "show stat" CSV: each server's status, each frontend's
// counters.
func parseStat(r io.Reader) (map[string]string, map[string]Counters, error) {
	br := bufio.NewReader(r)
	head, err := br.ReadString('\n')
	if err != nil {
		return nil, nil, err
	}
	cols := strings.Split(strings.TrimPrefix(strings.TrimSpace(head), "# "), ",")
	col := func(name string) int { return slices.Index(cols, name) }
	px, sv, st := col("pxname"), col("svname"), col("status")
	if px < 0 || sv < 0 || st < 0 {
		return nil, nil, errors.New("lb: no pxname/svname/status in haproxy's stats")
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1
	members, listeners := map[string]string{}, map[string]Counters{}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return members, listeners, nil
		}
		if err != nil {
			return members, listeners, err
		}
		if len(rec) < len(cols) {
			continue
		}
		num := func(name string) float64 {
			if i := col(name); i >= 0 {
				v, _ := strconv.ParseFloat(rec[i], 64)
				return v
			}
			return 0
		}
		switch rec[sv] {
		case "FRONTEND":
			listeners[rec[px]] = Counters{ActiveConnections: num("scur"), TotalConnections: num("stot"), BytesIn: num("bin"),
				BytesOut: num("bout"), RequestErrors: num("ereq")}
		case "BACKEND":
		default:
			members[rec[sv]] = rec[st]
		}
	}
}
