package api

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"neutrino/internal/hostapi"
	"neutrino/internal/services"
)

func TestVersionsAndExtensions(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		r := e.must(200, e.do(userA, "GET", "/", nil), "")
		if v := r["versions"].([]any)[0].(map[string]any); v["id"] != "v2.0" || v["status"] != "CURRENT" {
			t.Fatalf("versions: %v", r)
		}
		e.must(200, e.do(userA, "GET", "/v2.0/", nil), "")
		e.fault(e.do(userA, "GET", "/v2.0/nothing", nil), 404, "HTTPNotFound")
		// Exactly the committed list: an extension dropped from what the
		// services register fails here, not only in Tempest.
		var got []string
		for _, x := range e.list(userA, "/v2.0/extensions", "extensions") {
			got = append(got, x.(map[string]any)["alias"].(string))
		}
		sort.Strings(got)
		if want := committedExtensions(t); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("extensions listed:\n%v\nwant (test/tempest/extensions.txt):\n%v", got, want)
		}
		one := e.must(200, e.do(userA, "GET", "/v2.0/extensions/security-group", nil), "extension")
		if one["alias"] != "security-group" {
			t.Fatalf("extension: %v", one)
		}
		e.fault(e.do(userA, "GET", "/v2.0/extensions/fwaas_v2", nil), 404, "HTTPNotFound") // not implemented
	})
}

// committedExtensions reads test/tempest/extensions.txt, sorted.
func committedExtensions(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../../test/tempest/extensions.txt")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(raw), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out
}

func TestNetworkLifecycleAndShape(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		n := e.network(userA, map[string]any{"name": "n1"})
		for _, k := range []string{"id", "name", "tenant_id", "project_id", "admin_state_up", "mtu", "status", "subnets",
			"shared", "router:external", "port_security_enabled", "availability_zone_hints", "description", "tags",
			"created_at", "updated_at", "revision_number", "l2_adjacency"} {
			if _, ok := n[k]; !ok {
				t.Errorf("network lacks %q: %v", k, n)
			}
		}
		if _, ok := n["provider:network_type"]; ok {
			t.Errorf("non-admin sees provider attributes: %v", n)
		}
		if n["mtu"] != 1450.0 || n["tenant_id"] != projA || n["revision_number"] != 1.0 {
			t.Errorf("network defaults: %v", n)
		}
		id := n["id"].(string)
		asAdmin := e.must(200, e.do(admin, "GET", "/v2.0/networks/"+id, nil), "network")
		if asAdmin["provider:network_type"] != "vxlan" || asAdmin["provider:segmentation_id"] == nil {
			t.Errorf("admin view: %v", asAdmin)
		}
		// Other projects cannot see it.
		e.fault(e.do(userB, "GET", "/v2.0/networks/"+id, nil), 404, "NetworkNotFound")
		// Update bumps the revision; If-Match guards it.
		u := e.must(200, e.do(userA, "PUT", "/v2.0/networks/"+id, map[string]any{"network": map[string]any{"name": "n2"}}), "network")
		if u["name"] != "n2" || u["revision_number"] != 2.0 {
			t.Errorf("update: %v", u)
		}
		e.fault(e.do(userA, "PUT", "/v2.0/networks/"+id, map[string]any{"network": map[string]any{"name": "x"}}, "If-Match", "revision_number=1"), 412, "RevisionNumberConstraintFailed")
		e.must(200, e.do(userA, "PUT", "/v2.0/networks/"+id, map[string]any{"network": map[string]any{"name": "x"}}, "If-Match", "revision_number=2"), "network")
		// Bad input: 4xx and nothing changes.
		e.fault(e.do(userA, "PUT", "/v2.0/networks/"+id, map[string]any{"network": map[string]any{"id": "y"}}), 400, "HTTPBadRequest")
		e.fault(e.do(userA, "PUT", "/v2.0/networks/"+id, map[string]any{"network": map[string]any{"admin_state_up": "maybe"}}), 400, "InvalidInput")
		e.fault(e.do(userA, "POST", "/v2.0/networks", map[string]any{"network": map[string]any{"shared": true}}), 403, "PolicyNotAuthorized")
		e.fault(e.do(userA, "POST", "/v2.0/networks", map[string]any{"network": map[string]any{"bogus": 1}}), 400, "HTTPBadRequest")
		e.fault(e.do(userA, "POST", "/v2.0/networks", `{"network": `), 400, "HTTPBadRequest")
		if got := e.must(200, e.do(userA, "GET", "/v2.0/networks/"+id, nil), "network"); got["name"] != "x" {
			t.Errorf("after bad updates: %v", got)
		}
		e.must(204, e.do(userA, "DELETE", "/v2.0/networks/"+id, nil), "")
		e.fault(e.do(userA, "DELETE", "/v2.0/networks/"+id, nil), 404, "NetworkNotFound")
	})
}

func TestProviderNetworks(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		v := e.network(admin, map[string]any{"provider:network_type": "vlan", "provider:physical_network": "physnet1", "provider:segmentation_id": 123})
		if v["mtu"] != 1500.0 || v["provider:segmentation_id"] != 123.0 {
			t.Fatalf("vlan: %v", v)
		}
		e.fault(e.do(admin, "POST", "/v2.0/networks", map[string]any{"network": map[string]any{"provider:network_type": "vlan", "provider:physical_network": "physnet1", "provider:segmentation_id": 123}}), 409, "VlanIdInUse")
		e.fault(e.do(admin, "POST", "/v2.0/networks", map[string]any{"network": map[string]any{"provider:network_type": "vlan", "provider:physical_network": "nope", "provider:segmentation_id": 5}}), 400, "InvalidInput")
		f := e.network(admin, map[string]any{"provider:network_type": "flat", "provider:physical_network": "physnet3"})
		if f["provider:segmentation_id"] != nil {
			t.Fatalf("flat: %v", f)
		}
		e.fault(e.do(admin, "POST", "/v2.0/networks", map[string]any{"network": map[string]any{"provider:network_type": "flat", "provider:physical_network": "physnet3"}}), 409, "FlatNetworkInUse")
		g := e.network(admin, map[string]any{"provider:network_type": "gre"})
		if g["mtu"] != 1458.0 {
			t.Fatalf("gre mtu: %v", g)
		}
		m := e.network(admin, map[string]any{"segments": []any{
			map[string]any{"provider:network_type": "vxlan"},
			map[string]any{"provider:network_type": "vlan", "provider:physical_network": "physnet1"}}})
		if segs, _ := m["segments"].([]any); len(segs) != 2 {
			t.Fatalf("multi-provider: %v", m)
		}
		// The segment is free again after delete.
		e.must(204, e.do(admin, "DELETE", "/v2.0/networks/"+v["id"].(string), nil), "")
		v = e.network(admin, map[string]any{"provider:network_type": "vlan", "provider:physical_network": "physnet1", "provider:segmentation_id": 123})
		// Deleting a network frees every segment it holds (they are
		// released by key), whatever its type, and no other network's.
		tenant := e.network(userA, nil)
		before := e.rows("segment_allocations")
		for _, n := range []map[string]any{v, f, g, m} {
			e.must(204, e.do(admin, "DELETE", "/v2.0/networks/"+n["id"].(string), nil), "")
		}
		if after := e.rows("segment_allocations"); after != before-5 || after != 1 {
			t.Fatalf("segment allocations: %d before deleting 5 segments, %d after (the tenant network's should remain)", before, after)
		}
		e.must(204, e.do(userA, "DELETE", "/v2.0/networks/"+tenant["id"].(string), nil), "")
		if n := e.rows("segment_allocations"); n != 0 {
			t.Fatalf("%d segment allocations left", n)
		}
	})
}

