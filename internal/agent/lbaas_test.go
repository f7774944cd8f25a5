package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"neutrino/internal/agent/lbaas"
	"neutrino/internal/dataplane"
	"neutrino/internal/dataplane/lb"
	"neutrino/internal/netlab"
	"neutrino/internal/testutil"
)

// lbCloud is a network host running load balancers and two compute
// hosts: member VMs vm1 (compute-1) and vm2 (compute-2) serving their
// names over HTTP on 8080 (busybox httpd), and a client VM (compute-1),
// all on one VXLAN network.
type lbCloud struct {
	url     string
	lab     *netlab.Lab
	sn      map[string]any
	vms     map[string]string    // name -> address
	servers map[string]*exec.Cmd // the members' web servers
}

func newLBCloud(t testing.TB) *lbCloud {
	url, lab := testCloud(t, "busybox", "haproxy")
	t.Cleanup(func() { // haproxy outlives agents by design
		dirs, _ := filepath.Glob(filepath.Join(lbaas.StateRoot, lab.Prefix+"-*"))
		for _, d := range dirs {
			lb.Kill(d)
		}
	})
	startAgentsWith(t, url, lab, []string{"network-1", "compute-1", "compute-2"}, func(c *Config) { c.LBaaS = c.Host == "network-1" })
	n := post(t, url+"/v2.0/networks", "POST", map[string]any{"network": map[string]any{}})["network"].(map[string]any)
	sn := post(t, url+"/v2.0/subnets", "POST", map[string]any{"subnet": map[string]any{"network_id": n["id"], "ip_version": 4,
		"cidr": "10.95.0.0/24", "enable_dhcp": false}})["subnet"].(map[string]any)
	vms := map[string]string{} // name -> address
	for _, v := range []struct{ name, host string }{{"vm1", "compute-1"}, {"vm2", "compute-2"}, {"client", "compute-1"}} {
		p := post(t, url+"/v2.0/ports", "POST", map[string]any{"port": map[string]any{"network_id": n["id"], "binding:host_id": v.host,
			"device_owner": "compute:nova"}})["port"].(map[string]any)
		ip := p["fixed_ips"].([]any)[0].(map[string]any)["ip_address"].(string)
		if err := lab.VM(v.name, v.host, dataplane.TapName(p["id"].(string)), p["mac_address"].(string), int(n["mtu"].(float64)), ip+"/24"); err != nil {
			t.Fatal(err)
		}
		vms[v.name] = ip
	}
	// The members' web servers (ours, ended by PID).
	servers := map[string]*exec.Cmd{}
	for _, vm := range []string{"vm1", "vm2"} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "index.html"), []byte(vm+"\n"), 0o644)
		if vm == "vm2" {
			os.WriteFile(filepath.Join(dir, "two"), []byte("vm2-two\n"), 0o644) // only vm2 has /two
		}
		cmd := exec.Command("ip", "netns", "exec", lab.Name(vm), "busybox", "httpd", "-f", "-p", "8080", "-h", dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		servers[vm] = cmd
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	return &lbCloud{url: url, lab: lab, sn: sn, vms: vms, servers: servers}
}

