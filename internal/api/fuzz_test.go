package api

import (
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"neutrino/internal/fault"
	"neutrino/internal/policy"
	"neutrino/internal/schema"
	"neutrino/internal/services"
)

// FuzzListQuery: any query string parses or is a 4xx, for every resource.
func FuzzListQuery(f *testing.F) {
	for _, s := range []string{"name=a&name=b", "fields=id&sort_key=name&sort_dir=asc&limit=2&marker=x&page_reverse=True",
		"tags=a,b&not-tags-any=c", "foo=bar", "limit=-1", "sort_key=name", "fixed_ips=ip_address%3D10.0.0.1", "%zz", "admin_state_up=maybe"} {
		f.Add(s, true)
	}
	reg, err := services.Build(nil, services.Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string, admin bool) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return // net/http answers these itself
		}
		c := &policy.Caller{ProjectID: "p", Admin: admin}
		for _, r := range reg.Resources() {
			lq, err := parseList(r, c, q)
			if err != nil {
				if fe, ok := fault.As(err); !ok || fe.Status >= 500 {
					t.Fatalf("%s: %v", raw, err)
				}
				continue
			}
			objs := []schema.Object{{"id": "b", "name": "x", "tags": []any{"a"}}, {"id": "a", "name": nil}}
			for _, o := range objs {
				lq.match(r, o)
			}
			lq.page(objs, nil, "http://x/v2.0/"+r.URLPath(), q)
		}
	})
}

// FuzzCreateRequests drives real create requests with arbitrary bodies at a
// real server: the answer is 201 or a 4xx, and a refused request stores
// nothing.
func FuzzCreateRequests(f *testing.F) {
	for _, s := range []string{
		`{"network": {"name": "n"}}`,
		`{"subnet": {"network_id": "NET", "ip_version": 4, "cidr": "10.9.0.0/24", "gateway_ip": "10.9.0.300"}}`,
		`{"port": {"network_id": "NET", "fixed_ips": [{"subnet_id": "nope"}]}}`,
		`{"ports": [{"network_id": "NET"}, {"network_id": "NET", "mac_address": "fa:16:3e:00:00:01"}, {"network_id": "NET", "mac_address": "fa:16:3e:00:00:01"}]}`,
		`{"security_group_rule": {"security_group_id": "SG", "direction": "egress", "protocol": "300"}}`,
		`{"subnet": {"network_id": "NET", "ip_version": 6, "cidr": "2001:db8::/64", "ipv6_address_mode": "slaac", "allocation_pools": [{"start": "2001:db8::9", "end": "2001:db8::1"}]}}`,
	} {
		f.Add(s, uint8(0))
	}
	e := newEnv(f, filepath.Join(f.TempDir(), "fuzz.db"), services.Config{})
	net := e.do(userA, "POST", "/v2.0/networks", map[string]any{"network": map[string]any{}}).Body["network"].(map[string]any)["id"].(string)
	e.do(userA, "POST", "/v2.0/subnets", map[string]any{"subnet": map[string]any{"network_id": net, "ip_version": 4, "cidr": "10.8.0.0/24"}})
	sg := e.do(userA, "POST", "/v2.0/security-groups", map[string]any{"security_group": map[string]any{"name": "f"}}).Body["security_group"].(map[string]any)["id"].(string)
	paths := []string{"/v2.0/networks", "/v2.0/subnets", "/v2.0/ports", "/v2.0/security-groups", "/v2.0/security-group-rules", "/v2.0/subnetpools", "/v2.0/rbac-policies"}
	f.Fuzz(func(t *testing.T, body string, which uint8) {
		e.t = t
		body = replaceAll(body, "NET", net, "SG", sg)
		path := paths[int(which)%len(paths)]
		rev := currentRevision(t, e)
		r := e.do(userA, "POST", path, body)
		switch {
		case r.Status == 201:
		case r.Status >= 400 && r.Status < 500:
			if got := currentRevision(t, e); got != rev {
				t.Fatalf("refused %s (%d: %s) but the store moved from revision %d to %d", path, r.Status, r.Raw, rev, got)
			}
		default:
			t.Fatalf("%s %q: %d %s", path, body, r.Status, r.Raw)
		}
	})
}

func currentRevision(t *testing.T, e *testEnv) int64 {
	ch, err := e.db.Changes(t.Context(), 0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch) == 0 {
		return 0
	}
	return ch[len(ch)-1].Rev
}

func replaceAll(s string, kv ...string) string {
	for i := 0; i+1 < len(kv); i += 2 {
		s = strings.ReplaceAll(s, kv[i], kv[i+1])
	}
	return s
}
