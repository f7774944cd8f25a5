package api

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"neutrino/internal/store"
	"neutrino/internal/testutil"
)

// TestKeyManagerAPI: the key-manager endpoint (Barbican's v1 subset):
// secrets stored as text and as base64 bytes, read back, kept encrypted in
// the store; Barbican's errors; paging; certificate containers and their
// rules; ACLs that let a user of another project read, or take project
// access away; and load-balancer listeners and pools that name
// certificates, checked as Octavia checks them.
func TestKeyManagerAPI(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		kmSrv := httptest.NewServer(e.api.KeyManager())
		defer kmSrv.Close()
		lbSrv := httptest.NewServer(e.api.LoadBalancer())
		defer lbSrv.Close()
		on := func(srv *httptest.Server, who as, method, path string, body any, hdr ...string) resp {
			t.Helper()
			saved := e.srv
			e.srv = srv
			defer func() { e.srv = saved }()
			return e.do(who, method, path, body, hdr...)
		}
		km := func(who as, method, path string, body any, hdr ...string) resp {
			t.Helper()
			return on(kmSrv, who, method, path, body, append([]string{"X-User-Id", "user-" + who.project}, hdr...)...)
		}
		barbicanFault := func(r resp, status int, contains string) {
			t.Helper()
			if r.Status != status || r.Body["code"] != float64(status) || r.Body["title"] == nil {
				t.Fatalf("status %d, want %d, in Barbican's error format: %s", r.Status, status, r.Raw)
			}
			if d, _ := r.Body["description"].(string); !strings.Contains(d, contains) {
				t.Fatalf("description %q lacks %q", d, contains)
			}
		}
		if v := km(userA, "GET", "/", nil); v.Status != 300 || !strings.Contains(string(v.Raw), `"id":"v1"`) {
			t.Fatalf("version document: %d %s", v.Status, v.Raw)
		}
		// A text secret: its ref (and Location), metadata and payload.
		r := km(userA, "POST", "/v1/secrets", map[string]any{"name": "s1", "payload": "the-secret-text", "payload_content_type": "text/plain"})
		ref, _ := r.Body["secret_ref"].(string)
		if r.Status != 201 || !strings.HasPrefix(ref, kmSrv.URL+"/v1/secrets/") || r.Header.Get("Location") != ref {
			t.Fatalf("store: %d %s %v", r.Status, r.Raw, r.Header)
		}
		path := strings.TrimPrefix(ref, kmSrv.URL)
		meta := km(userA, "GET", path, nil, "Accept", "application/json")
		if meta.Status != 200 || meta.Body["name"] != "s1" || meta.Body["status"] != "ACTIVE" || meta.Body["secret_type"] != "opaque" ||
			meta.Body["creator_id"] != "user-"+projA || meta.Body["secret_ref"] != ref || !strings.Contains(string(meta.Raw), `"default":"text/plain"`) {
			t.Fatalf("metadata: %d %s", meta.Status, meta.Raw)
		}
		// The payload in the type asked for (bytes when none is).
		if p := km(userA, "GET", path+"/payload", nil, "Accept", "text/plain"); p.Status != 200 || string(p.Raw) != "the-secret-text" || p.Header.Get("Content-Type") != "text/plain; charset=UTF-8" {
			t.Fatalf("payload: %d %q %v", p.Status, p.Raw, p.Header)
		}
		if p := km(userA, "GET", path+"/payload", nil); string(p.Raw) != "the-secret-text" || p.Header.Get("Content-Type") != "application/octet-stream" {
			t.Fatalf("payload without Accept: %d %q %v", p.Status, p.Raw, p.Header)
		}
		barbicanFault(km(userA, "GET", path+"/payload", nil, "Accept", "application/json"), 406, "Wrong payload content-type")
		if p := km(userA, "GET", path, nil, "Accept", "text/plain"); string(p.Raw) != "the-secret-text" {
			t.Fatalf("payload by Accept: %d %q", p.Status, p.Raw)
		}
		// At rest: the store holds no plaintext (neither in the resource
		// nor in the change log).
		err := e.db.Read(context.Background(), func(tx *store.Tx) error {
			for _, table := range []string{"resources", "changes"} {
				var n int
				if err := tx.QueryRow("SELECT COUNT(*) FROM " + table + " WHERE body LIKE '%the-secret-text%'").Scan(&n); err != nil {
					return err
				}
				if n != 0 {
					t.Errorf("%s holds the payload in the clear", table)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// Bytes, base64 on the wire.
		bin := []byte{0, 1, 2, 0xff, 'x'}
		r = km(userA, "POST", "/v1/secrets", map[string]any{"name": "bin", "payload": base64.StdEncoding.EncodeToString(bin),
			"payload_content_type": "application/octet-stream", "payload_content_encoding": "base64", "secret_type": "symmetric", "bit_length": 40})
		binPath := strings.TrimPrefix(r.Body["secret_ref"].(string), kmSrv.URL)
		if p := km(userA, "GET", binPath+"/payload", nil, "Accept", "application/octet-stream"); string(p.Raw) != string(bin) || p.Header.Get("Content-Type") != "application/octet-stream" {
			t.Fatalf("binary payload: %d %q", p.Status, p.Raw)
		}
		barbicanFault(km(userA, "GET", binPath+"/payload", nil, "Accept", "text/plain"), 406, "Wrong payload content-type") // not UTF-8
		// Metadata first, the payload after (once).
		r = km(userA, "POST", "/v1/secrets", map[string]any{"name": "later"})
		laterPath := strings.TrimPrefix(r.Body["secret_ref"].(string), kmSrv.URL)
		barbicanFault(km(userA, "GET", laterPath+"/payload", nil), 404, "your secret has no payload")
		if p := km(userA, "PUT", laterPath, "now", "Content-Type", "text/plain"); p.Status != 204 {
			t.Fatalf("put payload: %d %s", p.Status, p.Raw)
		}
		barbicanFault(km(userA, "PUT", laterPath, "again", "Content-Type", "text/plain"), 409, "already has data")
		// Errors, and nothing stored by them.
		barbicanFault(km(userA, "POST", "/v1/secrets", map[string]any{"payload": "x"}), 400, "payload_content_type")
		barbicanFault(km(userA, "POST", "/v1/secrets", map[string]any{"payload": "x", "payload_content_type": "image/png"}), 400, "payload_content_type is not one of")
		barbicanFault(km(userA, "POST", "/v1/secrets", map[string]any{"payload": "%%", "payload_content_type": "application/octet-stream", "payload_content_encoding": "base64"}), 400, "Invalid payload for payload_content_encoding")
		barbicanFault(km(userA, "POST", "/v1/secrets", map[string]any{"name": "old", "expiration": "2001-01-01T00:00:00Z"}), 400, "expiration")
		barbicanFault(km(userA, "POST", "/v1/secrets", map[string]any{"secret_type": "nonesuch"}), 400, "nonesuch")
		barbicanFault(km(userA, "POST", "/v1/secrets", "{not json"), 400, "Malformed JSON")
		barbicanFault(km(userA, "POST", "/v1/secrets", map[string]any{"name": "x"}, "Content-Type", "text/plain"), 415, "application/json")
		barbicanFault(km(userA, "GET", "/v1/secrets/not-a-uuid", nil), 404, "Provided secret id is invalid")
		barbicanFault(km(userA, "GET", "/v1/secrets/9d6ad31f-0000-4000-8000-00000000000a", nil), 404, "Secret not found.")
		// Paging: three secrets, two a page.
		l := km(userA, "GET", "/v1/secrets?limit=2", nil)
		if l.Body["total"] != float64(3) || len(l.Body["secrets"].([]any)) != 2 || l.Body["next"] == nil || l.Body["previous"] != nil {
			t.Fatalf("page 1: %s", l.Raw)
		}
		if l = km(userA, "GET", "/v1/secrets?limit=2&offset=2", nil); len(l.Body["secrets"].([]any)) != 1 || l.Body["next"] != nil || l.Body["previous"] == nil {
			t.Fatalf("page 2: %s", l.Raw)
		}
		if l = km(userA, "GET", "/v1/secrets?name=bin", nil); l.Body["total"] != float64(1) {
			t.Fatalf("by name: %s", l.Raw)
		}
		// Another project sees nothing of it until an ACL names its user.
		barbicanFault(km(userB, "GET", path, nil), 403, "Secret retrieval attempt not allowed")
		barbicanFault(km(userB, "GET", path+"/payload", nil), 403, "Secret payload retrieval attempt not allowed")
		if l = km(userB, "GET", "/v1/secrets", nil); l.Body["total"] != float64(0) {
			t.Fatalf("B's list: %s", l.Raw)
		}
		if a := km(userA, "GET", path+"/acl", nil); a.Status != 200 || a.Body["read"].(map[string]any)["project-access"] != true {
			t.Fatalf("default ACL: %d %s", a.Status, a.Raw)
		}
		barbicanFault(km(userB, "PUT", path+"/acl", map[string]any{"read": map[string]any{"users": []any{"user-" + projB}}}), 403, "")
		if a := km(userA, "PUT", path+"/acl", map[string]any{"read": map[string]any{"users": []any{"user-" + projB}}}); a.Status != 200 || a.Body["acl_ref"] != ref+"/acl" {
			t.Fatalf("set ACL: %d %s", a.Status, a.Raw)
		}
		if p := km(userB, "GET", path+"/payload", nil); string(p.Raw) != "the-secret-text" {
			t.Fatalf("B reads through the ACL: %d %s", p.Status, p.Raw)
		}
		barbicanFault(km(userB, "DELETE", path, nil), 403, "Secret deletion attempt not allowed")
		barbicanFault(km(userB, "GET", path+"/acl", nil), 403, "SecretACL(s) retrieval attempt not allowed")
		// Project access off: another user of A's project reads no more.
		km(userA, "PATCH", path+"/acl", map[string]any{"read": map[string]any{"project-access": false}})
		barbicanFault(on(kmSrv, userA, "GET", path+"/payload", nil, "X-User-Id", "other-user"), 403, "")
		if l := on(kmSrv, userA, "GET", "/v1/secrets?name=s1", nil, "X-User-Id", "other-user"); l.Body["total"] != float64(1) {
			t.Fatalf("a project's secrets all listed to its members: %s", l.Raw)
		}
		if p := km(userA, "GET", path+"/payload", nil); p.Status != 200 {
			t.Fatalf("its creator still reads: %d %s", p.Status, p.Raw)
		}
		if d := km(userA, "DELETE", path+"/acl", nil); d.Status != 200 || string(d.Raw) != "null" {
			t.Fatalf("ACL delete: %d %s", d.Status, d.Raw)
		}
		barbicanFault(km(userB, "GET", path+"/payload", nil), 403, "")

		// Certificates: a CA, a server certificate, stored as PKCS12 (a
		// secret) and as a certificate container.
		ca := testutil.NewCA(t, "test-ca")
		srv := ca.Issue(t, "www.example.com", false, "www.example.com")
		store := func(who as, payload []byte) string {
			t.Helper()
			r := km(who, "POST", "/v1/secrets", map[string]any{"payload": base64.StdEncoding.EncodeToString(payload),
				"payload_content_type": "application/octet-stream", "payload_content_encoding": "base64"})
			if r.Status != 201 {
				t.Fatalf("store: %d %s", r.Status, r.Raw)
			}
			return r.Body["secret_ref"].(string)
		}
		p12 := store(userA, srv.PKCS12(t))
		certRef, keyRef, caRef := store(userA, srv.CertPEM), store(userA, srv.KeyPEM), store(userA, ca.PEM)
		barbicanFault(km(userA, "POST", "/v1/containers", map[string]any{"type": "certificate", "secret_refs": []any{
			map[string]any{"name": "private_key", "secret_ref": keyRef}}}), 400, "The minimum required reference name is 'certificate'")
		barbicanFault(km(userA, "POST", "/v1/containers", map[string]any{"type": "certificate", "secret_refs": []any{
			map[string]any{"name": "certificate", "secret_ref": certRef}, map[string]any{"name": "bogus", "secret_ref": keyRef}}}), 400, "reference names are allowed for Certificate type")
		barbicanFault(km(userB, "POST", "/v1/containers", map[string]any{"type": "certificate", "secret_refs": []any{
			map[string]any{"name": "certificate", "secret_ref": certRef}}}), 404, "Secret provided for 'certificate' doesn't exist.")
		barbicanFault(km(userA, "POST", "/v1/containers", map[string]any{"type": "certificate", "secret_refs": []any{
			map[string]any{"name": "certificate", "secret_ref": "http://elsewhere.example.com/v1/secrets/" + refID(certRef)}}}), 400, "not supported")
		r = km(userA, "POST", "/v1/containers", map[string]any{"name": "web", "type": "certificate", "secret_refs": []any{
			map[string]any{"name": "certificate", "secret_ref": certRef}, map[string]any{"name": "private_key", "secret_ref": keyRef}}})
		container, _ := r.Body["container_ref"].(string)
		if r.Status != 201 || !strings.Contains(container, "/v1/containers/") {
			t.Fatalf("container: %d %s", r.Status, r.Raw)
		}
		c := km(userA, "GET", strings.TrimPrefix(container, kmSrv.URL), nil)
		if c.Body["type"] != "certificate" || len(c.Body["secret_refs"].([]any)) != 2 || c.Body["container_ref"] != container {
			t.Fatalf("container shown: %s", c.Raw)
		}

		// Listeners naming them, checked as Octavia checks.
		nw := e.network(userA, nil)["id"].(string)
		sn := e.subnet(userA, map[string]any{"network_id": nw, "ip_version": 4, "cidr": "10.91.0.0/24"})
		lb := func(who as, method, path string, body any) resp {
			t.Helper()
			return on(lbSrv, who, method, path, body)
		}
		lbID := e.must(201, lb(userA, "POST", "/v2/lbaas/loadbalancers", map[string]any{"loadbalancer": map[string]any{
			"vip_subnet_id": sn["id"], "provider": "noop_driver"}}), "loadbalancer")["id"]
		lbB := e.must(201, lb(userB, "POST", "/v2/lbaas/loadbalancers", map[string]any{"loadbalancer": map[string]any{
			"vip_subnet_id": e.subnet(userB, map[string]any{"network_id": e.network(userB, nil)["id"], "ip_version": 4, "cidr": "10.92.0.0/24"})["id"],
			"provider":      "noop_driver"}}), "loadbalancer")["id"]
		listener := func(who as, lbID any, extra map[string]any) resp {
			t.Helper()
			body := map[string]any{"loadbalancer_id": lbID, "protocol": "TERMINATED_HTTPS", "protocol_port": 443}
			for k, v := range extra {
				body[k] = v
			}
			return lb(who, "POST", "/v2/lbaas/listeners", map[string]any{"listener": body})
		}
		fault := func(r resp, contains string) {
			t.Helper()
			if s, _ := r.Body["faultstring"].(string); r.Status != 400 || !strings.Contains(s, contains) {
				t.Fatalf("status %d, want 400 with %q: %s", r.Status, contains, r.Raw)
			}
		}
		waitActive := func(who as, id any) {
			t.Helper()
			testutil.Eventually(t, 5*time.Second, "load balancer ACTIVE", func() (bool, string) {
				st := lb(who, "GET", "/v2/lbaas/loadbalancers/"+id.(string), nil).Body["loadbalancer"].(map[string]any)["provisioning_status"]
				return st == "ACTIVE", fmt.Sprint(st)
			})
		}
		waitActive(userA, lbID)
		fault(listener(userA, lbID, nil), "An SNI or default certificate container reference must be provided for TERMINATED_HTTPS")
		fault(listener(userA, lbID, map[string]any{"protocol": "HTTP", "default_tls_container_ref": p12}), "not allowed on HTTP protocol listeners")
		fault(listener(userA, lbID, map[string]any{"default_tls_container_ref": p12, "client_authentication": "MANDATORY"}), "requires a client CA container reference")
		fault(listener(userA, lbID, map[string]any{"default_tls_container_ref": kmSrv.URL + "/v1/secrets/9d6ad31f-0000-4000-8000-000000000000"}), "Could not retrieve certificate")
		fault(listener(userA, lbID, map[string]any{"default_tls_container_ref": certRef}), "PKCS12 bundle is unreadable")
		fault(listener(userA, lbID, map[string]any{"protocol": "HTTP", "insert_headers": map[string]any{"X-SSL-Client-CN": "true"}}), "X-SSL-Client-CN")
		fault(listener(userA, lbID, map[string]any{"protocol": "HTTP", "insert_headers": map[string]any{"X-Nonesuch": "true"}}), "insert_headers")
		waitActive(userB, lbB)
		fault(listener(userB, lbB, map[string]any{"default_tls_container_ref": p12}), "Could not retrieve certificate") // A's, not B's
		l1 := e.must(201, listener(userA, lbID, map[string]any{"default_tls_container_ref": p12, "sni_container_refs": []any{container},
			"client_ca_tls_container_ref": caRef, "client_authentication": "OPTIONAL", "insert_headers": map[string]any{"X-SSL-Client-CN": "true"}}), "listener")
		if l1["default_tls_container_ref"] != p12 || len(l1["sni_container_refs"].([]any)) != 1 {
			t.Fatalf("TLS listener: %v", l1)
		}
		waitActive(userA, lbID)
		fault(lb(userA, "POST", "/v2/lbaas/pools", map[string]any{"pool": map[string]any{"loadbalancer_id": lbID, "protocol": "HTTP",
			"lb_algorithm": "ROUND_ROBIN", "tls_enabled": true, "crl_container_ref": caRef}}), "A CA certificate reference is required")
		e.must(201, lb(userA, "POST", "/v2/lbaas/pools", map[string]any{"pool": map[string]any{"loadbalancer_id": lbID, "protocol": "HTTP",
			"lb_algorithm": "ROUND_ROBIN", "tls_enabled": true, "ca_tls_container_ref": caRef, "tls_container_ref": p12}}), "pool")
		// A secret a container names may go: it leaves the container.
		if d := km(userA, "DELETE", strings.TrimPrefix(keyRef, kmSrv.URL), nil); d.Status != 204 {
			t.Fatalf("delete a contained secret: %d %s", d.Status, d.Raw)
		}
		if c := km(userA, "GET", strings.TrimPrefix(container, kmSrv.URL), nil); len(c.Body["secret_refs"].([]any)) != 1 {
			t.Fatalf("container after its secret's delete: %s", c.Raw)
		}
	})
}

func refID(ref string) string { return ref[strings.LastIndex(ref, "/")+1:] }