// TestLoadBalancerThroughAPI: a load balancer made through the API with
// the haproxy provider runs on the network host's load-balancer agent:
// it turns ACTIVE once applied, round-robins HTTP from a client VM
// between two member VMs on two compute hosts (busybox httpd), marks a
// member whose server stops ERROR (its pool DEGRADED) and sends it nothing
// more, and goes (namespace, haproxy, VIP port) with a cascade delete.
func TestLoadBalancerThroughAPI(t *testing.T) {
	c := newLBCloud(t)
	url, lab, sn, vms, servers := c.url, c.lab, c.sn, c.vms, c.servers
	lbObj := post(t, url+"/v2.0/lbaas/loadbalancers", "POST", map[string]any{"loadbalancer": map[string]any{
		"name": "web", "vip_subnet_id": sn["id"]}})["loadbalancer"].(map[string]any) // the default provider: haproxy
	id, vip := lbObj["id"].(string), lbObj["vip_address"].(string)
	active := func(what string) {
		testutil.Eventually(t, 20*time.Second, "the load balancer ACTIVE "+what, func() (bool, string) {
			o := post(t, url+"/v2.0/lbaas/loadbalancers/"+id, "GET", nil)["loadbalancer"].(map[string]any)
			return o["provisioning_status"] == "ACTIVE", fmt.Sprint(o["provisioning_status"])
		})
	}
	active("once its agent applied it")
	listener := post(t, url+"/v2.0/lbaas/listeners", "POST", map[string]any{"listener": map[string]any{
		"loadbalancer_id": id, "protocol": "HTTP", "protocol_port": 80}})["listener"].(map[string]any)
	active("with its listener")
	pool := post(t, url+"/v2.0/lbaas/pools", "POST", map[string]any{"pool": map[string]any{
		"listener_id": listener["id"], "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN"}})["pool"].(map[string]any)
	pid := pool["id"].(string)
	active("with its pool")
	members := map[string]string{}
	for _, vm := range []string{"vm1", "vm2"} {
		m := post(t, url+"/v2.0/lbaas/pools/"+pid+"/members", "POST", map[string]any{"member": map[string]any{
			"address": vms[vm], "protocol_port": 8080, "subnet_id": sn["id"]}})["member"].(map[string]any)
		members[vm] = m["id"].(string)
		active("with member " + vm)
	}
	post(t, url+"/v2.0/lbaas/healthmonitors", "POST", map[string]any{"healthmonitor": map[string]any{
		"pool_id": pid, "type": "HTTP", "delay": 1, "timeout": 1, "max_retries": 1, "max_retries_down": 2}})
	active("with its health monitor")
	memberStatus := func(vm string) string {
		m := post(t, url+"/v2.0/lbaas/pools/"+pid+"/members/"+members[vm], "GET", nil)["member"].(map[string]any)
		return fmt.Sprint(m["operating_status"])
	}
	testutil.Eventually(t, 15*time.Second, "both members ONLINE", func() (bool, string) {
		return memberStatus("vm1") == "ONLINE" && memberStatus("vm2") == "ONLINE", memberStatus("vm1") + " " + memberStatus("vm2")
	})
	get := func() string {
		out, _ := lab.Output("client", "timeout", "3", "busybox", "wget", "-q", "-O", "-", "http://"+vip+"/")
		return strings.TrimSpace(out)
	}
	seen := map[string]int{}
	for i := 0; i < 6; i++ {
		seen[get()]++
	}
	if seen["vm1"] != 3 || seen["vm2"] != 3 {
		t.Fatalf("round robin through %s: %v", vip, seen)
	}
	// The statistics count those requests (haproxy's counters, reported
	// by the agent).
	testutil.Eventually(t, 10*time.Second, "the statistics count the requests", func() (bool, string) {
		st := post(t, url+"/v2.0/lbaas/loadbalancers/"+id+"/stats", "GET", nil)["stats"].(map[string]any)
		return st["total_connections"].(float64) >= 6 && st["bytes_out"].(float64) > 0, fmt.Sprint(st)
	})
	// L7 policies, in order: /private rejected, /old redirected, /two
	// sent to a pool of vm2 alone (vm1 has no /two: a request there would
	// fail).
	two := post(t, url+"/v2.0/lbaas/pools", "POST", map[string]any{"pool": map[string]any{
		"loadbalancer_id": id, "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN"}})["pool"].(map[string]any)
	active("with a second pool")
	post(t, url+"/v2.0/lbaas/pools/"+two["id"].(string)+"/members", "POST", map[string]any{"member": map[string]any{
		"address": vms["vm2"], "protocol_port": 8080}})
	active("with the second pool's member")
	for _, p := range []map[string]any{
		{"action": "REJECT", "rule": "/private"},
		{"action": "REDIRECT_TO_URL", "redirect_url": "http://example.com/new", "rule": "/old"},
		{"action": "REDIRECT_TO_POOL", "redirect_pool_id": two["id"], "rule": "/two"},
	} {
		rule := p["rule"]
		delete(p, "rule")
		p["listener_id"] = listener["id"]
		pol := post(t, url+"/v2.0/lbaas/l7policies", "POST", map[string]any{"l7policy": p})["l7policy"].(map[string]any)
		active("with an L7 policy")
		post(t, url+"/v2.0/lbaas/l7policies/"+pol["id"].(string)+"/rules", "POST", map[string]any{"rule": map[string]any{
			"type": "PATH", "compare_type": "STARTS_WITH", "value": rule}})
		active("with an L7 rule")
	}
	status, location, body := httpFrom(t, lab, "client", "http://"+vip+"/private")
	if status != 403 {
		t.Fatalf("/private: %d %s", status, body)
	}
	if status, location, _ = httpFrom(t, lab, "client", "http://"+vip+"/old"); status != 302 || location != "http://example.com/new" {
		t.Fatalf("/old: %d %q", status, location)
	}
	for i := 0; i < 4; i++ {
		if status, _, body = httpFrom(t, lab, "client", "http://"+vip+"/two"); status != 200 || body != "vm2-two" {
			t.Fatalf("/two, request %d: %d %q", i, status, body)
		}
	}
	// Failover (admin) rebuilds it (on the same agent, the only one) and
	// it serves again.
	post(t, url+"/v2.0/lbaas/loadbalancers/"+id+"/failover", "PUT", nil)
	active("after its failover")
	testutil.Eventually(t, 10*time.Second, "served after the failover", func() (bool, string) {
		got := get()
		return got == "vm1" || got == "vm2", got
	})
	// vm2's server stops: the health monitor marks it ERROR, the pool
	// DEGRADED, and it gets no more requests.
	servers["vm2"].Process.Kill()
	servers["vm2"].Wait()
	testutil.Eventually(t, 10*time.Second, "vm2's member ERROR", func() (bool, string) {
		return memberStatus("vm2") == "ERROR", memberStatus("vm2")
	})
	p := post(t, url+"/v2.0/lbaas/pools/"+pid, "GET", nil)["pool"].(map[string]any)
	if p["operating_status"] != "DEGRADED" {
		t.Fatalf("pool with a member down: %v", p["operating_status"])
	}
	for i := 0; i < 6; i++ {
		if got := get(); got != "vm1" {
			t.Fatalf("request %d with vm2 down answered %q", i, got)
		}
	}
	// Cascade delete: the namespace, haproxy and the VIP port go.
	post(t, url+"/v2.0/lbaas/loadbalancers/"+id+"?cascade=true", "DELETE", nil)
	testutil.Eventually(t, 20*time.Second, "the load balancer gone", func() (bool, string) {
		l := post(t, url+"/v2.0/lbaas/loadbalancers", "GET", nil)["loadbalancers"].([]any)
		return len(l) == 0 && !dataplane.NamespaceExists(lab.Name("network-1")+"-l"+id[:8]), fmt.Sprint(l)
	})
	if l := post(t, url+"/v2.0/ports?device_owner=Octavia", "GET", nil)["ports"].([]any); len(l) != 0 {
		t.Fatalf("VIP ports left: %v", l)
	}
}

