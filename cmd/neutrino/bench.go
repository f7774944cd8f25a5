package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// bench runs the same sequential workload as shared/peer/bench-api.sh:
// N POST networks, N POST ports on one network, M GET ports?limit=50, then
// the deletes, one client over keep-alive HTTP with a real token.
func bench(args []string) error {
	if len(args) > 0 && args[0] == "scale" {
		return scale(args[1:])
	}
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	url := fs.String("url", "", "server base URL (default: start an embedded server)")
	token := fs.String("token", os.Getenv("OS_TOKEN"), "X-Auth-Token to use with --url (default: log in with OS_* variables)")
	database := fs.String("database", "", "embedded server: database DSN (default: SQLite in a temporary directory)")
	nNet := fs.Int("networks", 200, "POST /v2.0/networks count")
	nPort := fs.Int("ports", 200, "POST /v2.0/ports count")
	nGet := fs.Int("gets", 1000, "GET /v2.0/ports?limit=50 count")
	nList := fs.Int("lists", 0, "GET /v2.0/ports count (every port, unpaged)")
	conc := fs.Int("concurrency", 1, "clients running the creates and deletes at once, each on its own connection")
	stopProfile, err := parseProfiled(fs, args, "write a CPU profile of the run (client and embedded server) to this file")
	if err != nil {
		return err
	}
	defer stopProfile()

	base := strings.TrimSuffix(strings.TrimSuffix(*url, "/"), "/v2.0")
	if base == "" {
		b, tok, stop, err := embeddedServer(*database)
		if err != nil {
			return err
		}
		defer stop()
		base, *token = b, tok
	} else if *token == "" {
		t, err := loginFromEnv()
		if err != nil {
			return err
		}
		*token = t
	}
	h, _, _ := strings.Cut(strings.TrimPrefix(base, "http://"), "/")
	if host, _, err := net.SplitHostPort(h); err != nil || !(host == "localhost" || strings.HasPrefix(host, "127.") || host == "::1") {
		return fmt.Errorf("bench talks to loopback servers only, not %q", base)
	}
	c := newBenchClient(base, *token)
	clients := []*benchClient{c}
	for len(clients) < *conc {
		clients = append(clients, newBenchClient(base, *token))
	}

	results := map[string]benchStat{}
	nets, ports := make([]string, *nNet), make([]string, *nPort)
	results["a_post_networks"] = timedBy(clients, *nNet, func(c *benchClient, i int) error {
		var out struct{ Network struct{ ID string } }
		err := c.do("POST", "/v2.0/networks", map[string]any{"network": map[string]any{"name": fmt.Sprintf("bench-net-%d", i)}}, &out)
		nets[i] = out.Network.ID
		return err
	})
	var pn struct{ Network struct{ ID string } }
	if err := c.do("POST", "/v2.0/networks", map[string]any{"network": map[string]any{"name": "bench-port-net"}}, &pn); err != nil {
		return err
	}
	cidr := "10.201.0.0/16"
	if *nPort > 60000 {
		cidr = "10.208.0.0/12"
	}
	if err := c.do("POST", "/v2.0/subnets", map[string]any{"subnet": map[string]any{"network_id": pn.Network.ID, "ip_version": 4, "cidr": cidr}}, nil); err != nil {
		return err
	}
	results["b_post_ports"] = timedBy(clients, *nPort, func(c *benchClient, i int) error {
		var out struct{ Port struct{ ID string } }
		err := c.do("POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": pn.Network.ID, "name": fmt.Sprintf("bench-port-%d", i)}}, &out)
		ports[i] = out.Port.ID
		return err
	})
	want := min(50, len(ports)+1)
	results["c_get_ports_limit50"] = timed(*nGet, func(i int) error {
		// Check the page cheaply (decoding 50 ports on the client would
		// cost as much as serving them): one mac_address per port.
		var raw []byte
		if err := c.do("GET", "/v2.0/ports?limit=50", nil, &raw); err != nil {
			return err
		}
		if n := bytes.Count(raw, []byte(`"mac_address":`)); n != want && n != len(ports) {
			return fmt.Errorf("GET ports returned %d ports", n)
		}
		return nil
	})
	if *nList > 0 {
		results["c_get_ports_all"] = timed(*nList, func(i int) error {
			var raw []byte
			if err := c.do("GET", "/v2.0/ports", nil, &raw); err != nil {
				return err
			}
			if n := bytes.Count(raw, []byte(`"mac_address":`)); n != len(ports) {
				return fmt.Errorf("GET ports returned %d ports, not %d", n, len(ports))
			}
			return nil
		})
	}
	results["d_delete_ports"] = timedBy(clients, len(ports), func(c *benchClient, i int) error { return c.do("DELETE", "/v2.0/ports/"+ports[i], nil, nil) })
	results["e_delete_networks"] = timedBy(clients, len(nets), func(c *benchClient, i int) error { return c.do("DELETE", "/v2.0/networks/"+nets[i], nil, nil) })
	c.do("DELETE", "/v2.0/networks/"+pn.Network.ID, nil, nil)

	keys := slices.Sorted(maps.Keys(results))
	fmt.Printf("%-22s %6s %10s %9s %9s\n", "op", "n", "req/s", "p50 ms", "p99 ms")
	for _, k := range keys {
		r := results[k]
		if r.err != nil {
			return fmt.Errorf("%s: %w", k, r.err)
		}
		fmt.Printf("%-22s %6d %10.1f %9.2f %9.2f\n", k, r.n, r.rps, r.p50, r.p99)
	}
	b, _ := json.Marshal(results)
	fmt.Println("RESULT " + string(b))
	return nil
}

type benchStat struct {
	n             int
	rps, p50, p99 float64
	err           error
}