func TestSubnetsIPv4AndIPv6(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		n := e.network(userA, nil)
		nid := n["id"].(string)
		s := e.subnet(userA, map[string]any{"network_id": nid, "ip_version": 4, "cidr": "10.10.0.0/24"})
		if s["gateway_ip"] != "10.10.0.1" || fmt.Sprint(s["allocation_pools"]) != "[map[end:10.10.0.254 start:10.10.0.2]]" || s["revision_number"] != 0.0 {
			t.Fatalf("v4 defaults: %v", s)
		}
		nogw := e.subnet(userA, map[string]any{"network_id": nid, "ip_version": 4, "cidr": "10.11.0.0/24", "gateway_ip": nil})
		if nogw["gateway_ip"] != nil || fmt.Sprint(nogw["allocation_pools"]) != "[map[end:10.11.0.254 start:10.11.0.1]]" {
			t.Fatalf("no gateway: %v", nogw)
		}
		v6 := e.subnet(userA, map[string]any{"network_id": nid, "ip_version": 6, "cidr": "2001:db8:1::/64", "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"})
		if v6["gateway_ip"] != "2001:db8:1::" {
			t.Fatalf("v6 gateway: %v", v6)
		}
		got := e.must(200, e.do(userA, "GET", "/v2.0/networks/"+nid, nil), "network")
		if len(got["subnets"].([]any)) != 3 {
			t.Fatalf("network subnets: %v", got)
		}
		bad := []struct {
			body   map[string]any
			status int
			typ    string
		}{
			{map[string]any{"ip_version": 4, "cidr": "10.10.0.128/25"}, 400, "InvalidInput"},
			{map[string]any{"ip_version": 6, "cidr": "2001:db8:5::/64", "ipv6_ra_mode": "slaac", "ipv6_address_mode": "dhcpv6-stateful"}, 400, "InvalidInput"},
			{map[string]any{"ip_version": 6, "cidr": "2001:db8:6::/80", "ipv6_address_mode": "slaac"}, 400, "InvalidInput"},
			{map[string]any{"ip_version": 4, "cidr": "10.14.0.0/24", "ipv6_address_mode": "slaac"}, 400, "InvalidInput"},
			{map[string]any{"ip_version": 6, "cidr": "10.18.0.0/24"}, 400, "InvalidInput"},
			{map[string]any{"ip_version": 4, "cidr": "10.300.0.0/24"}, 400, "InvalidInput"},
			{map[string]any{"ip_version": 4}, 400, "BadRequest"},
			{map[string]any{"ip_version": 4, "cidr": "10.21.0.0/24", "allocation_pools": []any{map[string]any{"start": "10.22.0.10", "end": "10.22.0.20"}}}, 400, "OutOfBoundsAllocationPool"},
			{map[string]any{"ip_version": 4, "cidr": "10.21.0.0/24", "allocation_pools": []any{map[string]any{"start": "10.21.0.1", "end": "10.21.0.20"}}}, 409, "GatewayConflictWithAllocationPools"},
			{map[string]any{"ip_version": 4, "cidr": "10.21.0.0/24", "allocation_pools": []any{map[string]any{"start": "10.21.0.10", "end": "10.21.0.20"}, map[string]any{"start": "10.21.0.15", "end": "10.21.0.25"}}}, 409, "OverlappingAllocationPools"},
			{map[string]any{"ip_version": 4, "cidr": "10.21.0.0/24", "dns_nameservers": []any{"1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4", "1.1.1.5", "1.1.1.6"}}, 400, "DNSNameServersExhausted"},
			{map[string]any{"ip_version": 4, "cidr": "10.21.0.0/24", "host_routes": []any{map[string]any{"destination": "1.2.3.0/24", "nexthop": "abc"}}}, 400, "HTTPBadRequest"},
			{map[string]any{"ip_version": 5, "cidr": "10.21.0.0/24"}, 400, "HTTPBadRequest"},
		}
		for _, b := range bad {
			b.body["network_id"] = nid
			e.fault(e.do(userA, "POST", "/v2.0/subnets", map[string]any{"subnet": b.body}), b.status, b.typ)
		}
		if l := e.list(userA, "/v2.0/subnets?network_id="+nid, "subnets"); len(l) != 3 {
			t.Fatalf("failed creates left %d subnets", len(l))
		}
		e.fault(e.do(userA, "POST", "/v2.0/subnets", map[string]any{"subnet": map[string]any{"network_id": "00000000-0000-0000-0000-000000000000", "ip_version": 4, "cidr": "10.30.0.0/24"}}), 404, "NetworkNotFound")
		// Update.
		up := e.must(200, e.do(userA, "PUT", "/v2.0/subnets/"+s["id"].(string), map[string]any{"subnet": map[string]any{
			"allocation_pools": []any{map[string]any{"start": "10.10.0.2", "end": "10.10.0.100"}}, "dns_nameservers": []any{"9.9.9.9"}}}), "subnet")
		if fmt.Sprint(up["allocation_pools"]) != "[map[end:10.10.0.100 start:10.10.0.2]]" || up["revision_number"] != 1.0 {
			t.Fatalf("subnet update: %v", up)
		}
		e.fault(e.do(userA, "PUT", "/v2.0/subnets/"+s["id"].(string), map[string]any{"subnet": map[string]any{"cidr": "10.1.0.0/24"}}), 400, "HTTPBadRequest")
	})
}