// BenchmarkLoadBalancer: with the haproxy provider on a network host's
// agent, (1) a load balancer from its POST to ACTIVE (ten, one after
// another); (2) a member from its POST to the first request it serves
// (ten, no health monitor: haproxy sends it traffic at once); (3)
// requests per second from the client VM (four workers, 3 s, a new
// connection each: busybox httpd closes them) through the VIP against
// straight to one member. Root, haproxy.
func BenchmarkLoadBalancer(b *testing.B) {
	c := newLBCloud(b)
	url, lab := c.url, c.lab
	status := func(id string) string {
		o := post(b, url+"/v2.0/lbaas/loadbalancers/"+id, "GET", nil)["loadbalancer"].(map[string]any)
		return fmt.Sprint(o["provisioning_status"])
	}
	waitActive := func(id string) time.Duration {
		start := time.Now()
		for status(id) != "ACTIVE" {
			if time.Since(start) > 30*time.Second {
				b.Fatalf("load balancer %s not ACTIVE", id)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return time.Since(start)
	}
	// get fetches a page from the client VM (a Go client dialing there).
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dataplane.Open(lab.Name("client"), func() (net.Conn, error) { return (&net.Dialer{}).DialContext(ctx, network, addr) })
		}}}
	get := func(u string) string {
		resp, err := client.Get(u)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(body))
	}
	for n := 0; n < b.N; n++ {
		var create []time.Duration
		for i := 0; i < 10; i++ {
			start := time.Now()
			o := post(b, url+"/v2.0/lbaas/loadbalancers", "POST", map[string]any{"loadbalancer": map[string]any{
				"vip_subnet_id": c.sn["id"]}})["loadbalancer"].(map[string]any)
			waitActive(o["id"].(string))
			create = append(create, time.Since(start))
			post(b, url+"/v2.0/lbaas/loadbalancers/"+o["id"].(string)+"?cascade=true", "DELETE", nil)
		}
		b.Logf("create to ACTIVE: %v", create)
		testutil.ReportP50Max(b, "create-to-active", create)
		slices.Sort(create)
		b.ReportMetric(float64(create[len(create)*95/100].Milliseconds()), "create-to-active-p95-ms")

		o := post(b, url+"/v2.0/lbaas/loadbalancers", "POST", map[string]any{"loadbalancer": map[string]any{
			"vip_subnet_id": c.sn["id"]}})["loadbalancer"].(map[string]any)
		id, vip := o["id"].(string), o["vip_address"].(string)
		waitActive(id)
		l := post(b, url+"/v2.0/lbaas/listeners", "POST", map[string]any{"listener": map[string]any{
			"loadbalancer_id": id, "protocol": "HTTP", "protocol_port": 80}})["listener"].(map[string]any)
		waitActive(id)
		pool := post(b, url+"/v2.0/lbaas/pools", "POST", map[string]any{"pool": map[string]any{
			"listener_id": l["id"], "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN"}})["pool"].(map[string]any)
		pid := pool["id"].(string)
		waitActive(id)
		var firstRequest []time.Duration
		for i := 0; i < 10; i++ {
			start := time.Now()
			m := post(b, url+"/v2.0/lbaas/pools/"+pid+"/members", "POST", map[string]any{"member": map[string]any{
				"address": c.vms["vm1"], "protocol_port": 8080}})["member"].(map[string]any)
			for get("http://"+vip+"/") != "vm1" {
				if time.Since(start) > 30*time.Second {
					b.Fatal("the new member never answered")
				}
				time.Sleep(5 * time.Millisecond)
			}
			firstRequest = append(firstRequest, time.Since(start))
			waitActive(id)
			if i < 9 {
				post(b, url+"/v2.0/lbaas/pools/"+pid+"/members/"+m["id"].(string), "DELETE", nil)
				waitActive(id)
			}
		}
		b.Logf("member to first request: %v", firstRequest)
		testutil.ReportP50Max(b, "member-to-first-request", firstRequest)

		rps := func(u string) float64 {
			var done atomic.Int64
			stop := time.Now().Add(3 * time.Second)
			var wg sync.WaitGroup
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for time.Now().Before(stop) {
						if get(u) == "vm1" {
							done.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			return float64(done.Load()) / 3
		}
		through, direct := rps("http://"+vip+"/"), rps("http://"+c.vms["vm1"]+":8080/")
		b.ReportMetric(through, "vip-req/s")
		b.ReportMetric(direct, "direct-req/s")
		post(b, url+"/v2.0/lbaas/loadbalancers/"+id+"?cascade=true", "DELETE", nil)
	}
}

// httpFrom makes one GET from a VM (a Go client dialing in its namespace,
// following no redirect): the status, the Location and the body.
func httpFrom(t testing.TB, lab *netlab.Lab, vm, u string) (int, string, string) {
	t.Helper()
	client := &http.Client{Timeout: 3 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dataplane.Open(lab.Name(vm), func() (net.Conn, error) { return (&net.Dialer{}).DialContext(ctx, network, addr) })
		}}}
	resp, err := client.Get(u)
	if err != nil {
		t.Fatalf("GET %s from %s: %v", u, vm, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), strings.TrimSpace(string(body))
}

