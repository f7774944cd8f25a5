package api

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// TestLoadBalancerAPI: Octavia's v2 API on the load-balancer endpoint (and
// under /v2.0/lbaas/ on the network endpoint): a load balancer with its
// VIP port on a tenant subnet, a listener, a pool with a member and a
// health monitor, each PENDING_* until the provider completes (the noop
// driver at once), changes refused while the load balancer is pending
// (ImmutableObject), the status tree, Octavia's errors, members only
// under their pool, and delete with and without cascade.
func TestLoadBalancerAPI(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		lbSrv := httptest.NewServer(e.api.LoadBalancer())
		defer lbSrv.Close()
		net := e.network(userA, nil)["id"].(string)
		sn := e.subnet(userA, map[string]any{"network_id": net, "ip_version": 4, "cidr": "10.90.0.0/24"})
		// do on the load-balancer endpoint.
		lb := func(who as, method, path string, body any) resp {
			t.Helper()
			saved := e.srv
			e.srv = lbSrv
			defer func() { e.srv = saved }()
			return e.do(who, method, path, body)
		}
		octaviaFault := func(r resp, status int, contains string) {
			t.Helper()
			if r.Status != status || r.Body["faultcode"] == nil || r.Body["faultstring"] == nil {
				t.Fatalf("status %d, want %d, in Octavia's error format: %s", r.Status, status, r.Raw)
			}
			if s, _ := r.Body["faultstring"].(string); contains != "" && !containsStr(s, contains) {
				t.Fatalf("faultstring %q lacks %q", s, contains)
			}
		}
		if v := lb(userA, "GET", "/", nil); v.Status != 200 || v.Body["versions"] == nil {
			t.Fatalf("version document: %d %s", v.Status, v.Raw)
		}
		if v := lb(userA, "GET", "/v2", nil); v.Status != 200 || string(v.Raw) != `"v2"` {
			t.Fatalf("GET /v2: %d %s", v.Status, v.Raw)
		}
		octaviaFault(lb(userA, "POST", "/v2/lbaas/loadbalancers", map[string]any{"loadbalancer": map[string]any{"name": "x"}}), 400, "VIP must contain one of")
		octaviaFault(lb(userA, "POST", "/v2/lbaas/loadbalancers", map[string]any{"loadbalancer": map[string]any{"vip_subnet_id": sn["id"],
			"provider": "nonesuch"}}), 400, "Provider 'nonesuch' is not enabled")
		octaviaFault(lb(userA, "GET", "/v2/lbaas/loadbalancers/9d6ad31f-0000-4000-8000-000000000000", nil), 404, "Load Balancer 9d6ad31f-0000-4000-8000-000000000000 not found")
		created := e.must(201, lb(userA, "POST", "/v2/lbaas/loadbalancers", map[string]any{"loadbalancer": map[string]any{
			"name": "lb1", "vip_subnet_id": sn["id"], "provider": "noop_driver"}}), "loadbalancer")
		id := created["id"].(string)
		if created["provisioning_status"] != "PENDING_CREATE" || created["operating_status"] != "OFFLINE" || created["vip_address"] == nil ||
			created["provider"] != "noop_driver" || created["vip_network_id"] != net || created["tenant_id"] != created["project_id"] ||
			strings.HasSuffix(created["created_at"].(string), "Z") || created["additional_vips"] == nil {
			t.Fatalf("created: %v", created)
		}
		// The VIP port, Octavia's.
		vip := e.must(200, e.do(userA, "GET", "/v2.0/ports/"+created["vip_port_id"].(string), nil), "port")
		if vip["device_owner"] != "Octavia" || vip["device_id"] != "lb-"+id || vip["name"] != "octavia-lb-"+id {
			t.Fatalf("VIP port: %v", vip)
		}
		got := e.must(200, lb(userA, "GET", "/v2/lbaas/loadbalancers/"+id, nil), "loadbalancer")
		if got["provisioning_status"] != "ACTIVE" || got["operating_status"] != "ONLINE" {
			t.Fatalf("after the noop driver: %v", got)
		}
		// The same on the network endpoint, in Neutron's error format.
		if l := e.list(userA, "/v2.0/lbaas/loadbalancers", "loadbalancers"); len(l) != 1 {
			t.Fatalf("/v2.0/lbaas/loadbalancers: %v", l)
		}
		e.fault(e.do(userA, "GET", "/v2.0/lbaas/loadbalancers/9d6ad31f-0000-4000-8000-000000000000", nil), 404, "NotFound")
		// Another project sees none of it.
		if l := lb(userB, "GET", "/v2/lbaas/loadbalancers", nil); len(l.Body["loadbalancers"].([]any)) != 0 {
			t.Fatalf("another project lists %s", l.Raw)
		}
		octaviaFault(lb(userB, "GET", "/v2/lbaas/loadbalancers/"+id, nil), 403, "Policy does not allow")
		octaviaFault(lb(userB, "DELETE", "/v2/lbaas/loadbalancers/"+id, nil), 403, "Policy does not allow")

		listener := e.must(201, lb(userA, "POST", "/v2/lbaas/listeners", map[string]any{"listener": map[string]any{
			"loadbalancer_id": id, "protocol": "HTTP", "protocol_port": 80}}), "listener")
		if listener["provisioning_status"] != "PENDING_CREATE" || listener["connection_limit"] != float64(-1) ||
			listener["timeout_client_data"] != float64(50000) {
			t.Fatalf("listener: %v", listener)
		}
		octaviaFault(lb(userA, "POST", "/v2/lbaas/listeners", map[string]any{"listener": map[string]any{
			"loadbalancer_id": id, "protocol": "TCP", "protocol_port": 80}}), 409, "already using protocol_port 80")
		octaviaFault(lb(userA, "POST", "/v2/lbaas/listeners", map[string]any{"listener": map[string]any{
			"loadbalancer_id": id, "protocol": "GOPHER", "protocol_port": 81}}), 400, "")
		pool := e.must(201, lb(userA, "POST", "/v2/lbaas/pools", map[string]any{"pool": map[string]any{
			"listener_id": listener["id"], "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN"}}), "pool")
		pid := pool["id"].(string)
		member := e.must(201, lb(userA, "POST", "/v2/lbaas/pools/"+pid+"/members", map[string]any{"member": map[string]any{
			"address": "10.90.0.10", "protocol_port": 8080, "subnet_id": sn["id"]}}), "member")
		if member["weight"] != float64(1) || member["operating_status"] != "NO_MONITOR" || member["pool_id"] != nil {
			t.Fatalf("member: %v", member)
		}
		octaviaFault(lb(userA, "POST", "/v2/lbaas/pools/"+pid+"/members", map[string]any{"member": map[string]any{
			"address": "10.90.0.10", "protocol_port": 8080}}), 409, "already using ip 10.90.0.10")
		hm := e.must(201, lb(userA, "POST", "/v2/lbaas/healthmonitors", map[string]any{"healthmonitor": map[string]any{
			"pool_id": pid, "type": "HTTP", "delay": 5, "timeout": 3, "max_retries": 2}}), "healthmonitor")
		if hm["url_path"] != "/" || hm["http_method"] != "GET" || hm["expected_codes"] != "200" || hm["max_retries_down"] != float64(3) {
			t.Fatalf("health monitor: %v", hm)
		}
		// The relations, as Octavia shows them.
		got = e.must(200, lb(userA, "GET", "/v2/lbaas/loadbalancers/"+id, nil), "loadbalancer")
		if len(got["listeners"].([]any)) != 1 || len(got["pools"].([]any)) != 1 || got["provisioning_status"] != "ACTIVE" {
			t.Fatalf("load balancer: %v", got)
		}
		p := e.must(200, lb(userA, "GET", "/v2/lbaas/pools/"+pid, nil), "pool")
		if p["healthmonitor_id"] != hm["id"] || len(p["members"].([]any)) != 1 || len(p["listeners"].([]any)) != 1 {
			t.Fatalf("pool: %v", p)
		}
		if l := e.must(200, lb(userA, "GET", "/v2/lbaas/listeners/"+listener["id"].(string), nil), "listener"); l["default_pool_id"] != pid {
			t.Fatalf("listener's default pool: %v", l)
		}
		// Members live under their pool only.
		octaviaFault(lb(userA, "GET", "/v2/lbaas/members", nil), 404, "")
		other := e.must(201, lb(userA, "POST", "/v2/lbaas/pools", map[string]any{"pool": map[string]any{
			"loadbalancer_id": id, "protocol": "TCP", "lb_algorithm": "SOURCE_IP"}}), "pool")
		octaviaFault(lb(userA, "GET", "/v2/lbaas/pools/"+other["id"].(string)+"/members/"+member["id"].(string), nil), 404, "Member")
		if l := lb(userA, "GET", "/v2/lbaas/pools/"+pid+"/members", nil); len(l.Body["members"].([]any)) != 1 {
			t.Fatalf("members: %s", l.Raw)
		}
		// Providers, statistics (nothing counted by the noop driver), the
		// batch member update (one updated, one new, the others gone) and
		// failover (admin only).
		if pr := e.must(200, lb(userA, "GET", "/v2/lbaas/providers", nil), ""); len(pr["providers"].([]any)) != 2 {
			t.Fatalf("providers: %v", pr)
		}
		if st := e.must(200, lb(userA, "GET", "/v2/lbaas/loadbalancers/"+id+"/stats", nil), "stats"); st["total_connections"] != float64(0) {
			t.Fatalf("stats: %v", st)
		}
		extra := e.must(201, lb(userA, "POST", "/v2/lbaas/pools/"+pid+"/members", map[string]any{"member": map[string]any{
			"address": "10.90.0.12", "protocol_port": 8080}}), "member")
		if r := lb(userA, "PUT", "/v2/lbaas/pools/"+pid+"/members", map[string]any{"members": []any{
			map[string]any{"address": "10.90.0.10", "protocol_port": 8080, "weight": 5},
			map[string]any{"address": "10.90.0.11", "protocol_port": 8080}}}); r.Status != 202 || len(r.Raw) != 0 {
			t.Fatalf("batch member update: %d %s", r.Status, r.Raw)
		}
		ms := lb(userA, "GET", "/v2/lbaas/pools/"+pid+"/members", nil).Body["members"].([]any)
		byAddr := map[any]map[string]any{}
		for _, m := range ms {
			byAddr[m.(map[string]any)["address"]] = m.(map[string]any)
		}
		if len(ms) != 2 || byAddr["10.90.0.10"]["weight"] != float64(5) || byAddr["10.90.0.11"] == nil || byAddr["10.90.0.10"]["id"] != member["id"] {
			t.Fatalf("members after the batch update (%s gone): %v", extra["id"], ms)
		}
		octaviaFault(lb(userA, "PUT", "/v2/lbaas/loadbalancers/"+id+"/failover", nil), 403, "")
		if r := lb(admin, "PUT", "/v2/lbaas/loadbalancers/"+id+"/failover", nil); r.Status != 202 {
			t.Fatalf("failover: %d %s", r.Status, r.Raw)
		}
		// L7 policies on the HTTP listener, rules under their policy.
		octaviaFault(lb(userA, "POST", "/v2/lbaas/l7policies", map[string]any{"l7policy": map[string]any{
			"listener_id": listener["id"], "action": "REDIRECT_TO_URL", "redirect_url": "not a url"}}), 400, "redirect_url")
		pol1 := e.must(201, lb(userA, "POST", "/v2/lbaas/l7policies", map[string]any{"l7policy": map[string]any{
			"listener_id": listener["id"], "action": "REJECT"}}), "l7policy")
		pol2 := e.must(201, lb(userA, "POST", "/v2/lbaas/l7policies", map[string]any{"l7policy": map[string]any{
			"listener_id": listener["id"], "action": "REDIRECT_TO_URL", "redirect_url": "http://example.com/", "position": 1}}), "l7policy")
		if pol2["position"] != float64(1) || pol2["redirect_http_code"] != float64(302) {
			t.Fatalf("policy: %v", pol2)
		}
		if p := e.must(200, lb(userA, "GET", "/v2/lbaas/l7policies/"+pol1["id"].(string), nil), "l7policy"); p["position"] != float64(2) {
			t.Fatalf("the first policy after one inserted before it: %v", p["position"])
		}
		rule := e.must(201, lb(userA, "POST", "/v2/lbaas/l7policies/"+pol1["id"].(string)+"/rules", map[string]any{"rule": map[string]any{
			"type": "PATH", "compare_type": "STARTS_WITH", "value": "/private"}}), "rule")
		octaviaFault(lb(userA, "GET", "/v2/lbaas/l7policies/"+pol2["id"].(string)+"/rules/"+rule["id"].(string), nil), 404, "L7 Rule")
		octaviaFault(lb(userA, "POST", "/v2/lbaas/l7policies/"+pol1["id"].(string)+"/rules", map[string]any{"rule": map[string]any{
			"type": "HEADER", "compare_type": "EQUAL_TO", "value": "x"}}), 400, "key is required")
		if p := e.must(200, lb(userA, "GET", "/v2/lbaas/l7policies/"+pol1["id"].(string), nil), "l7policy"); len(p["rules"].([]any)) != 1 {
			t.Fatalf("policy's rules: %v", p["rules"])
		}
		if l := e.must(200, lb(userA, "GET", "/v2/lbaas/listeners/"+listener["id"].(string), nil), "listener"); len(l["l7policies"].([]any)) != 2 {
			t.Fatalf("listener's policies: %v", l["l7policies"])
		}
		tcp := e.must(201, lb(userA, "POST", "/v2/lbaas/listeners", map[string]any{"listener": map[string]any{
			"loadbalancer_id": id, "protocol": "TCP", "protocol_port": 22}}), "listener")
		octaviaFault(lb(userA, "POST", "/v2/lbaas/l7policies", map[string]any{"l7policy": map[string]any{
			"listener_id": tcp["id"], "action": "REJECT"}}), 400, "HTTP listener")
		// The status tree.
		tree := e.must(200, lb(userA, "GET", "/v2/lbaas/loadbalancers/"+id+"/status", nil), "statuses")
		root := tree["loadbalancer"].(map[string]any)
		var pl map[string]any
		for _, l := range root["listeners"].([]any) { // the HTTP listener's pool
			if l := l.(map[string]any); l["id"] == listener["id"] && len(l["pools"].([]any)) == 1 {
				pl = l["pools"].([]any)[0].(map[string]any)
			}
		}
		if root["provisioning_status"] != "ACTIVE" || pl == nil || len(pl["members"].([]any)) != 2 || pl["health_monitor"] == nil {
			t.Fatalf("status tree: %v", tree)
		}
		// Flavors: profiles are the admin's; a flavor's profile names the
		// provider a load balancer of that flavor gets.
		octaviaFault(lb(admin, "POST", "/v2/lbaas/flavorprofiles", map[string]any{"flavorprofile": map[string]any{
			"name": "ha", "provider_name": "haproxy", "flavor_data": `{"loadbalancer_topology": "ACTIVE_STANDBY"}`}}), 400, "does not support")
		e.fault(e.do(userA, "POST", "/v2.0/lbaas/flavorprofiles", map[string]any{"flavorprofile": map[string]any{
			"name": "x", "provider_name": "noop_driver", "flavor_data": "{}"}}), 403, "PolicyNotAuthorized")
		prof := e.must(201, lb(admin, "POST", "/v2/lbaas/flavorprofiles", map[string]any{"flavorprofile": map[string]any{
			"name": "api", "provider_name": "noop_driver", "flavor_data": "{}"}}), "flavorprofile")
		flavor := e.must(201, lb(admin, "POST", "/v2/lbaas/flavors", map[string]any{"flavor": map[string]any{
			"name": "api-only", "flavor_profile_id": prof["id"]}}), "flavor")
		octaviaFault(lb(userA, "POST", "/v2/lbaas/flavors", map[string]any{"flavor": map[string]any{
			"name": "mine", "flavor_profile_id": prof["id"]}}), 403, "")
		if l := lb(userA, "GET", "/v2/lbaas/flavors", nil); len(l.Body["flavors"].([]any)) != 1 {
			t.Fatalf("flavors a member sees: %s", l.Raw)
		}
		flavored := e.must(201, lb(userA, "POST", "/v2/lbaas/loadbalancers", map[string]any{"loadbalancer": map[string]any{
			"vip_network_id": net, "flavor_id": flavor["id"]}}), "loadbalancer")
		if flavored["provider"] != "noop_driver" || flavored["flavor_id"] != flavor["id"] {
			t.Fatalf("load balancer of a flavor: %v", flavored)
		}
		octaviaFault(lb(userA, "POST", "/v2/lbaas/loadbalancers", map[string]any{"loadbalancer": map[string]any{
			"vip_network_id": net, "flavor_id": flavor["id"], "provider": "haproxy"}}), 400, "not compatible with provider")
		octaviaFault(lb(admin, "DELETE", "/v2/lbaas/flavors/"+flavor["id"].(string), nil), 409, "in use")
		e.must(200, lb(admin, "PUT", "/v2/lbaas/flavors/"+flavor["id"].(string), map[string]any{"flavor": map[string]any{"enabled": false}}), "flavor")
		octaviaFault(lb(userA, "POST", "/v2/lbaas/loadbalancers", map[string]any{"loadbalancer": map[string]any{
			"vip_network_id": net, "flavor_id": flavor["id"]}}), 400, "not allowed")
		// A load balancer whose provider has not applied it yet (the
		// haproxy provider, no agent here) takes no change.
		pending := e.must(201, lb(userA, "POST", "/v2/lbaas/loadbalancers", map[string]any{"loadbalancer": map[string]any{
			"vip_network_id": net}}), "loadbalancer")
		if pending["provider"] != "haproxy" {
			t.Fatalf("default provider: %v", pending["provider"])
		}
		octaviaFault(lb(userA, "POST", "/v2/lbaas/listeners", map[string]any{"listener": map[string]any{
			"loadbalancer_id": pending["id"], "protocol": "HTTP", "protocol_port": 80}}), 409, "is immutable and cannot be updated")
		octaviaFault(lb(userA, "PUT", "/v2/lbaas/loadbalancers/"+pending["id"].(string), map[string]any{"loadbalancer": map[string]any{"name": "n"}}), 409,
			"Invalid state PENDING_CREATE of loadbalancer resource "+pending["id"].(string))
		octaviaFault(lb(userA, "DELETE", "/v2/lbaas/loadbalancers/"+pending["id"].(string), nil), 409, "Invalid state PENDING_CREATE")
		// Updates; delete with children refused without cascade.
		if u := e.must(200, lb(userA, "PUT", "/v2/lbaas/loadbalancers/"+id, map[string]any{"loadbalancer": map[string]any{"name": "lb2"}}), "loadbalancer"); u["provisioning_status"] != "PENDING_UPDATE" || u["name"] != "lb2" {
			t.Fatalf("updated: %v", u)
		}
		octaviaFault(lb(userA, "DELETE", "/v2/lbaas/loadbalancers/"+id, nil), 400, "it has children")
		if r := lb(userA, "DELETE", "/v2/lbaas/pools/"+pid+"/members/"+member["id"].(string), nil); r.Status != 204 {
			t.Fatalf("member delete: %d %s", r.Status, r.Raw)
		}
		if r := lb(userA, "DELETE", "/v2/lbaas/loadbalancers/"+id+"?cascade=true", nil); r.Status != 204 {
			t.Fatalf("cascade delete: %d %s", r.Status, r.Raw)
		}
		octaviaFault(lb(userA, "GET", "/v2/lbaas/loadbalancers/"+id, nil), 404, "not found")
		e.fault(e.do(userA, "GET", "/v2.0/ports/"+created["vip_port_id"].(string), nil), 404, "PortNotFound")
		if l := lb(userA, "GET", "/v2/lbaas/pools", nil); len(l.Body["pools"].([]any)) != 0 {
			t.Fatalf("pools after cascade: %s", l.Raw)
		}
		if l := lb(userA, "GET", "/v2/lbaas/l7policies", nil); len(l.Body["l7policies"].([]any)) != 0 {
			t.Fatalf("L7 policies after cascade: %s", l.Raw)
		}
	})
}

func containsStr(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