func TestPortAddressing(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		nid := e.network(userA, nil)["id"].(string)
		s4 := e.subnet(userA, map[string]any{"network_id": nid, "ip_version": 4, "cidr": "10.10.0.0/24"})
		s6a := e.subnet(userA, map[string]any{"network_id": nid, "ip_version": 6, "cidr": "2001:db8:1::/64", "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"})
		s6b := e.subnet(userA, map[string]any{"network_id": nid, "ip_version": 6, "cidr": "2001:db8:7::/64", "ipv6_address_mode": "dhcpv6-stateless"})
		p := e.must(201, e.do(userA, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": nid, "mac_address": "fa:16:3e:8b:dc:41"}}), "port")
		ips := map[string]string{}
		for _, f := range p["fixed_ips"].([]any) {
			m := f.(map[string]any)
			ips[m["subnet_id"].(string)] = m["ip_address"].(string)
		}
		if ips[s6a["id"].(string)] != "2001:db8:1:0:f816:3eff:fe8b:dc41" || ips[s6b["id"].(string)] != "2001:db8:7:0:f816:3eff:fe8b:dc41" {
			t.Fatalf("EUI-64 addresses: %v", ips)
		}
		if a, err := netip.ParseAddr(ips[s4["id"].(string)]); err != nil || !netip.MustParsePrefix("10.10.0.0/24").Contains(a) {
			t.Fatalf("v4 address: %v", ips)
		}
		if p["status"] != "DOWN" || len(p["security_groups"].([]any)) != 1 || p["binding:vnic_type"] != "normal" {
			t.Fatalf("port defaults: %v", p)
		}
		if _, ok := p["binding:host_id"]; ok {
			t.Fatalf("non-admin sees binding:host_id")
		}
		// A chosen address; the same again conflicts; outside the subnet is invalid.
		fixed := func(ip string) map[string]any {
			return map[string]any{"port": map[string]any{"network_id": nid, "fixed_ips": []any{map[string]any{"subnet_id": s4["id"], "ip_address": ip}}}}
		}
		chosen := "10.10.0.50"
		if ips[s4["id"].(string)] == chosen { // the first port drew it at random
			chosen = "10.10.0.51"
		}
		e.must(201, e.do(userA, "POST", "/v2.0/ports", fixed(chosen)), "port")
		e.fault(e.do(userA, "POST", "/v2.0/ports", fixed(chosen)), 409, "IpAddressAlreadyAllocated")
		e.fault(e.do(userA, "POST", "/v2.0/ports", fixed("10.99.0.5")), 400, "InvalidIpForSubnet")
		e.fault(e.do(userA, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": nid, "fixed_ips": []any{map[string]any{"subnet_id": s6a["id"], "ip_address": "2001:db8:1::55"}}}}), 400, "AllocationOnAutoAddressSubnet")
		e.fault(e.do(userA, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": nid, "mac_address": "fa:16:3e:8b:dc:41"}}), 409, "MacAddressInUse")
		// Filters on fixed_ips.
		if l := e.list(userA, "/v2.0/ports?fixed_ips=ip_address%3D"+chosen, "ports"); len(l) != 1 {
			t.Fatalf("fixed_ips filter: %d", len(l))
		}
		if l := e.list(userA, "/v2.0/ports?fixed_ips=ip_address_substr%3D10.10.0.5", "ports"); len(l) < 1 {
			t.Fatalf("ip_address_substr filter: %d", len(l))
		}
		// Port security rules.
		e.fault(e.do(userA, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": nid, "port_security_enabled": false, "security_groups": []any{p["security_groups"].([]any)[0]}}}), 400, "PortSecurityAndIPRequiredForSecurityGroups")
		ns := e.must(201, e.do(userA, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": nid, "port_security_enabled": false}}), "port")
		if len(ns["security_groups"].([]any)) != 0 {
			t.Fatalf("port without security got groups: %v", ns)
		}
		e.fault(e.do(userA, "PUT", "/v2.0/ports/"+ns["id"].(string), map[string]any{"port": map[string]any{"allowed_address_pairs": []any{map[string]any{"ip_address": "10.1.1.1"}}}}), 409, "AddressPairAndPortSecurityRequired")
		e.fault(e.do(userA, "PUT", "/v2.0/ports/"+p["id"].(string), map[string]any{"port": map[string]any{"port_security_enabled": false}}), 409, "PortSecurityPortHasSecurityGroup")
		// Address pairs default to the port's MAC; extra DHCP options per IP version.
		ap := e.must(200, e.do(userA, "PUT", "/v2.0/ports/"+p["id"].(string), map[string]any{"port": map[string]any{
			"allowed_address_pairs": []any{map[string]any{"ip_address": "10.10.0.200"}},
			"extra_dhcp_opts":       []any{map[string]any{"opt_name": "bootfile-name", "opt_value": "pxelinux.0"}, map[string]any{"opt_name": "dns-server", "opt_value": "2001:db8:1::53", "ip_version": 6}}}}), "port")
		if fmt.Sprint(ap["allowed_address_pairs"]) != "[map[ip_address:10.10.0.200 mac_address:fa:16:3e:8b:dc:41]]" {
			t.Fatalf("pairs: %v", ap["allowed_address_pairs"])
		}
		if fmt.Sprint(ap["extra_dhcp_opts"]) != "[map[ip_version:4 opt_name:bootfile-name opt_value:pxelinux.0] map[ip_version:6 opt_name:dns-server opt_value:2001:db8:1::53]]" {
			t.Fatalf("dhcp opts: %v", ap["extra_dhcp_opts"])
		}
		e.fault(e.do(userA, "PUT", "/v2.0/ports/"+p["id"].(string), map[string]any{"port": map[string]any{"extra_dhcp_opts": []any{map[string]any{"opt_name": "a", "opt_value": "b", "ip_version": 5}}}}), 400, "InvalidInput")
		// Naming only the subnet on update keeps the port's address there.
		before := ips[s4["id"].(string)]
		kept := e.must(200, e.do(userA, "PUT", "/v2.0/ports/"+p["id"].(string), map[string]any{"port": map[string]any{
			"fixed_ips": []any{map[string]any{"subnet_id": s4["id"]}}}}), "port")
		if !strings.Contains(fmt.Sprint(kept["fixed_ips"]), before) {
			t.Fatalf("port renumbered from %s: %v", before, kept["fixed_ips"])
		}
		// A SLAAC subnet added later gives existing ports an address.
		s6c := e.subnet(userA, map[string]any{"network_id": nid, "ip_version": 6, "cidr": "2001:db8:9::/64", "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"})
		again := e.must(200, e.do(userA, "GET", "/v2.0/ports/"+p["id"].(string), nil), "port")
		if !strings.Contains(fmt.Sprint(again["fixed_ips"]), s6c["id"].(string)) {
			t.Fatalf("new SLAAC subnet not applied: %v", again["fixed_ips"])
		}
		// In use: subnet and network deletes refuse.
		e.fault(e.do(userA, "DELETE", "/v2.0/subnets/"+s4["id"].(string), nil), 409, "SubnetInUse")
		e.fault(e.do(userA, "DELETE", "/v2.0/networks/"+nid, nil), 409, "NetworkInUse")
		// A new MAC re-derives the port's SLAAC addresses.
		mp := e.must(201, e.do(userA, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": nid}}), "port")
		nm := e.must(200, e.do(admin, "PUT", "/v2.0/ports/"+mp["id"].(string), map[string]any{"port": map[string]any{"mac_address": "fa:16:3e:00:00:42"}}), "port")
		if !strings.Contains(fmt.Sprint(nm["fixed_ips"]), "2001:db8:1:0:f816:3eff:fe00:42") {
			t.Fatalf("SLAAC address after a MAC change: %v", nm["fixed_ips"])
		}
		// Binding is admin-only and binds with the linux driver, once a live
		// host agent there can wire the network's VXLAN segment: until then
		// it fails, and the agent's first report binds it.
		b := e.must(200, e.do(admin, "PUT", "/v2.0/ports/"+p["id"].(string), map[string]any{"port": map[string]any{"binding:host_id": "compute-1"}}), "port")
		if b["binding:vif_type"] != "binding_failed" {
			t.Fatalf("binding with no agent: %v", b)
		}
		e.must(200, e.do(admin, "POST", "/neutrino/v1/agents/report", map[string]any{"agent": map[string]any{"agent_type": "Neutrino host agent",
			"binary": "neutrino-agent", "host": "compute-1", "start_flag": true,
			"configurations": map[string]any{"tunnel_types": []any{"vxlan"}, "interface_mappings": map[string]any{}}}}), "agent")
		b = e.must(200, e.do(admin, "GET", "/v2.0/ports/"+p["id"].(string), nil), "port")
		if b["binding:vif_type"] != "tap" || b["binding:vif_details"].(map[string]any)["bridge_name"] != "brq"+nid[:11] {
			t.Fatalf("binding after the agent came: %v", b)
		}
		pf := e.must(201, e.do(admin, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": nid, "binding:host_id": "compute-9"}}), "port")
		if pf["binding:vif_type"] != "binding_failed" {
			t.Fatalf("bound to a host with no agent: %v", pf)
		}
		e.fault(e.do(userA, "PUT", "/v2.0/ports/"+p["id"].(string), map[string]any{"port": map[string]any{"binding:host_id": "x"}}), 403, "PolicyNotAuthorized")
		// Lists reuse encodings per object version and visibility: each
		// caller still sees only its own view, and updates show at once.
		for i := 0; i < 2; i++ {
			for _, who := range []as{admin, userA} {
				for _, x := range e.list(who, "/v2.0/ports?network_id="+nid, "ports") {
					_, has := x.(map[string]any)["binding:host_id"]
					if has != who.admin {
						t.Fatalf("list as admin=%v shows binding:host_id=%v", who.admin, has)
					}
				}
			}
		}
		e.must(200, e.do(userA, "PUT", "/v2.0/ports/"+p["id"].(string), map[string]any{"port": map[string]any{"name": "renamed"}}), "port")
		if l := e.list(userA, "/v2.0/ports?name=renamed", "ports"); len(l) != 1 || l[0].(map[string]any)["name"] != "renamed" {
			t.Fatalf("list after rename: %v", l)
		}
	})
}

func TestExhaustionAndNoSubnets(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		nid := e.network(userA, nil)["id"].(string)
		e.subnet(userA, map[string]any{"network_id": nid, "ip_version": 4, "cidr": "10.0.0.0/30"})
		e.must(201, e.do(userA, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": nid}}), "port")
		e.fault(e.do(userA, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": nid}}), 409, "IpAddressGenerationFailure")
		empty := e.network(userA, nil)["id"].(string)
		p := e.must(201, e.do(userA, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": empty}}), "port")
		if len(p["fixed_ips"].([]any)) != 0 {
			t.Fatalf("port on a network without subnets: %v", p)
		}
	})
}

// TestParallelPortCreates: concurrent creates never share an address, and
// when the pool runs out the surplus fail cleanly.
func TestParallelPortCreates(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		run := func(cidr string, n int) (ok, conflicts int, addrs map[string]bool) {
			nid := e.network(userA, nil)["id"].(string)
			e.subnet(userA, map[string]any{"network_id": nid, "ip_version": 4, "cidr": cidr})
			var mu sync.Mutex
			var wg sync.WaitGroup
			addrs = map[string]bool{}
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := e.do(userA, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": nid}})
					mu.Lock()
					defer mu.Unlock()
					switch r.Status {
					case 201:
						ok++
						ip := r.Body["port"].(map[string]any)["fixed_ips"].([]any)[0].(map[string]any)["ip_address"].(string)
						if addrs[ip] {
							t.Errorf("address %s handed out twice", ip)
						}
						addrs[ip] = true
					case 409:
						conflicts++
					default:
						t.Errorf("unexpected %d: %s", r.Status, r.Raw)
					}
				}()
			}
			wg.Wait()
			if got := len(e.list(userA, "/v2.0/ports?network_id="+nid, "ports")); got != ok {
				t.Errorf("%d ports stored after %d successful creates", got, ok)
			}
			return ok, conflicts, addrs
		}
		if ok, _, addrs := run("10.1.0.0/25", 100); ok != 100 || len(addrs) != 100 {
			t.Fatalf("/25: %d created, %d distinct", ok, len(addrs))
		}
		// A /28 has 13 usable addresses (.2-.14).
		if ok, conflicts, _ := run("10.2.0.0/28", 40); ok != 13 || conflicts != 27 {
			t.Fatalf("/28: %d created, %d conflicts", ok, conflicts)
		}
	})
}

func TestParallelNetworksGetDistinctVNIs(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		seen := map[float64]bool{}
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n := e.must(201, e.do(admin, "POST", "/v2.0/networks", map[string]any{"network": map[string]any{}}), "network")
				mu.Lock()
				defer mu.Unlock()
				vni := n["provider:segmentation_id"].(float64)
				if seen[vni] {
					t.Errorf("VNI %v allocated twice", vni)
				}
				seen[vni] = true
			}()
		}
		wg.Wait()
	})
}

func TestBulkCreateIsAtomic(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		r := e.must(201, e.do(userA, "POST", "/v2.0/networks", map[string]any{"networks": []any{map[string]any{"name": "b1"}, map[string]any{"name": "b2"}}}), "")
		if len(r["networks"].([]any)) != 2 {
			t.Fatalf("bulk: %v", r)
		}
		nid := r["networks"].([]any)[0].(map[string]any)["id"].(string)
		e.subnet(userA, map[string]any{"network_id": nid, "ip_version": 4, "cidr": "10.5.0.0/24"})
		bad := e.do(userA, "POST", "/v2.0/ports", map[string]any{"ports": []any{
			map[string]any{"network_id": nid, "fixed_ips": []any{map[string]any{"ip_address": "10.5.0.9"}}},
			map[string]any{"network_id": nid, "fixed_ips": []any{map[string]any{"ip_address": "10.5.0.9"}}}}})
		e.fault(bad, 409, "IpAddressAlreadyAllocated")
		if l := e.list(userA, "/v2.0/ports?network_id="+nid, "ports"); len(l) != 0 {
			t.Fatalf("failed bulk create left %d ports", len(l))
		}
		// The address is free: the rollback released it.
		e.must(201, e.do(userA, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": nid, "fixed_ips": []any{map[string]any{"ip_address": "10.5.0.9"}}}}), "port")
	})
}

func TestListQueries(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		for _, name := range []string{"c", "a", "d", "b", ""} {
			e.network(userA, map[string]any{"name": name, "admin_state_up": name != "d"})
		}
		names := func(l []any) string {
			var out []string
			for _, x := range l {
				out = append(out, fmt.Sprint(x.(map[string]any)["name"]))
			}
			return strings.Join(out, ",")
		}
		if got := names(e.list(userA, "/v2.0/networks?sort_key=name&sort_dir=asc", "networks")); got != ",a,b,c,d" {
			t.Fatalf("sorted: %q", got)
		}
		var ids []string
		for _, n := range e.list(userA, "/v2.0/networks", "networks") {
			ids = append(ids, n.(map[string]any)["id"].(string))
		}
		if !sort.StringsAreSorted(ids) || len(ids) != 5 {
			t.Fatalf("default order is not by id: %v", ids)
		}
		if got := names(e.list(userA, "/v2.0/networks?name=a&name=c&sort_key=name&sort_dir=desc", "networks")); got != "c,a" {
			t.Fatalf("OR filter: %q", got)
		}
		if got := names(e.list(userA, "/v2.0/networks?admin_state_up=False", "networks")); got != "d" {
			t.Fatalf("bool filter: %q", got)
		}
		if got := e.list(userA, "/v2.0/networks?name=", "networks"); len(got) != 1 {
			t.Fatalf("empty-string filter: %d", len(got))
		}
		f := e.list(userA, "/v2.0/networks?fields=id&fields=name", "networks")[0].(map[string]any)
		if len(f) != 2 {
			t.Fatalf("fields: %v", f)
		}
		e.fault(e.do(userA, "GET", "/v2.0/networks?foo=bar", nil), 400, "HTTPBadRequest")
		e.fault(e.do(userA, "GET", "/v2.0/networks?sort_key=name", nil), 400, "HTTPBadRequest")
		e.fault(e.do(userA, "GET", "/v2.0/networks?limit=x", nil), 400, "BadRequest")
		// Pagination: follow next links to the end.
		var all []string
		path := "/v2.0/networks?sort_key=name&sort_dir=asc&limit=2"
		for i := 0; i < 10 && path != ""; i++ {
			r := e.must(200, e.do(userA, "GET", path, nil), "")
			for _, n := range r["networks"].([]any) {
				all = append(all, fmt.Sprint(n.(map[string]any)["name"]))
			}
			path = ""
			for _, l := range asList(r["networks_links"]) {
				if l.(map[string]any)["rel"] == "next" {
					path = strings.TrimPrefix(l.(map[string]any)["href"].(string), e.srv.URL)
				}
			}
		}
		if strings.Join(all, ",") != ",a,b,c,d" {
			t.Fatalf("pages: %v", all)
		}
		// Tags.
		nid := e.list(userA, "/v2.0/networks?name=a", "networks")[0].(map[string]any)["id"].(string)
		e.must(201, e.do(userA, "PUT", "/v2.0/networks/"+nid+"/tags/red", nil), "")
		e.must(200, e.do(userA, "PUT", "/v2.0/networks/"+nid+"/tags", map[string]any{"tags": []any{"red", "blue"}}), "")
		if got := names(e.list(userA, "/v2.0/networks?tags=red,blue", "networks")); got != "a" {
			t.Fatalf("tags filter: %q", got)
		}
		if got := e.list(userA, "/v2.0/networks?not-tags-any=red", "networks"); len(got) != 4 {
			t.Fatalf("not-tags-any: %d", len(got))
		}
		e.must(204, e.do(userA, "GET", "/v2.0/networks/"+nid+"/tags/blue", nil), "")
		e.must(204, e.do(userA, "DELETE", "/v2.0/networks/"+nid+"/tags/blue", nil), "")
		e.fault(e.do(userA, "GET", "/v2.0/networks/"+nid+"/tags/blue", nil), 404, "TagNotFound")
		e.must(204, e.do(userA, "DELETE", "/v2.0/networks/"+nid+"/tags", nil), "")
	})
}

func asList(v any) []any { l, _ := v.([]any); return l }

func TestSecurityGroups(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		groups := e.list(userA, "/v2.0/security-groups", "security_groups")
		if len(groups) != 1 || groups[0].(map[string]any)["name"] != "default" || len(groups[0].(map[string]any)["security_group_rules"].([]any)) != 4 {
			t.Fatalf("default group: %v", groups)
		}
		sg := e.must(201, e.do(userA, "POST", "/v2.0/security-groups", map[string]any{"security_group": map[string]any{"name": "web"}}), "security_group")
		if len(sg["security_group_rules"].([]any)) != 2 {
			t.Fatalf("new group rules: %v", sg)
		}
		e.fault(e.do(userA, "POST", "/v2.0/security-groups", map[string]any{"security_group": map[string]any{"name": "default"}}), 409, "SecurityGroupDefaultAlreadyExists")
		rule := func(extra map[string]any) resp {
			body := map[string]any{"security_group_id": sg["id"], "direction": "ingress"}
			for k, v := range extra {
				body[k] = v
			}
			return e.do(userA, "POST", "/v2.0/security-group-rules", map[string]any{"security_group_rule": body})
		}
		r := e.must(201, rule(map[string]any{"protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "10.1.2.3/8"}), "security_group_rule")
		if r["normalized_cidr"] != "10.0.0.0/8" || r["remote_ip_prefix"] != "10.1.2.3/8" {
			t.Fatalf("rule: %v", r)
		}
		e.fault(rule(map[string]any{"protocol": "6", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "10.0.0.0/8"}), 409, "SecurityGroupRuleExists")
		e.must(201, rule(map[string]any{"protocol": "17", "port_range_min": 53, "port_range_max": 53}), "security_group_rule")
		e.fault(rule(map[string]any{"protocol": "udp", "port_range_min": 53, "port_range_max": 53}), 409, "SecurityGroupRuleExists")
		v6 := e.must(201, rule(map[string]any{"protocol": "icmp", "ethertype": "IPv6"}), "security_group_rule")
		if v6["protocol"] != "ipv6-icmp" {
			t.Fatalf("icmp on IPv6: %v", v6)
		}
		cases := []struct {
			extra  map[string]any
			status int
			typ    string
		}{
			{map[string]any{"protocol": "tcp", "port_range_min": 30, "port_range_max": 20}, 400, "SecurityGroupInvalidPortRange"},
			{map[string]any{"protocol": "tcp", "port_range_min": 70000, "port_range_max": 70000}, 400, "SecurityGroupInvalidPortValue"},
			{map[string]any{"port_range_min": 22, "port_range_max": 22}, 400, "SecurityGroupProtocolRequiredWithPorts"},
			{map[string]any{"protocol": "icmp", "port_range_min": 256}, 400, "SecurityGroupInvalidIcmpValue"},
			{map[string]any{"protocol": "icmp", "port_range_max": 0}, 400, "SecurityGroupMissingIcmpType"},
			{map[string]any{"protocol": "foo"}, 400, "SecurityGroupRuleInvalidProtocol"},
			{map[string]any{"ethertype": "IPv6", "remote_ip_prefix": "10.0.0.0/8"}, 400, "SecurityGroupRuleParameterConflict"},
			{map[string]any{"remote_ip_prefix": "10.0.0.0/8", "remote_group_id": sg["id"]}, 400, "SecurityGroupMultipleRemoteEntites"},
			{map[string]any{"remote_group_id": "00000000-0000-0000-0000-000000000000"}, 404, "SecurityGroupNotFound"},
			{map[string]any{"direction": "sideways"}, 400, "HTTPBadRequest"},
		}
		for _, c := range cases {
			e.fault(rule(c.extra), c.status, c.typ)
		}
		got := e.must(200, e.do(userA, "GET", "/v2.0/security-groups/"+sg["id"].(string), nil), "security_group")
		if len(got["security_group_rules"].([]any)) != 5 {
			t.Fatalf("rules after creates: %d", len(got["security_group_rules"].([]any)))
		}
		// Other projects cannot see or use it.
		e.fault(e.do(userB, "GET", "/v2.0/security-groups/"+sg["id"].(string), nil), 404, "SecurityGroupNotFound")
		// In use by a port: delete refused; the default group cannot be removed by its owner.
		nid := e.network(userA, nil)["id"].(string)
		p := e.must(201, e.do(userA, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": nid, "security_groups": []any{sg["id"]}}}), "port")
		e.fault(e.do(userA, "DELETE", "/v2.0/security-groups/"+sg["id"].(string), nil), 409, "SecurityGroupInUse")
		e.must(204, e.do(userA, "DELETE", "/v2.0/ports/"+p["id"].(string), nil), "")
		e.must(204, e.do(userA, "DELETE", "/v2.0/security-groups/"+sg["id"].(string), nil), "")
		if l := e.list(userA, "/v2.0/security-group-rules?security_group_id="+sg["id"].(string), "security_group_rules"); len(l) != 0 {
			t.Fatalf("rules left after group delete: %d", len(l))
		}
		def := groups[0].(map[string]any)["id"].(string)
		e.fault(e.do(userA, "DELETE", "/v2.0/security-groups/"+def, nil), 409, "SecurityGroupCannotRemoveDefault")
	})
}

func TestSharingAndIsolation(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		shared := e.network(admin, map[string]any{"name": "shared", "shared": true})
		ext := e.network(admin, map[string]any{"name": "ext", "router:external": true})
		private := e.network(admin, map[string]any{"name": "private"})
		e.subnet(admin, map[string]any{"network_id": shared["id"], "ip_version": 4, "cidr": "10.50.0.0/24"})
		e.subnet(admin, map[string]any{"network_id": ext["id"], "ip_version": 4, "cidr": "203.0.113.0/24"})
		mine := e.network(userA, map[string]any{"name": "mine"})
		seen := map[string]bool{}
		for _, n := range e.list(userA, "/v2.0/networks", "networks") {
			seen[n.(map[string]any)["name"].(string)] = true
		}
		if !seen["shared"] || !seen["ext"] || !seen["mine"] || seen["private"] {
			t.Fatalf("visible to A: %v", seen)
		}
		if l := e.list(userB, "/v2.0/networks?name=mine", "networks"); len(l) != 0 {
			t.Fatalf("B sees A's network")
		}
		if l := e.list(userA, "/v2.0/subnets", "subnets"); len(l) != 1 {
			t.Fatalf("A sees %d subnets, want only the shared network's", len(l))
		}
		// A may put ports on the shared network, not subnets.
		e.must(201, e.do(userA, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": shared["id"]}}), "port")
		e.fault(e.do(userA, "POST", "/v2.0/subnets", map[string]any{"subnet": map[string]any{"network_id": shared["id"], "ip_version": 4, "cidr": "10.51.0.0/24"}}), 403, "PolicyNotAuthorized")
		// Un-sharing while A uses it is refused.
		e.fault(e.do(admin, "PUT", "/v2.0/networks/"+shared["id"].(string), map[string]any{"network": map[string]any{"shared": false}}), 409, "InvalidSharedSetting")
		// RBAC: share "private" with B only.
		pol := e.must(201, e.do(admin, "POST", "/v2.0/rbac-policies", map[string]any{"rbac_policy": map[string]any{
			"object_type": "network", "object_id": private["id"], "action": "access_as_shared", "target_tenant": projB}}), "rbac_policy")
		got := e.must(200, e.do(userB, "GET", "/v2.0/networks/"+private["id"].(string), nil), "network")
		if got["shared"] != true {
			t.Fatalf("target project sees shared=%v", got["shared"])
		}
		e.fault(e.do(userA, "GET", "/v2.0/networks/"+private["id"].(string), nil), 404, "NetworkNotFound")
		e.must(201, e.do(userB, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": private["id"]}}), "port")
		e.fault(e.do(admin, "DELETE", "/v2.0/rbac-policies/"+pol["id"].(string), nil), 409, "RbacPolicyInUse")
		// A project may share its own network, not someone else's.
		e.must(201, e.do(userA, "POST", "/v2.0/rbac-policies", map[string]any{"rbac_policy": map[string]any{
			"object_type": "network", "object_id": mine["id"], "action": "access_as_shared", "target_tenant": projB}}), "rbac_policy")
		e.fault(e.do(userA, "POST", "/v2.0/rbac-policies", map[string]any{"rbac_policy": map[string]any{
			"object_type": "network", "object_id": private["id"], "action": "access_as_shared", "target_tenant": projA}}), 404, "RbacPolicyNotFound")
		// The network's owner sees and may remove other projects' ports on it.
		bp := e.must(201, e.do(userB, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": mine["id"]}}), "port")
		if l := e.list(userA, "/v2.0/ports?network_id="+mine["id"].(string), "ports"); len(l) != 1 || l[0].(map[string]any)["id"] != bp["id"] {
			t.Fatalf("network owner's view of ports: %v", l)
		}
		if l := e.list(userA, "/v2.0/ports?device_owner=x", "ports"); len(l) != 0 {
			t.Fatalf("filter on owner's view: %v", l)
		}
		e.must(204, e.do(userA, "DELETE", "/v2.0/ports/"+bp["id"].(string), nil), "")
	})
}

func TestQuotas(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		e.must(200, e.do(admin, "PUT", "/v2.0/quotas/"+projA, map[string]any{"quota": map[string]any{"network": 2}}), "quota")
		e.network(userA, nil)
		e.network(userA, nil)
		e.fault(e.do(userA, "POST", "/v2.0/networks", map[string]any{"network": map[string]any{}}), 409, "OverQuota")
		d := e.must(200, e.do(userA, "GET", "/v2.0/quotas/"+projA+"/details.json", nil), "quota")
		if fmt.Sprint(d["network"]) != "map[limit:2 reserved:0 used:2]" {
			t.Fatalf("details: %v", d["network"])
		}
		e.fault(e.do(userA, "PUT", "/v2.0/quotas/"+projA, map[string]any{"quota": map[string]any{"network": 5}}), 403, "PolicyNotAuthorized")
		e.fault(e.do(userB, "GET", "/v2.0/quotas/"+projA, nil), 403, "PolicyNotAuthorized")
		if l := e.list(admin, "/v2.0/quotas", "quotas"); len(l) != 1 {
			t.Fatalf("quota list: %v", l)
		}
		e.must(204, e.do(admin, "DELETE", "/v2.0/quotas/"+projA, nil), "")
		e.network(userA, nil)
	})
}

func TestSubnetPools(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		pool := e.must(201, e.do(userA, "POST", "/v2.0/subnetpools", map[string]any{"subnetpool": map[string]any{
			"name": "p", "prefixes": []any{"10.200.0.0/16"}, "default_prefixlen": 26, "min_prefixlen": 24, "max_prefixlen": 28}}), "subnetpool")
		nid := e.network(userA, nil)["id"].(string)
		a := e.subnet(userA, map[string]any{"network_id": nid, "ip_version": 4, "subnetpool_id": pool["id"]})
		b := e.subnet(userA, map[string]any{"network_id": nid, "ip_version": 4, "subnetpool_id": pool["id"], "prefixlen": 27})
		if a["cidr"] != "10.200.0.0/26" || b["cidr"] != "10.200.0.64/27" {
			t.Fatalf("pool allocations: %v %v", a["cidr"], b["cidr"])
		}
		e.fault(e.do(userA, "POST", "/v2.0/subnets", map[string]any{"subnet": map[string]any{"network_id": nid, "ip_version": 4, "subnetpool_id": pool["id"], "prefixlen": 30}}), 400, "MaxPrefixSubnetAllocationError")
		e.fault(e.do(userA, "POST", "/v2.0/subnetpools", map[string]any{"subnetpool": map[string]any{"name": "bad", "prefixes": []any{"10.201.0.0/16", "2001:db8::/48"}}}), 400, "PrefixVersionMismatch")
		e.fault(e.do(userA, "DELETE", "/v2.0/subnetpools/"+pool["id"].(string), nil), 409, "SubnetPoolInUse")
		// Default pool.
		e.must(201, e.do(admin, "POST", "/v2.0/subnetpools", map[string]any{"subnetpool": map[string]any{"name": "d6", "prefixes": []any{"2001:db8:100::/48"}, "is_default": true, "shared": true}}), "subnetpool")
		s6 := e.subnet(userA, map[string]any{"network_id": e.network(userA, nil)["id"], "ip_version": 6, "use_default_subnetpool": true, "ipv6_address_mode": "slaac", "ipv6_ra_mode": "slaac"})
		if s6["cidr"] != "2001:db8:100::/64" {
			t.Fatalf("default pool subnet: %v", s6["cidr"])
		}
	})
}

// TestPolicyEdges covers rules found in review: who may attach to and set
// what on networks and groups of other projects.
func TestPolicyEdges(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		ext := e.network(admin, map[string]any{"router:external": true})
		e.subnet(admin, map[string]any{"network_id": ext["id"], "ip_version": 4, "cidr": "198.51.100.0/24"})
		e.fault(e.do(userA, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": ext["id"]}}), 403, "PolicyNotAuthorized")
		shared := e.network(admin, map[string]any{"shared": true})
		s := e.subnet(admin, map[string]any{"network_id": shared["id"], "ip_version": 4, "cidr": "10.60.0.0/24"})
		for _, extra := range []map[string]any{
			{"fixed_ips": []any{map[string]any{"subnet_id": s["id"], "ip_address": "10.60.0.1"}}},
			{"device_owner": "network:dhcp"},
			{"port_security_enabled": false},
			{"allowed_address_pairs": []any{map[string]any{"ip_address": "10.60.0.99"}}},
		} {
			extra["network_id"] = shared["id"]
			e.fault(e.do(userA, "POST", "/v2.0/ports", map[string]any{"port": extra}), 403, "PolicyNotAuthorized")
		}
		p := e.must(201, e.do(userA, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": shared["id"]}}), "port")
		e.fault(e.do(userA, "PUT", "/v2.0/ports/"+p["id"].(string), map[string]any{"port": map[string]any{"fixed_ips": []any{map[string]any{"ip_address": "10.60.0.77"}}}}), 403, "PolicyNotAuthorized")
		// Pools may not include the network or broadcast address.
		nid := e.network(userA, nil)["id"]
		e.fault(e.do(userA, "POST", "/v2.0/subnets", map[string]any{"subnet": map[string]any{"network_id": nid, "ip_version": 4, "cidr": "10.61.0.0/24", "gateway_ip": nil,
			"allocation_pools": []any{map[string]any{"start": "10.61.0.0", "end": "10.61.0.255"}}}}), 400, "OutOfBoundsAllocationPool")
		// Non-admins cannot share with everyone through RBAC.
		mine := e.network(userA, nil)
		e.fault(e.do(userA, "POST", "/v2.0/rbac-policies", map[string]any{"rbac_policy": map[string]any{
			"object_type": "network", "object_id": mine["id"], "action": "access_as_shared", "target_tenant": "*"}}), 403, "PolicyNotAuthorized")
		// A rule an admin adds to A's group is A's to see and delete; a
		// group's deletion takes the rules that reference it.
		sg := e.must(201, e.do(userA, "POST", "/v2.0/security-groups", map[string]any{"security_group": map[string]any{"name": "g"}}), "security_group")
		other := e.must(201, e.do(userA, "POST", "/v2.0/security-groups", map[string]any{"security_group": map[string]any{"name": "h"}}), "security_group")
		r := e.must(201, e.do(admin, "POST", "/v2.0/security-group-rules", map[string]any{"security_group_rule": map[string]any{
			"security_group_id": sg["id"], "direction": "ingress", "remote_group_id": other["id"]}}), "security_group_rule")
		e.must(200, e.do(userA, "GET", "/v2.0/security-group-rules/"+r["id"].(string), nil), "security_group_rule")
		e.must(204, e.do(userA, "DELETE", "/v2.0/security-group-rules/"+r["id"].(string), nil), "")
		e.must(201, e.do(userA, "POST", "/v2.0/security-group-rules", map[string]any{"security_group_rule": map[string]any{
			"security_group_id": sg["id"], "direction": "ingress", "remote_group_id": other["id"]}}), "security_group_rule")
		e.must(204, e.do(userA, "DELETE", "/v2.0/security-groups/"+other["id"].(string), nil), "")
		g := e.must(200, e.do(userA, "GET", "/v2.0/security-groups/"+sg["id"].(string), nil), "security_group")
		for _, x := range g["security_group_rules"].([]any) {
			if x.(map[string]any)["remote_group_id"] == other["id"] {
				t.Fatalf("rule referencing a deleted group survived: %v", x)
			}
		}
		u := e.must(200, e.do(userA, "PUT", "/v2.0/security-groups/"+sg["id"].(string), map[string]any{"security_group": map[string]any{"stateful": false}}), "security_group")
		if u["stateful"] != false {
			t.Fatalf("stateful update: %v", u)
		}
		e.fault(e.do(userA, "POST", "/v2.0/security-group-rules", map[string]any{"security_group_rule": map[string]any{
			"security_group_id": sg["id"], "direction": "ingress", "remote_ip_prefix": 7}}), 400, "HTTPBadRequest")
	})
}

func TestAgents(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		report := map[string]any{"agent": map[string]any{"agent_type": "Neutrino host agent", "binary": "neutrino-agent", "host": "compute-1", "start_flag": true}}
		e.fault(e.do(userA, "POST", "/neutrino/v1/agents/report", report), 403, "PolicyNotAuthorized")
		a := e.must(200, e.do(admin, "POST", "/neutrino/v1/agents/report", report), "agent")
		again := e.must(200, e.do(admin, "POST", "/neutrino/v1/agents/report", report), "agent")
		if a["id"] != again["id"] || a["alive"] != true || a["heartbeat_timestamp"] == nil {
			t.Fatalf("reports: %v / %v", a, again)
		}
		if l := e.list(admin, "/v2.0/agents", "agents"); len(l) != 1 {
			t.Fatalf("admin sees %d agents", len(l))
		}
		if l := e.list(userA, "/v2.0/agents", "agents"); len(l) != 0 {
			t.Fatalf("non-admin sees %d agents", len(l))
		}
		id := a["id"].(string)
		e.fault(e.do(userA, "PUT", "/v2.0/agents/"+id, map[string]any{"agent": map[string]any{"admin_state_up": false}}), 404, "AgentNotFound")
		u := e.must(200, e.do(admin, "PUT", "/v2.0/agents/"+id, map[string]any{"agent": map[string]any{"admin_state_up": false, "description": "drained"}}), "agent")
		if u["admin_state_up"] != false || u["description"] != "drained" {
			t.Fatalf("update: %v", u)
		}
		e.fault(e.do(admin, "PUT", "/v2.0/agents/"+id, map[string]any{"agent": map[string]any{"host": "x"}}), 400, "HTTPBadRequest")
		e.fault(e.do(admin, "POST", "/v2.0/agents", map[string]any{"agent": map[string]any{}}), 400, "HTTPBadRequest")
		e.must(204, e.do(admin, "DELETE", "/v2.0/agents/"+id, nil), "")
		e.fault(e.do(admin, "GET", "/v2.0/agents/"+id, nil), 404, "AgentNotFound")
	})
}

// TestHostStateAndWatch: an agent lists its host's state at a revision,
// then watches the changes after it; behind a compaction it must re-list.
func TestHostStateAndWatch(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		e.must(200, e.do(admin, "POST", "/neutrino/v1/agents/report", map[string]any{"agent": map[string]any{"agent_type": "Neutrino host agent",
			"binary": "neutrino-agent", "host": "compute-1", "configurations": map[string]any{"tunnel_types": []any{"vxlan"}}}}), "agent")
		nid := e.network(userA, nil)["id"].(string)
		e.subnet(userA, map[string]any{"network_id": nid, "ip_version": 4, "cidr": "10.70.0.0/24"})
		sg := e.must(201, e.do(userA, "POST", "/v2.0/security-groups", map[string]any{"security_group": map[string]any{"name": "web"}}), "security_group")
		e.must(201, e.do(userA, "POST", "/v2.0/security-group-rules", map[string]any{"security_group_rule": map[string]any{
			"security_group_id": sg["id"], "direction": "ingress", "remote_group_id": sg["id"]}}), "")
		p := e.must(201, e.do(userA, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": nid, "security_groups": []any{sg["id"]}}}), "port")
		e.must(200, e.do(admin, "PUT", "/v2.0/ports/"+p["id"].(string), map[string]any{"port": map[string]any{"binding:host_id": "compute-1"}}), "port")
		e.must(201, e.do(userA, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": nid, "security_groups": []any{sg["id"]}}}), "port")

		e.fault(e.do(userA, "GET", "/neutrino/v1/hosts/compute-1/state", nil), 403, "PolicyNotAuthorized")
		st := e.must(200, e.do(admin, "GET", "/neutrino/v1/hosts/compute-1/state", nil), "")
		if len(st["ports"].([]any)) != 1 || len(st["networks"].([]any)) != 1 || len(st["subnets"].([]any)) != 1 || len(st["security_groups"].([]any)) != 1 {
			t.Fatalf("host state: %v", st)
		}
		if members := st["security_group_members"].(map[string]any)[sg["id"].(string)].([]any); len(members) != 2 {
			t.Fatalf("group members (both ports, on any host): %v", members)
		}
		rev := int64(st["revision"].(float64))
		if other := e.must(200, e.do(admin, "GET", "/neutrino/v1/hosts/compute-9/state", nil), ""); len(other["ports"].([]any)) != 0 {
			t.Fatalf("another host's state: %v", other)
		}
		// Nothing after rev yet: a short long-poll comes back empty.
		if ch := e.must(200, e.do(admin, "GET", fmt.Sprintf("/neutrino/v1/changes?after=%d&wait=0.2", rev), nil), ""); len(ch["changes"].([]any)) != 0 {
			t.Fatalf("changes before any write: %v", ch)
		}
		// A long poll wakes on a commit (the re-poll for other servers'
		// commits is off, so nothing else could answer it in time).
		e.api.Repoll = time.Hour
		done := make(chan map[string]any)
		go func() {
			r := e.do(admin, "GET", fmt.Sprintf("/neutrino/v1/changes?after=%d&wait=50", rev), nil)
			done <- r.Body
		}()
		e.must(200, e.do(userA, "PUT", "/v2.0/ports/"+p["id"].(string), map[string]any{"port": map[string]any{"name": "renamed"}}), "port")
		var ch map[string]any
		select {
		case ch = <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("the long poll did not wake on the commit")
		}
		got := ch["changes"].([]any)
		if len(got) != 1 || got[0].(map[string]any)["kind"] != "port" || got[0].(map[string]any)["object"].(map[string]any)["name"] != "renamed" {
			t.Fatalf("watched changes: %v", got)
		}
		// Status is reconciled from the agent's full report.
		e.must(200, e.do(admin, "PUT", "/neutrino/v1/hosts/compute-1/ports", map[string]any{"active": []any{p["id"]}}), "")
		if got := e.must(200, e.do(userA, "GET", "/v2.0/ports/"+p["id"].(string), nil), "port"); got["status"] != "ACTIVE" {
			t.Fatalf("status after the agent wired it: %v", got["status"])
		}
		e.must(200, e.do(admin, "PUT", "/neutrino/v1/hosts/compute-1/ports", map[string]any{"active": []any{}}), "")
		if got := e.must(200, e.do(userA, "GET", "/v2.0/ports/"+p["id"].(string), nil), "port"); got["status"] != "DOWN" {
			t.Fatalf("status after the agent stopped wiring it: %v", got["status"])
		}
		e.fault(e.do(userA, "PUT", "/neutrino/v1/hosts/compute-1/ports", map[string]any{"active": []any{}}), 403, "PolicyNotAuthorized")
		// Behind a compaction: 410, re-list.
		if err := e.db.CompactKeeping(t.Context(), 0); err != nil {
			t.Fatal(err)
		}
		e.fault(e.do(admin, "GET", fmt.Sprintf("/neutrino/v1/changes?after=%d", rev), nil), 410, "RevisionCompacted")
	})
}

// TestHostWatchIsScoped: a host's watch answers only the changes that
// concern the state it was given: a host with no port on a network hears
// nothing of that network's ports (no answer until its wait ends), while
// the host that has ports there is woken.
func TestHostWatchIsScoped(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		const kinds = "agent,network,port,security_group,subnet"
		for _, h := range []string{"compute-1", "compute-2"} {
			e.must(200, e.do(admin, "POST", "/neutrino/v1/agents/report", map[string]any{"agent": map[string]any{"agent_type": "Neutrino host agent",
				"binary": "neutrino-agent", "host": h, "configurations": map[string]any{"tunnel_types": []any{"vxlan"}, "tunneling_ip": "10.0.0." + h[8:]}}}), "agent")
		}
		port := func(net, host string) string {
			return e.must(201, e.do(admin, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": net,
				"binding:host_id": host, "port_security_enabled": false}}), "port")["id"].(string)
		}
		n1 := e.network(admin, nil)["id"].(string)
		n2 := e.network(admin, nil)["id"].(string)
		port(n1, "compute-1")
		port(n2, "compute-2")
		state := func(host string) int64 {
			st := e.must(200, e.do(admin, "GET", "/neutrino/v1/hosts/"+host+"/state?kinds="+kinds, nil), "")
			return int64(st["revision"].(float64))
		}
		watch := func(host string, after, span int64, wait string) chan map[string]any {
			out := make(chan map[string]any, 1)
			go func() {
				out <- e.do(admin, "GET", fmt.Sprintf("/neutrino/v1/hosts/%s/changes?after=%d&span=%d&kinds=%s&wait=%s", host, after, span, kinds, wait), nil).Body
			}()
			return out
		}
		r1, r2 := state("compute-1"), state("compute-2")
		w1 := watch("compute-1", r1, r1, "30")
		w2 := watch("compute-2", r2, r2, "2")
		for i := 0; i < 3; i++ {
			port(n1, "compute-1") // network 1's ports: compute-2 has none there
		}
		got1 := <-w1
		if len(got1["changes"].([]any)) == 0 {
			t.Fatalf("compute-1 was not told of ports on its network: %v", got1)
		}
		got2 := <-w2
		last := e.db.Revision(t)
		if len(got2["changes"].([]any)) != 0 || int64(got2["revision"].(float64)) != last {
			t.Fatalf("compute-2 was told of another host's network, or does not resume at %d: %v", last, got2)
		}
		// A port of compute-2's own network wakes it.
		w2 = watch("compute-2", last, r2, "30")
		port(n2, "compute-1")
		if got := <-w2; len(got["changes"].([]any)) != 1 {
			t.Fatalf("compute-2 not told of a port on its network: %v", got)
		}
		// A state this server did not give (another revision) cannot be
		// judged: every change of the kinds is sent.
		w := watch("compute-2", last, r2-1, "30")
		port(n1, "compute-1")
		if got := <-w; len(got["changes"].([]any)) == 0 {
			t.Fatalf("an unknown state was judged: %v", got)
		}
	})
}

// TestHostWatchSendsDeltas: a host's watch with delta=1 gets what changed
// in its state, not the state: a new member of the group its ports use is
// one address and one member port; applied to the state the host holds, the
// delta gives the state a fresh list gives; a change that leaves the state
// as it was is not sent; a state the server did not give gets no delta.
func TestHostWatchSendsDeltas(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		const kinds = "agent,network,port,security_group,subnet"
		for _, h := range []string{"compute-1", "compute-2"} {
			e.must(200, e.do(admin, "POST", "/neutrino/v1/agents/report", map[string]any{"agent": map[string]any{"agent_type": "Neutrino host agent",
				"binary": "neutrino-agent", "host": h, "configurations": map[string]any{"tunnel_types": []any{"vxlan"}, "tunneling_ip": "10.0.0." + h[8:]}}}), "agent")
		}
		n1 := e.network(admin, nil)["id"].(string)
		n2 := e.network(admin, nil)["id"].(string)
		e.subnet(admin, map[string]any{"network_id": n1, "ip_version": 4, "cidr": "10.10.0.0/24"})
		e.subnet(admin, map[string]any{"network_id": n2, "ip_version": 4, "cidr": "10.20.0.0/24"})
		port := func(net, host string) map[string]any { // in the default group
			return e.must(201, e.do(admin, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": net,
				"binding:host_id": host}}), "port")
		}
		port(n1, "compute-1")
		port(n2, "compute-2")
		state := func() (*hostapi.Span, []byte) {
			r := e.do(admin, "GET", "/neutrino/v1/hosts/compute-2/state?kinds="+kinds, nil)
			var st hostapi.Span
			if r.Status != 200 || json.Unmarshal(r.Raw, &st) != nil {
				t.Fatalf("state: %d %s", r.Status, r.Raw)
			}
			return &st, r.Raw
		}
		type answer struct {
			Changes  []any          `json:"changes"`
			Revision int64          `json:"revision"`
			Delta    *hostapi.Delta `json:"delta"`
		}
		watch := func(after, span int64, wait string) chan answer {
			out := make(chan answer, 1)
			go func() {
				r := e.do(admin, "GET", fmt.Sprintf("/neutrino/v1/hosts/compute-2/changes?after=%d&span=%d&kinds=%s&wait=%s&delta=1", after, span, kinds, wait), nil)
				var a answer
				json.Unmarshal(r.Raw, &a)
				out <- a
			}()
			return out
		}
		held, full := state()
		// Another host's new port in the default group: compute-2 needs
		// its address (the group admits its own members), nothing else.
		w := watch(held.Revision, held.Revision, "30")
		p := port(n1, "compute-1")
		member := p
		got := <-w
		d := got.Delta
		if d == nil || d.From != held.Revision || d.Revision != got.Revision {
			t.Fatalf("no delta from %d: %+v", held.Revision, got)
		}
		addr := p["fixed_ips"].([]any)[0].(map[string]any)["ip_address"].(string)
		if len(d.Put) != 0 || len(d.Remove) != 0 || len(d.Peers) != 0 || len(d.Members) != 1 {
			t.Fatalf("the delta for a new member: %s", mustJSON(d))
		}
		for _, ld := range d.Members {
			if fmt.Sprint(ld.Add) != fmt.Sprint([]string{addr}) || len(ld.Remove) != 0 {
				t.Fatalf("the delta for a new member: %s", mustJSON(d))
			}
		}
		raw, _ := json.Marshal(got)
		if len(raw) > len(full)/2 {
			t.Fatalf("the delta (%d bytes) is not small beside the state (%d bytes)", len(raw), len(full))
		}
		held.Apply(d)
		fresh, _ := state()
		if a, b := canonicalSpan(t, held), canonicalSpan(t, fresh); a != b {
			t.Fatalf("state with the delta applied\n%s\nfresh\n%s", a, b)
		}
		// A new port on compute-2's own network, bound elsewhere: a peer.
		w = watch(fresh.Revision, fresh.Revision, "30")
		p = port(n2, "compute-1")
		got = <-w
		if got.Delta == nil || len(got.Delta.Peers) != 1 || got.Delta.Peers[0].PortID != p["id"] || got.Delta.Peers[0].VTEP != "10.0.0.1" {
			t.Fatalf("the delta for a peer: %+v", got)
		}
		fresh.Apply(got.Delta)
		again, _ := state()
		if a, b := canonicalSpan(t, fresh), canonicalSpan(t, again); a != b {
			t.Fatalf("state with the delta applied\n%s\nfresh\n%s", a, b)
		}
		// Renaming a member port elsewhere, or its going ACTIVE, changes
		// nothing compute-2 holds: it is not told, and resumes after.
		w = watch(again.Revision, again.Revision, "1")
		e.must(200, e.do(admin, "PUT", "/v2.0/ports/"+p["id"].(string), map[string]any{"port": map[string]any{"name": "renamed"}}), "port")
		e.must(200, e.do(admin, "PUT", "/neutrino/v1/hosts/compute-1/ports", map[string]any{"active": []string{p["id"].(string)}}), "")
		got = <-w
		if got.Delta != nil || len(got.Changes) != 0 || got.Revision != e.db.Revision(t) {
			t.Fatalf("told of a change that leaves its state as it was: %+v", got)
		}
		// The first member elsewhere goes: its address goes, nothing else;
		// then a port on compute-2's network is still a peer.
		w = watch(got.Revision, again.Revision, "30")
		e.must(204, e.do(admin, "DELETE", "/v2.0/ports/"+member["id"].(string), nil), "")
		got = <-w
		if d := got.Delta; d == nil || len(d.Put) != 0 || len(d.Peers) != 0 || len(d.Members) != 1 {
			t.Fatalf("the delta for a member gone: %+v", got)
		}
		for _, ld := range got.Delta.Members {
			if fmt.Sprint(ld.Remove) != fmt.Sprint([]string{addr}) || len(ld.Add) != 0 {
				t.Fatalf("the delta for a member gone: %s", mustJSON(got.Delta))
			}
		}
		again.Apply(got.Delta)
		w = watch(got.Revision, got.Revision, "30")
		p = port(n2, "compute-1")
		got = <-w
		if got.Delta == nil || len(got.Delta.Peers) != 1 || got.Delta.Peers[0].PortID != p["id"] {
			t.Fatalf("the delta for a peer after members changed: %+v", got)
		}
		again.Apply(got.Delta)
		if now, _ := state(); canonicalSpan(t, again) != canonicalSpan(t, now) {
			t.Fatalf("state with the deltas applied\n%s\nfresh\n%s", canonicalSpan(t, again), canonicalSpan(t, now))
		}
		// A state this server did not give: changes, no delta.
		w = watch(again.Revision, again.Revision-1, "30")
		port(n1, "compute-1")
		if got := <-w; got.Delta != nil || len(got.Changes) == 0 {
			t.Fatalf("an unknown state got a delta: %+v", got)
		}
	})
}

// canonicalSpan is a span's JSON with lists in one order and empty lists
// left out.
func canonicalSpan(t *testing.T, st *hostapi.Span) string {
	t.Helper()
	var m map[string]any
	b, _ := json.Marshal(st)
	json.Unmarshal(b, &m)
	for k, v := range m {
		if l, ok := v.([]any); ok {
			if len(l) == 0 {
				delete(m, k)
				continue
			}
			sort.Slice(l, func(i, j int) bool { return fmt.Sprint(l[i]) < fmt.Sprint(l[j]) })
		} else if v == nil {
			delete(m, k)
		}
	}
	out, _ := json.Marshal(m)
	return string(out)
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestDHCPAgentScheduler(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		report := map[string]any{"agent": map[string]any{"agent_type": "DHCP agent", "binary": "neutrino-dhcp-agent", "host": "network-1"}}
		agent := e.must(200, e.do(admin, "POST", "/neutrino/v1/agents/report", report), "agent")
		aid := agent["id"].(string)
		nid := e.network(userA, nil)["id"].(string)
		if l := e.list(admin, "/v2.0/networks/"+nid+"/dhcp-agents", "agents"); len(l) != 0 {
			t.Fatalf("a network without subnets is hosted: %v", l)
		}
		e.subnet(userA, map[string]any{"network_id": nid, "ip_version": 4, "cidr": "10.3.0.0/24"})
		if l := e.list(admin, "/v2.0/networks/"+nid+"/dhcp-agents", "agents"); len(l) != 1 || l[0].(map[string]any)["id"] != aid {
			t.Fatalf("network not scheduled to the DHCP agent: %v", l)
		}
		if l := e.list(admin, "/v2.0/agents/"+aid+"/dhcp-networks", "networks"); len(l) != 1 {
			t.Fatalf("agent's networks: %v", l)
		}
		e.fault(e.do(admin, "POST", "/v2.0/agents/"+aid+"/dhcp-networks", map[string]any{"network_id": nid}), 409, "NetworkHostedByDHCPAgent")
		e.must(204, e.do(admin, "DELETE", "/v2.0/agents/"+aid+"/dhcp-networks/"+nid, nil), "")
		e.fault(e.do(admin, "DELETE", "/v2.0/agents/"+aid+"/dhcp-networks/"+nid, nil), 409, "NetworkNotHostedByDhcpAgent")
		e.must(201, e.do(admin, "POST", "/v2.0/agents/"+aid+"/dhcp-networks", map[string]any{"network_id": nid}), "")
		e.fault(e.do(userA, "GET", "/v2.0/agents/"+aid+"/dhcp-networks", nil), 403, "PolicyNotAuthorized")
		e.fault(e.do(userA, "GET", "/v2.0/networks/"+nid+"/dhcp-agents", nil), 403, "PolicyNotAuthorized")
		host := e.must(200, e.do(admin, "POST", "/neutrino/v1/agents/report", map[string]any{"agent": map[string]any{"agent_type": "Neutrino host agent", "binary": "neutrino-agent", "host": "compute-1"}}), "agent")
		e.fault(e.do(admin, "POST", "/v2.0/agents/"+host["id"].(string)+"/dhcp-networks", map[string]any{"network_id": nid}), 409, "InvalidDHCPAgent")
		// Deleting the network drops its bindings.
		e.must(204, e.do(userA, "DELETE", "/v2.0/networks/"+nid, nil), "")
		if l := e.list(admin, "/v2.0/agents/"+aid+"/dhcp-networks", "networks"); len(l) != 0 {
			t.Fatalf("bindings left after the network: %v", l)
		}
	})
}

// TestDHCPFailover: a network hosted by a DHCP agent that stops reporting
// moves to a live one when that one reports, and the dead host's DHCP port
// is removed.
func TestDHCPFailover(t *testing.T) {
	for name, dsn := range dsns(t) {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, dsn, services.Config{AgentDownTime: 2 * time.Second})
			report := func(host string) string {
				return e.must(200, e.do(admin, "POST", "/neutrino/v1/agents/report", map[string]any{"agent": map[string]any{
					"agent_type": "DHCP agent", "binary": "neutrino-dhcp-agent", "host": host}}), "agent")["id"].(string)
			}
			a1 := report("network-1")
			nid := e.network(userA, nil)["id"].(string)
			e.subnet(userA, map[string]any{"network_id": nid, "ip_version": 6, "cidr": "2001:db8:5::/64", "ipv6_address_mode": "dhcpv6-stateless",
				"ipv6_ra_mode": "dhcpv6-stateless"})
			if l := e.list(admin, "/v2.0/networks/"+nid+"/dhcp-agents", "agents"); len(l) != 1 || l[0].(map[string]any)["id"] != a1 {
				t.Fatalf("a DHCPv6 network is not scheduled: %v", l)
			}
			dp := e.must(201, e.do(admin, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": nid,
				"device_owner": "network:dhcp", "binding:host_id": "network-1"}}), "port")
			time.Sleep(3 * time.Second) // network-1 is now dead
			report("network-2")         // a live agent takes it over
			l := e.list(admin, "/v2.0/networks/"+nid+"/dhcp-agents", "agents")
			if len(l) != 1 || l[0].(map[string]any)["host"] != "network-2" {
				t.Fatalf("network not moved to the live agent: %v", l)
			}
			// The DHCP port goes with the network, keeping its addresses:
			// clients renew with the server they know (Neutron keeps it too).
			moved := e.must(200, e.do(admin, "GET", "/v2.0/ports/"+dp["id"].(string), nil), "port")
			if moved["binding:host_id"] != "network-2" || moved["device_id"] != "dhcpnetwork-2" ||
				fmt.Sprint(moved["fixed_ips"]) != fmt.Sprint(dp["fixed_ips"]) {
				t.Fatalf("DHCP port not moved with its addresses: %v, was %v", moved, dp)
			}
		})
	}
}