// TestLoadBalancerTLS: a TERMINATED_HTTPS listener with its certificates
// in the key manager (a PKCS12 bundle made by openssl, as Octavia's users
// store them, for the default; a certificate container for SNI) presents
// the one SNI asks for, verified against the CA by openssl s_client;
// requests through it reach the members; with client authentication
// MANDATORY a client without a certificate from the CA is refused and one
// with it served; and a pool re-encrypts to a member serving TLS (openssl
// s_server), verifying it against the CA. Root, haproxy, openssl.
func TestLoadBalancerTLS(t *testing.T) {
	testutil.RequireDataplane(t, "openssl")
	c := newLBCloud(t)
	url, lab, sn, vms := c.url, c.lab, c.sn, c.vms
	dir := t.TempDir()
	ca := testutil.NewCA(t, "Test CA")
	www := ca.Issue(t, "www.example.com", false, "www.example.com")
	apiCert := ca.Issue(t, "api.example.com", false, "api.example.com")
	member := ca.Issue(t, "member.example.com", false, "member.example.com")
	client := ca.Issue(t, "client-1", true)
	files := map[string][]byte{"ca.pem": ca.PEM, "www.crt": www.CertPEM, "www.key": www.KeyPEM,
		"member.pem": append(append([]byte{}, member.CertPEM...), member.KeyPEM...)}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The PKCS12 bundle as the cookbook makes it (OpenSSL 3: AES, PBKDF2).
	p12 := filepath.Join(dir, "www.p12")
	if out, err := exec.Command("openssl", "pkcs12", "-export", "-inkey", filepath.Join(dir, "www.key"), "-in", filepath.Join(dir, "www.crt"),
		"-passout", "pass:", "-out", p12).CombinedOutput(); err != nil {
		t.Fatalf("openssl pkcs12: %v %s", err, out)
	}
	bundle, _ := os.ReadFile(p12)
	secret := func(payload []byte) string {
		return post(t, url+"/v1/secrets", "POST", map[string]any{"payload": base64.StdEncoding.EncodeToString(payload),
			"payload_content_type": "application/octet-stream", "payload_content_encoding": "base64"})["secret_ref"].(string)
	}
	wwwRef, caRef := secret(bundle), secret(ca.PEM)
	container := post(t, url+"/v1/containers", "POST", map[string]any{"type": "certificate", "secret_refs": []any{
		map[string]any{"name": "certificate", "secret_ref": secret(apiCert.CertPEM)},
		map[string]any{"name": "private_key", "secret_ref": secret(apiCert.KeyPEM)}}})["container_ref"].(string)

	lbObj := post(t, url+"/v2.0/lbaas/loadbalancers", "POST", map[string]any{"loadbalancer": map[string]any{
		"vip_subnet_id": sn["id"]}})["loadbalancer"].(map[string]any)
	id, vip := lbObj["id"].(string), lbObj["vip_address"].(string)
	active := func(what string) {
		testutil.Eventually(t, 20*time.Second, "the load balancer ACTIVE "+what, func() (bool, string) {
			o := post(t, url+"/v2.0/lbaas/loadbalancers/"+id, "GET", nil)["loadbalancer"].(map[string]any)
			return o["provisioning_status"] == "ACTIVE", fmt.Sprint(o["provisioning_status"])
		})
	}
	active("")
	listener := post(t, url+"/v2.0/lbaas/listeners", "POST", map[string]any{"listener": map[string]any{
		"loadbalancer_id": id, "protocol": "TERMINATED_HTTPS", "protocol_port": 443,
		"default_tls_container_ref": wwwRef, "sni_container_refs": []any{container}}})["listener"].(map[string]any)
	active("with its TLS listener")
	pool := post(t, url+"/v2.0/lbaas/pools", "POST", map[string]any{"pool": map[string]any{
		"listener_id": listener["id"], "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN"}})["pool"].(map[string]any)
	active("with its pool")
	for _, vm := range []string{"vm1", "vm2"} {
		post(t, url+"/v2.0/lbaas/pools/"+pool["id"].(string)+"/members", "POST", map[string]any{"member": map[string]any{
			"address": vms[vm], "protocol_port": 8080}})
		active("with member " + vm)
	}
	// openssl s_client from the client VM: the certificate SNI asks for
	// (the default without SNI), verified against the CA.
	presented := func(servername string) string {
		args := []string{"timeout", "5", "openssl", "s_client", "-connect", vip + ":443", "-verify_return_error", "-CAfile", filepath.Join(dir, "ca.pem")}
		if servername != "" {
			args = append(args, "-servername", servername)
		} else {
			args = append(args, "-noservername")
		}
		cmd := exec.Command("ip", append([]string{"netns", "exec", lab.Name("client")}, args...)...)
		cmd.Stdin = strings.NewReader("")
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), "Verify return code: 0 (ok)") {
			return "unverified: " + string(out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if s, ok := strings.CutPrefix(strings.TrimSpace(line), "subject="); ok {
				return s
			}
		}
		return "no subject: " + string(out)
	}
	for servername, want := range map[string]string{"www.example.com": "CN = www.example.com", "api.example.com": "CN = api.example.com",
		"": "CN = www.example.com", "other.example.com": "CN = www.example.com"} {
		if got := presented(servername); got != want {
			t.Fatalf("SNI %q: presented %q, want %q", servername, got, want)
		}
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	httpsGet := func(name string, cert *testutil.Issued) (string, error) {
		cfg := &tls.Config{RootCAs: roots, ServerName: name}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{{Certificate: [][]byte{cert.Cert.Raw}, PrivateKey: cert.Key}}
		}
		hc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: cfg,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return dataplane.Open(lab.Name("client"), func() (net.Conn, error) { return (&net.Dialer{}).DialContext(ctx, network, addr) })
			}}}
		resp, err := hc.Get("https://" + vip + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(body)), nil
	}
	seen := map[string]int{}
	for i := 0; i < 4; i++ {
		got, err := httpsGet("api.example.com", nil)
		if err != nil {
			t.Fatalf("HTTPS through the VIP: %v", err)
		}
		seen[got]++
	}
	if seen["vm1"] != 2 || seen["vm2"] != 2 {
		t.Fatalf("round robin over TLS: %v", seen)
	}
	// Client authentication, MANDATORY: a certificate from the CA or no
	// handshake.
	post(t, url+"/v2.0/lbaas/listeners/"+listener["id"].(string), "PUT", map[string]any{"listener": map[string]any{
		"client_ca_tls_container_ref": caRef, "client_authentication": "MANDATORY"}})
	active("with client authentication")
	testutil.Eventually(t, 10*time.Second, "a client without a certificate refused", func() (bool, string) {
		_, err := httpsGet("www.example.com", nil)
		return err != nil, fmt.Sprint(err)
	})
	if got, err := httpsGet("www.example.com", client); err != nil || (got != "vm1" && got != "vm2") {
		t.Fatalf("a client with its certificate: %q %v", got, err)
	}
	// Re-encryption: an HTTP listener whose pool speaks TLS to a member
	// (openssl s_server on vm1, its certificate from the CA), verified.
	srv := exec.Command("ip", "netns", "exec", lab.Name("vm1"), "openssl", "s_server", "-accept", "8443", "-cert", filepath.Join(dir, "member.pem"), "-www", "-quiet")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	plain := post(t, url+"/v2.0/lbaas/listeners", "POST", map[string]any{"listener": map[string]any{
		"loadbalancer_id": id, "protocol": "HTTP", "protocol_port": 80}})["listener"].(map[string]any)
	active("with an HTTP listener")
	tlsPool := post(t, url+"/v2.0/lbaas/pools", "POST", map[string]any{"pool": map[string]any{
		"listener_id": plain["id"], "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN", "tls_enabled": true, "ca_tls_container_ref": caRef}})["pool"].(map[string]any)
	active("with a re-encrypting pool")
	post(t, url+"/v2.0/lbaas/pools/"+tlsPool["id"].(string)+"/members", "POST", map[string]any{"member": map[string]any{
		"address": vms["vm1"], "protocol_port": 8443}})
	active("with the TLS member")
	testutil.Eventually(t, 10*time.Second, "the TLS member answers through the VIP", func() (bool, string) {
		status, _, body := httpFrom(t, lab, "client", "http://"+vip+"/")
		return status == 200 && strings.Contains(body, "s_server"), fmt.Sprint(status, " ", body[:min(len(body), 200)])
	})
	post(t, url+"/v2.0/lbaas/loadbalancers/"+id+"?cascade=true", "DELETE", nil)
	testutil.Eventually(t, 20*time.Second, "the load balancer gone", func() (bool, string) {
		l := post(t, url+"/v2.0/lbaas/loadbalancers", "GET", nil)["loadbalancers"].([]any)
		return len(l) == 0, fmt.Sprint(l)
	})
}