func (b benchStat) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{"n": b.n, "rps": round1(b.rps), "p50_ms": round1(b.p50), "p99_ms": round1(b.p99)})
}

func round1(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

func timed(n int, fn func(i int) error) benchStat {
	lat := make([]float64, 0, n)
	start := time.Now()
	for i := 0; i < n; i++ {
		t := time.Now()
		if err := fn(i); err != nil {
			return benchStat{err: err}
		}
		lat = append(lat, float64(time.Since(t).Microseconds())/1000)
	}
	wall := time.Since(start).Seconds()
	if n == 0 {
		return benchStat{}
	}
	sort.Float64s(lat)
	return benchStat{n: n, rps: float64(n) / wall, p50: lat[n/2], p99: lat[min(n-1, n*99/100)]}
}

// timedBy runs fn for 0..n-1 spread over the clients, each client its
// calls in turn on its own goroutine (with one client: on this one, as
// timed does), and times the whole.
func timedBy(clients []*benchClient, n int, fn func(c *benchClient, i int) error) benchStat {
	if len(clients) == 1 {
		return timed(n, func(i int) error { return fn(clients[0], i) })
	}
	lat := make([]float64, n)
	errs := make([]error, len(clients))
	start := time.Now()
	var wg sync.WaitGroup
	for k, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := k; i < n; i += len(clients) {
				t := time.Now()
				if err := fn(c, i); err != nil {
					errs[k] = err
					return
				}
				lat[i] = float64(time.Since(t).Microseconds()) / 1000
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start).Seconds()
	for _, err := range errs {
		if err != nil {
			return benchStat{err: err}
		}
	}
	if n == 0 {
		return benchStat{}
	}
	sort.Float64s(lat)
	return benchStat{n: n, rps: float64(n) / wall, p50: lat[n/2], p99: lat[min(n-1, n*99/100)]}
}

// benchClient is a sequential HTTP/1.1 client on one keep-alive
// connection, as bench-api.sh's http.client is. It writes each request and
// reads its response on the calling goroutine: net/http's Transport hands
// every response over from a reader goroutine, a cross-thread wake-up per
// request that would be measured as server time.
type benchClient struct {
	base, token string
	host        string // host:port
	conn        net.Conn
	br          *bufio.Reader
	bw          *bufio.Writer
	deadline    time.Time    // of conn
	buf         bytes.Buffer // response bodies, reused (the client is sequential)
}

func newBenchClient(base, token string) *benchClient {
	h, _, _ := strings.Cut(strings.TrimPrefix(base, "http://"), "/")
	return &benchClient{base: base, token: token, host: h}
}

func (c *benchClient) do(method, path string, body, out any) error {
	var payload []byte
	if body != nil {
		payload, _ = json.Marshal(body)
	}
	var resp *http.Response
	for attempt := 0; ; attempt++ {
		fresh := c.conn == nil
		if fresh {
			conn, err := net.DialTimeout("tcp", c.host, 10*time.Second)
			if err != nil {
				return err
			}
			c.conn, c.br, c.bw = conn, bufio.NewReaderSize(conn, 64<<10), bufio.NewWriterSize(conn, 8<<10)
		}
		// A request may take up to a minute. The deadline is moved on only
		// when less than half of that is left: setting one arms a runtime
		// timer, which can wake the network poller's thread.
		if now := time.Now(); fresh || c.deadline.Sub(now) < 30*time.Second {
			c.deadline = now.Add(60 * time.Second)
			c.conn.SetDeadline(c.deadline)
		}
		req, err := http.NewRequest(method, c.base+path, bytes.NewReader(payload)) // no payload: no body
		if err != nil {
			return err
		}
		req.Header.Set("X-Auth-Token", c.token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
		req.Header.Set("User-Agent", "neutrino-bench")
		err = req.Write(c.bw)
		if err == nil {
			err = c.bw.Flush()
		}
		if err == nil {
			resp, err = http.ReadResponse(c.br, req)
		}
		if err == nil {
			c.buf.Reset()
			if resp.ContentLength > 0 {
				c.buf.Grow(int(resp.ContentLength))
			}
			_, err = c.buf.ReadFrom(resp.Body)
			resp.Body.Close()
		}
		if err != nil {
			c.conn.Close()
			c.conn = nil
			// A kept-alive connection the server closed meanwhile: once
			// more on a new one.
			if !fresh && attempt == 0 {
				continue
			}
			return err
		}
		if resp.Close {
			c.conn.Close()
			c.conn = nil
		}
		break
	}
	data := c.buf.Bytes()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: HTTP %d %s", method, path, resp.StatusCode, data)
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = data
		return nil
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}

// loginFromEnv gets a token with the OS_* variables of an openrc.
func loginFromEnv() (string, error) { return login(os.Getenv) }

// login gets a token with the OS_* variables getenv gives.
func login(getenv func(string) string) (string, error) {
	authURL := strings.TrimSuffix(getenv("OS_AUTH_URL"), "/")
	if authURL == "" {
		return "", fmt.Errorf("no --token and no OS_AUTH_URL")
	}
	body := map[string]any{"auth": map[string]any{
		"identity": map[string]any{"methods": []string{"password"}, "password": map[string]any{"user": map[string]any{
			"name": getenv("OS_USERNAME"), "password": getenv("OS_PASSWORD"), "domain": map[string]any{"name": "Default"}}}},
		"scope": map[string]any{"project": map[string]any{"name": getenv("OS_PROJECT_NAME"), "domain": map[string]any{"name": "Default"}}},
	}}
	b, _ := json.Marshal(body)
	resp, err := http.Post(authURL+"/auth/tokens", "application/json", bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("login: HTTP %d", resp.StatusCode)
	}
	return resp.Header.Get("X-Subject-Token"), nil
}