// A port's MAC is free again once the port changes it or goes, and only
// then (MACs are released by their key).
func TestMACReleased(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		nid := e.network(admin, nil)["id"].(string)
		port := func(mac string) map[string]any {
			return e.must(201, e.do(admin, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": nid, "mac_address": mac}}), "port")
		}
		a := port("fa:16:3e:00:00:01")
		b := port("fa:16:3e:00:00:02")
		e.fault(e.do(admin, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": nid, "mac_address": "fa:16:3e:00:00:01"}}), 409, "MacAddressInUse")
		e.must(200, e.do(admin, "PUT", "/v2.0/ports/"+a["id"].(string), map[string]any{"port": map[string]any{"mac_address": "fa:16:3e:00:00:03"}}), "port")
		c := port("fa:16:3e:00:00:01")
		e.fault(e.do(admin, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": nid, "mac_address": "fa:16:3e:00:00:03"}}), 409, "MacAddressInUse")
		if n := e.rows("mac_addresses"); n != 3 {
			t.Fatalf("%d MACs allocated, want 3", n)
		}
		for _, p := range []map[string]any{a, b, c} {
			e.must(204, e.do(admin, "DELETE", "/v2.0/ports/"+p["id"].(string), nil), "")
		}
		if n := e.rows("mac_addresses"); n != 0 {
			t.Fatalf("%d MACs left after deleting every port", n)
		}
		port("fa:16:3e:00:00:03")
	})
}

// TestHeartbeatsWriteNothing: an agent's report that changes nothing but
// the time writes no change (no revision, no watcher woken), yet the
// agent's heartbeat shows; an agent that stops reporting is found dead by
// the sweep after the others' reports, and its networks move to a live
// DHCP agent that only heartbeats.
func TestHeartbeatsWriteNothing(t *testing.T) {
	for name, dsn := range dsns(t) {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, dsn, services.Config{AgentDownTime: 2 * time.Second})
			report := func(host string, start bool) map[string]any {
				return e.must(200, e.do(admin, "POST", "/neutrino/v1/agents/report", map[string]any{"agent": map[string]any{
					"agent_type": "DHCP agent", "binary": "neutrino-dhcp-agent", "host": host, "start_flag": start}}), "agent")
			}
			a1 := report("network-1", true)
			report("network-2", true)
			rev := e.db.Revision(t)
			time.Sleep(1100 * time.Millisecond) // heartbeat times are seconds
			again := report("network-1", false)
			if after := e.db.Revision(t); after != rev {
				t.Fatalf("a heartbeat wrote a change: revision %d -> %d", rev, after)
			}
			if again["heartbeat_timestamp"] == a1["heartbeat_timestamp"] || again["alive"] != true {
				t.Fatalf("the heartbeat does not show: %v then %v", a1["heartbeat_timestamp"], again["heartbeat_timestamp"])
			}
			nid := e.network(userA, nil)["id"].(string)
			e.subnet(userA, map[string]any{"network_id": nid, "ip_version": 4, "cidr": "10.31.0.0/24"})
			hosting := e.list(admin, "/v2.0/networks/"+nid+"/dhcp-agents", "agents")
			if len(hosting) != 1 {
				t.Fatalf("not scheduled: %v", hosting)
			}
			host := hosting[0].(map[string]any)["host"].(string)
			live := map[string]string{"network-1": "network-2", "network-2": "network-1"}[host]
			// Only the other agent goes on reporting, heartbeats alone.
			for i := 0; i < 8; i++ {
				time.Sleep(400 * time.Millisecond)
				report(live, false)
			}
			hosting = e.list(admin, "/v2.0/networks/"+nid+"/dhcp-agents", "agents")
			if len(hosting) != 1 || hosting[0].(map[string]any)["host"] != live {
				t.Fatalf("the network stayed with the dead agent: %v", hosting)
			}
			for _, a := range e.list(admin, "/v2.0/agents", "agents") {
				m := a.(map[string]any)
				if want := m["host"] == live; m["alive"] != want {
					t.Errorf("%s alive: %v", m["host"], m["alive"])
				}
			}
		})
	}
}
