package api

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"neutrino/internal/services"
)

// TestRouters: the L3 API as Neutron answers it: gateways on external
// networks only, interfaces by subnet (at the gateway address) and by port,
// overlap and duplicate checks, extra routes that must be reachable, ports
// owned by the router that the port API may not delete, and deletes refused
// while in use.
func TestRouters(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		pub := e.network(admin, map[string]any{"router:external": true})
		pubID := pub["id"].(string)
		pubSub := e.subnet(admin, map[string]any{"network_id": pubID, "ip_version": 4, "cidr": "203.0.113.0/24", "enable_dhcp": false,
			// Automatic addresses from .100 up: the ones chosen below never collide.
			"allocation_pools": []any{map[string]any{"start": "203.0.113.100", "end": "203.0.113.250"}}})
		n1 := e.network(userA, nil)["id"].(string)
		s1 := e.subnet(userA, map[string]any{"network_id": n1, "ip_version": 4, "cidr": "10.10.0.0/24"})
		s1b := e.subnet(userA, map[string]any{"network_id": e.network(userA, nil)["id"], "ip_version": 4, "cidr": "10.10.0.128/25"})
		n2 := e.network(userA, nil)["id"].(string)
		s2 := e.subnet(userA, map[string]any{"network_id": n2, "ip_version": 4, "cidr": "10.20.0.0/24"})

		r := e.must(201, e.do(userA, "POST", "/v2.0/routers", map[string]any{"router": map[string]any{"name": "r1"}}), "router")
		rid := r["id"].(string)
		if r["status"] != "ACTIVE" || r["external_gateway_info"] != nil || fmt.Sprint(r["routes"]) != "[]" || r["admin_state_up"] != true {
			t.Fatalf("router: %v", r)
		}
		if _, ok := r["distributed"]; ok {
			t.Fatalf("distributed shown to a non-admin: %v", r)
		}
		e.fault(e.do(userA, "POST", "/v2.0/routers", map[string]any{"router": map[string]any{"routes": []any{}}}), 400, "HTTPBadRequest")
		e.fault(e.do(userA, "POST", "/v2.0/routers", map[string]any{"router": map[string]any{"distributed": true}}), 403, "PolicyNotAuthorized")
		e.fault(e.do(userB, "GET", "/v2.0/routers/"+rid, nil), 404, "RouterNotFound")

		// Gateway: external networks only; enable_snat and fixed IPs are admin's.
		e.fault(e.do(userA, "PUT", "/v2.0/routers/"+rid, map[string]any{"router": map[string]any{"external_gateway_info": map[string]any{"network_id": n2}}}), 400, "HTTPBadRequest")
		e.fault(e.do(userA, "PUT", "/v2.0/routers/"+rid, map[string]any{"router": map[string]any{"external_gateway_info": map[string]any{"network_id": pubID, "enable_snat": false}}}), 403, "PolicyNotAuthorized")
		r = e.must(200, e.do(userA, "PUT", "/v2.0/routers/"+rid, map[string]any{"router": map[string]any{"external_gateway_info": map[string]any{"network_id": pubID}}}), "router")
		gw := r["external_gateway_info"].(map[string]any)
		ext := gw["external_fixed_ips"].([]any)
		if gw["network_id"] != pubID || gw["enable_snat"] != true || len(ext) != 1 || ext[0].(map[string]any)["subnet_id"] != pubSub["id"] {
			t.Fatalf("gateway: %v", gw)
		}
		gwPorts := e.list(admin, "/v2.0/ports?device_id="+rid+"&device_owner=network:router_gateway", "ports")
		if len(gwPorts) != 1 || gwPorts[0].(map[string]any)["project_id"] != "" {
			t.Fatalf("gateway port: %v", gwPorts)
		}
		ra := e.must(200, e.do(admin, "PUT", "/v2.0/routers/"+rid, map[string]any{"router": map[string]any{"external_gateway_info": map[string]any{"network_id": pubID,
			"enable_snat": false, "external_fixed_ips": []any{map[string]any{"ip_address": "203.0.113.9"}}}}}), "router")
		if gw := ra["external_gateway_info"].(map[string]any); gw["enable_snat"] != false || !strings.Contains(fmt.Sprint(gw), "203.0.113.9") {
			t.Fatalf("admin gateway update: %v", gw)
		}

		// Interfaces.
		ri := e.must(200, e.do(userA, "PUT", "/v2.0/routers/"+rid+"/add_router_interface", map[string]any{"subnet_id": s1["id"]}), "")
		if ri["subnet_id"] != s1["id"] || ri["id"] != rid || ri["network_id"] != n1 || len(ri["subnet_ids"].([]any)) != 1 {
			t.Fatalf("interface: %v", ri)
		}
		ifPort := e.must(200, e.do(userA, "GET", "/v2.0/ports/"+ri["port_id"].(string), nil), "port")
		if ifPort["device_owner"] != "network:router_interface" || !strings.Contains(fmt.Sprint(ifPort["fixed_ips"]), "10.10.0.1 ") {
			t.Fatalf("interface port: %v", ifPort)
		}
		e.fault(e.do(userA, "PUT", "/v2.0/routers/"+rid+"/add_router_interface", map[string]any{"subnet_id": s1["id"]}), 400, "HTTPBadRequest")
		e.fault(e.do(userA, "PUT", "/v2.0/routers/"+rid+"/add_router_interface", map[string]any{"subnet_id": s1b["id"]}), 400, "HTTPBadRequest") // overlaps
		e.fault(e.do(userA, "PUT", "/v2.0/routers/"+rid+"/add_router_interface", map[string]any{}), 400, "HTTPBadRequest")
		e.fault(e.do(userA, "DELETE", "/v2.0/ports/"+ri["port_id"].(string), nil), 409, "L3PortInUse")
		e.fault(e.do(userA, "DELETE", "/v2.0/subnets/"+s1["id"].(string), nil), 409, "SubnetInUse")
		// By port.
		p2 := e.must(201, e.do(userA, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": n2,
			"fixed_ips": []any{map[string]any{"subnet_id": s2["id"], "ip_address": "10.20.0.254"}}}}), "port")
		e.must(200, e.do(userA, "PUT", "/v2.0/routers/"+rid+"/add_router_interface", map[string]any{"port_id": p2["id"]}), "")
		e.fault(e.do(userA, "PUT", "/v2.0/routers/"+rid+"/add_router_interface", map[string]any{"port_id": p2["id"]}), 409, "PortInUse")

		// Nobody else may claim a port of this router, nor put a router on
		// a subnet they do not own (a shared network's gateway).
		nB := e.network(userB, nil)["id"].(string)
		e.fault(e.do(userB, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": nB,
			"device_owner": "network:router_interface", "device_id": rid}}), 409, "DeviceIDNotOwnedByTenant")
		shared := e.network(admin, map[string]any{"shared": true})["id"].(string)
		sharedSub := e.subnet(admin, map[string]any{"network_id": shared, "ip_version": 4, "cidr": "10.55.0.0/24"})
		e.fault(e.do(userA, "PUT", "/v2.0/routers/"+rid+"/add_router_interface", map[string]any{"subnet_id": sharedSub["id"]}), 403, "PolicyNotAuthorized")

		// Extra routes: the next hop must be on an interface subnet.
		e.fault(e.do(userA, "PUT", "/v2.0/routers/"+rid, map[string]any{"router": map[string]any{"routes": []any{
			map[string]any{"destination": "10.99.0.0/16", "nexthop": "10.77.0.5"}}}}), 400, "InvalidRoutes")
		e.fault(e.do(userA, "PUT", "/v2.0/routers/"+rid, map[string]any{"router": map[string]any{"routes": []any{
			map[string]any{"destination": "10.99.0.0/16", "nexthop": "10.10.0.1"}}}}), 400, "InvalidRoutes")
		// A next hop on the gateway's subnet is reachable too.
		e.must(200, e.do(userA, "PUT", "/v2.0/routers/"+rid, map[string]any{"router": map[string]any{"routes": []any{
			map[string]any{"destination": "198.18.0.0/15", "nexthop": "203.0.113.254"}}}}), "router")
		r = e.must(200, e.do(userA, "PUT", "/v2.0/routers/"+rid, map[string]any{"router": map[string]any{"routes": []any{
			map[string]any{"destination": "10.99.0.0/16", "nexthop": "10.10.0.5"}}}}), "router")
		if len(r["routes"].([]any)) != 1 {
			t.Fatalf("routes: %v", r["routes"])
		}
		added := e.must(200, e.do(userA, "PUT", "/v2.0/routers/"+rid+"/add_extraroutes", map[string]any{"router": map[string]any{"routes": []any{
			map[string]any{"destination": "10.98.0.0/16", "nexthop": "10.20.0.7"}, map[string]any{"destination": "10.99.0.0/16", "nexthop": "10.10.0.5"}}}}), "router")
		if len(added["routes"].([]any)) != 2 {
			t.Fatalf("add_extraroutes: %v", added["routes"])
		}
		removed := e.must(200, e.do(userA, "PUT", "/v2.0/routers/"+rid+"/remove_extraroutes", map[string]any{"router": map[string]any{"routes": []any{
			map[string]any{"destination": "10.98.0.0/16", "nexthop": "10.20.0.7"}}}}), "router")
		if fmt.Sprint(removed["routes"]) != "[map[destination:10.99.0.0/16 nexthop:10.10.0.5]]" {
			t.Fatalf("remove_extraroutes: %v", removed["routes"])
		}
		e.fault(e.do(userA, "PUT", "/v2.0/routers/"+rid+"/remove_router_interface", map[string]any{"subnet_id": s1["id"]}), 409, "RouterInterfaceInUseByRoute")

		// Floating IPs.
		vm := e.must(201, e.do(userA, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": n1}}), "port")
		vmIP := vm["fixed_ips"].([]any)[0].(map[string]any)["ip_address"].(string)
		e.fault(e.do(userA, "POST", "/v2.0/floatingips", map[string]any{"floatingip": map[string]any{"floating_network_id": n2}}), 400, "HTTPBadRequest")
		e.fault(e.do(userA, "POST", "/v2.0/floatingips", map[string]any{"floatingip": map[string]any{"floating_network_id": pubID, "floating_ip_address": "203.0.113.77"}}), 403, "PolicyNotAuthorized")
		fip := e.must(201, e.do(userA, "POST", "/v2.0/floatingips", map[string]any{"floatingip": map[string]any{"floating_network_id": pubID, "port_id": vm["id"]}}), "floatingip")
		if fip["router_id"] != rid || fip["fixed_ip_address"] != vmIP || fip["status"] != "DOWN" || fip["port_details"].(map[string]any)["mac_address"] != vm["mac_address"] {
			t.Fatalf("floating IP: %v", fip)
		}
		if _, ok := fip["name"]; ok {
			t.Fatalf("a floating IP has no name: %v", fip)
		}
		chosen := e.must(201, e.do(admin, "POST", "/v2.0/floatingips", map[string]any{"floatingip": map[string]any{"floating_network_id": pubID,
			"floating_ip_address": "203.0.113.77", "tenant_id": projA}}), "floatingip")
		if chosen["floating_ip_address"] != "203.0.113.77" || chosen["port_id"] != nil {
			t.Fatalf("chosen floating IP: %v", chosen)
		}
		e.fault(e.do(userA, "PUT", "/v2.0/floatingips/"+chosen["id"].(string), map[string]any{"floatingip": map[string]any{"port_id": vm["id"]}}), 409, "FloatingIPPortAlreadyAssociated")
		n3 := e.network(userA, nil)["id"].(string)
		e.subnet(userA, map[string]any{"network_id": n3, "ip_version": 4, "cidr": "10.30.0.0/24"})
		unrouted := e.must(201, e.do(userA, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": n3}}), "port")
		e.fault(e.do(userA, "PUT", "/v2.0/floatingips/"+chosen["id"].(string), map[string]any{"floatingip": map[string]any{"port_id": unrouted["id"]}}), 404, "ExternalGatewayForFloatingIPNotFound")
		e.fault(e.do(userA, "PUT", "/v2.0/routers/"+rid+"/remove_router_interface", map[string]any{"port_id": ri["port_id"]}), 409, "RouterInterfaceInUseByFloatingIP")
		e.fault(e.do(userA, "PUT", "/v2.0/routers/"+rid, map[string]any{"router": map[string]any{"external_gateway_info": map[string]any{}}}), 409, "RouterExternalGatewayInUseByFloatingIp")
		e.fault(e.do(admin, "DELETE", "/v2.0/networks/"+pubID, nil), 409, "NetworkInUse")
		// A fixed IP the port gives up takes its floating IP mapping along
		// (the new address differs from the random one it had).
		moveTo := "10.10.0.77"
		if vm["fixed_ips"].([]any)[0].(map[string]any)["ip_address"] == moveTo {
			moveTo = "10.10.0.78"
		}
		vm = e.must(200, e.do(userA, "PUT", "/v2.0/ports/"+vm["id"].(string), map[string]any{"port": map[string]any{
			"fixed_ips": []any{map[string]any{"subnet_id": s1["id"], "ip_address": moveTo}}}}), "port")
		if got := e.must(200, e.do(userA, "GET", "/v2.0/floatingips/"+fip["id"].(string), nil), "floatingip"); got["port_id"] != nil {
			t.Fatalf("floating IP still mapped to a released address: %v", got)
		}
		e.must(200, e.do(userA, "PUT", "/v2.0/floatingips/"+fip["id"].(string), map[string]any{"floatingip": map[string]any{"port_id": vm["id"]}}), "floatingip")
		// Deleting the port frees the floating IP; disassociating works too.
		e.must(204, e.do(userA, "DELETE", "/v2.0/ports/"+vm["id"].(string), nil), "")
		if got := e.must(200, e.do(userA, "GET", "/v2.0/floatingips/"+fip["id"].(string), nil), "floatingip"); got["port_id"] != nil || got["router_id"] != nil || got["port_details"] != nil {
			t.Fatalf("floating IP after its port went: %v", got)
		}
		e.must(204, e.do(userA, "DELETE", "/v2.0/floatingips/"+fip["id"].(string), nil), "")
		e.must(204, e.do(admin, "DELETE", "/v2.0/floatingips/"+chosen["id"].(string), nil), "")
		if l := e.list(admin, "/v2.0/ports?device_owner=network:floatingip", "ports"); len(l) != 0 {
			t.Fatalf("floating IP ports left: %v", l)
		}

		// Teardown order: routes, interfaces, then the router (and its gateway port).
		e.fault(e.do(userA, "DELETE", "/v2.0/routers/"+rid, nil), 409, "RouterInUse")
		e.must(200, e.do(userA, "PUT", "/v2.0/routers/"+rid, map[string]any{"router": map[string]any{"routes": nil}}), "router")
		e.must(200, e.do(userA, "PUT", "/v2.0/routers/"+rid+"/remove_router_interface", map[string]any{"subnet_id": s1["id"]}), "")
		e.fault(e.do(userA, "PUT", "/v2.0/routers/"+rid+"/remove_router_interface", map[string]any{"subnet_id": s1["id"]}), 404, "RouterInterfaceNotFoundForSubnet")
		e.must(200, e.do(userA, "PUT", "/v2.0/routers/"+rid+"/remove_router_interface", map[string]any{"port_id": p2["id"]}), "")
		e.must(204, e.do(userA, "DELETE", "/v2.0/routers/"+rid, nil), "")
		if l := e.list(admin, "/v2.0/ports?device_id="+rid, "ports"); len(l) != 0 {
			t.Fatalf("router ports left: %v", l)
		}
		// An external network goes with its unassociated floating IPs.
		left := e.must(201, e.do(admin, "POST", "/v2.0/floatingips", map[string]any{"floatingip": map[string]any{"floating_network_id": pubID}}), "floatingip")
		e.must(204, e.do(admin, "DELETE", "/v2.0/networks/"+pubID, nil), "")
		e.fault(e.do(admin, "GET", "/v2.0/floatingips/"+left["id"].(string), nil), 404, "FloatingIPNotFound")

		// Admin-only attributes: distributed and ha change only while down.
		ar := e.must(201, e.do(admin, "POST", "/v2.0/routers", map[string]any{"router": map[string]any{"ha": true}}), "router")
		if ar["ha"] != true || ar["distributed"] != false {
			t.Fatalf("admin router: %v", ar)
		}
		e.fault(e.do(admin, "PUT", "/v2.0/routers/"+ar["id"].(string), map[string]any{"router": map[string]any{"distributed": true}}), 400, "BadRequest")
		e.must(200, e.do(admin, "PUT", "/v2.0/routers/"+ar["id"].(string), map[string]any{"router": map[string]any{"admin_state_up": false}}), "router")
		if up := e.must(200, e.do(admin, "PUT", "/v2.0/routers/"+ar["id"].(string), map[string]any{"router": map[string]any{"distributed": true}}), "router"); up["distributed"] != true {
			t.Fatalf("migration to distributed: %v", up)
		}
		// ha and distributed are no filters, for anyone (as Neutron).
		e.fault(e.do(admin, "GET", "/v2.0/routers?ha=true", nil), 400, "HTTPBadRequest")
		e.fault(e.do(userA, "GET", "/v2.0/routers?distributed=false", nil), 400, "HTTPBadRequest")
		// And back to centralized (Neutron Zed allows it, down).
		if up := e.must(200, e.do(admin, "PUT", "/v2.0/routers/"+ar["id"].(string), map[string]any{"router": map[string]any{"distributed": false}}), "router"); up["distributed"] != false {
			t.Fatalf("migration back to centralized: %v", up)
		}
	})
}

// TestL3AgentScheduler: routers with ports go to the least loaded live L3
// agent and their ports are bound to its host; admins list, add and remove
// them per agent and per router.
func TestL3AgentScheduler(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		report := func(typ, host string) string {
			return e.must(200, e.do(admin, "POST", "/neutrino/v1/agents/report", map[string]any{"agent": map[string]any{
				"agent_type": typ, "binary": "neutrino-agent", "host": host, "start_flag": true,
				"configurations": map[string]any{"tunnel_types": []any{"vxlan"}, "agent_mode": "legacy"}}}), "agent")["id"].(string)
		}
		report("Neutrino host agent", "network-1")
		l3 := report("L3 agent", "network-1")
		empty := e.must(201, e.do(userA, "POST", "/v2.0/routers", map[string]any{"router": map[string]any{}}), "router")
		if l := e.list(admin, "/v2.0/routers/"+empty["id"].(string)+"/l3-agents", "agents"); len(l) != 0 {
			t.Fatalf("a router without ports was scheduled: %v", l)
		}
		e.must(201, e.do(admin, "POST", "/v2.0/agents/"+l3+"/l3-routers", map[string]any{"router_id": empty["id"]}), "")
		e.fault(e.do(admin, "POST", "/v2.0/agents/"+l3+"/l3-routers", map[string]any{"router_id": empty["id"]}), 409, "RouterHostedByL3Agent")
		if l := e.list(admin, "/v2.0/routers/"+empty["id"].(string)+"/l3-agents", "agents"); len(l) != 1 || l[0].(map[string]any)["agent_type"] != "L3 agent" {
			t.Fatalf("l3-agents: %v", l)
		}
		e.must(204, e.do(admin, "DELETE", "/v2.0/agents/"+l3+"/l3-routers/"+empty["id"].(string), nil), "")
		e.fault(e.do(admin, "DELETE", "/v2.0/agents/"+l3+"/l3-routers/"+empty["id"].(string), nil), 409, "RouterNotHostedByL3Agent")
		e.fault(e.do(userA, "GET", "/v2.0/agents/"+l3+"/l3-routers", nil), 403, "PolicyNotAuthorized")

		// An interface schedules the router and binds its port to network-1.
		n := e.network(userA, nil)["id"].(string)
		sn := e.subnet(userA, map[string]any{"network_id": n, "ip_version": 4, "cidr": "10.40.0.0/24"})
		r := e.must(201, e.do(userA, "POST", "/v2.0/routers", map[string]any{"router": map[string]any{}}), "router")
		ri := e.must(200, e.do(userA, "PUT", "/v2.0/routers/"+r["id"].(string)+"/add_router_interface", map[string]any{"subnet_id": sn["id"]}), "")
		if l := e.list(admin, "/v2.0/agents/"+l3+"/l3-routers", "routers"); len(l) != 1 || l[0].(map[string]any)["id"] != r["id"] {
			t.Fatalf("router not scheduled by its interface: %v", l)
		}
		p := e.must(200, e.do(admin, "GET", "/v2.0/ports/"+ri["port_id"].(string), nil), "port")
		if p["binding:host_id"] != "network-1" || p["binding:vif_type"] != "tap" {
			t.Fatalf("interface port binding: %v", p)
		}
		st := e.must(200, e.do(admin, "GET", "/neutrino/v1/hosts/network-1/state", nil), "")
		if len(st["routers"].([]any)) != 1 {
			t.Fatalf("host state routers: %v", st["routers"])
		}
	})
}

// TestL3Failover: a router on an L3 agent that stops reporting moves to a
// live one when that one reports, with its ports bound to the new host.
func TestL3Failover(t *testing.T) {
	for name, dsn := range dsns(t) {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, dsn, services.Config{AgentDownTime: 2 * time.Second})
			report := func(typ, host string) {
				e.must(200, e.do(admin, "POST", "/neutrino/v1/agents/report", map[string]any{"agent": map[string]any{
					"agent_type": typ, "binary": "neutrino-agent", "host": host,
					"configurations": map[string]any{"tunnel_types": []any{"vxlan"}}}}), "agent")
			}
			report("Neutrino host agent", "network-1")
			report("L3 agent", "network-1")
			n := e.network(userA, nil)["id"].(string)
			sn := e.subnet(userA, map[string]any{"network_id": n, "ip_version": 4, "cidr": "10.41.0.0/24"})
			r := e.must(201, e.do(userA, "POST", "/v2.0/routers", map[string]any{"router": map[string]any{}}), "router")
			ri := e.must(200, e.do(userA, "PUT", "/v2.0/routers/"+r["id"].(string)+"/add_router_interface", map[string]any{"subnet_id": sn["id"]}), "")
			time.Sleep(3 * time.Second) // network-1 is now dead
			report("Neutrino host agent", "network-2")
			report("L3 agent", "network-2")
			l := e.list(admin, "/v2.0/routers/"+r["id"].(string)+"/l3-agents", "agents")
			if len(l) != 1 || l[0].(map[string]any)["host"] != "network-2" {
				t.Fatalf("router not moved to the live agent: %v", l)
			}
			if p := e.must(200, e.do(admin, "GET", "/v2.0/ports/"+ri["port_id"].(string), nil), "port"); p["binding:host_id"] != "network-2" || p["binding:vif_type"] != "tap" {
				t.Fatalf("interface port after failover: %v", p)
			}
		})
	}
}

func TestMeteringLabelsAndRules(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		lbl := e.must(201, e.do(admin, "POST", "/v2.0/metering/metering-labels", map[string]any{"metering_label": map[string]any{"name": "web", "description": "d"}}), "metering_label")
		if lbl["shared"] != false || lbl["tenant_id"] != lbl["project_id"] || lbl["created_at"] != nil {
			t.Fatalf("label %v", lbl)
		}
		id := lbl["id"].(string)
		rule := func(body map[string]any) resp {
			body["metering_label_id"] = id
			return e.do(admin, "POST", "/v2.0/metering/metering-label-rules", map[string]any{"metering_label_rule": body})
		}
		r1 := e.must(201, rule(map[string]any{"direction": "ingress", "remote_ip_prefix": "198.51.100.0/24"}), "metering_label_rule")
		if r1["excluded"] != false || r1["source_ip_prefix"] != nil || r1["project_id"] != nil {
			t.Fatalf("rule %v", r1)
		}
		e.fault(rule(map[string]any{"direction": "ingress", "remote_ip_prefix": "198.51.100.128/25"}), 409, "MeteringLabelRuleOverlaps")
		e.must(201, rule(map[string]any{"direction": "egress", "remote_ip_prefix": "198.51.100.128/25"}), "metering_label_rule")
		e.must(201, rule(map[string]any{"direction": "ingress", "remote_ip_prefix": "198.51.100.7/32", "excluded": true}), "metering_label_rule")
		e.must(201, rule(map[string]any{"direction": "egress", "source_ip_prefix": "10.0.0.0/8", "destination_ip_prefix": "203.0.113.0/24"}), "metering_label_rule")
		e.fault(rule(map[string]any{"remote_ip_prefix": "10.1.0.0/16"}), 400, "HTTPBadRequest")
		e.fault(rule(map[string]any{"direction": "ingress"}), 400, "HTTPBadRequest")
		e.fault(rule(map[string]any{"direction": "ingress", "remote_ip_prefix": "10.1.0.0/16", "source_ip_prefix": "10.2.0.0/16"}), 400, "HTTPBadRequest")
		e.fault(rule(map[string]any{"direction": "sideways", "remote_ip_prefix": "10.1.0.0/16"}), 400, "HTTPBadRequest")
		e.fault(rule(map[string]any{"direction": "ingress", "remote_ip_prefix": "not-a-prefix"}), 400, "HTTPBadRequest")
		e.fault(e.do(admin, "POST", "/v2.0/metering/metering-label-rules", map[string]any{"metering_label_rule": map[string]any{
			"metering_label_id": "00000000-0000-0000-0000-000000000000", "direction": "ingress", "remote_ip_prefix": "10.1.0.0/16"}}), 404, "MeteringLabelNotFound")
		e.fault(e.do(admin, "PUT", "/v2.0/metering/metering-labels/"+id, map[string]any{"metering_label": map[string]any{"name": "x"}}), 400, "HTTPBadRequest")
		if l := e.list(admin, "/v2.0/metering/metering-label-rules?metering_label_id="+id, "metering_label_rules"); len(l) != 4 {
			t.Fatalf("%d rules, want 4", len(l))
		}
		if l := e.list(admin, "/v2.0/metering/metering-labels?id=33", "metering_labels"); len(l) != 0 {
			t.Fatalf("filter id=33 matched %v", l)
		}
		// Metering is the admin's: others see nothing and change nothing.
		if l := e.list(userA, "/v2.0/metering/metering-labels", "metering_labels"); len(l) != 0 {
			t.Fatalf("a project sees labels: %v", l)
		}
		e.fault(e.do(userA, "GET", "/v2.0/metering/metering-labels/"+id, nil), 404, "MeteringLabelNotFound")
		e.fault(e.do(userA, "DELETE", "/v2.0/metering/metering-labels/"+id, nil), 404, "MeteringLabelNotFound")
		e.fault(e.do(userA, "POST", "/v2.0/metering/metering-labels", map[string]any{"metering_label": map[string]any{"name": "mine"}}), 403, "PolicyNotAuthorized")
		e.fault(e.do(admin, "GET", "/v2.0/metering-labels", nil), 404, "HTTPNotFound")
		// A label goes with its rules.
		e.must(204, e.do(admin, "DELETE", "/v2.0/metering/metering-labels/"+id, nil), "")
		if l := e.list(admin, "/v2.0/metering/metering-label-rules", "metering_label_rules"); len(l) != 0 {
			t.Fatalf("rules outlived their label: %v", l)
		}
	})
}

// TestAccessAsExternal: an RBAC policy access_as_external for one project
// makes the network external for that project only: it sees it as
// external and puts a router's gateway and a floating IP on it; another
// project neither sees it nor uses it. router:external=false withdraws
// every external share.
func TestAccessAsExternal(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		nid := e.network(admin, map[string]any{"name": "provider"})["id"].(string)
		e.subnet(admin, map[string]any{"network_id": nid, "ip_version": 4, "cidr": "198.51.100.0/24", "enable_dhcp": false})
		e.must(201, e.do(admin, "POST", "/v2.0/rbac-policies", map[string]any{"rbac_policy": map[string]any{"object_type": "network",
			"object_id": nid, "action": "access_as_external", "target_tenant": projB}}), "rbac_policy")
		if n := e.must(200, e.do(userB, "GET", "/v2.0/networks/"+nid, nil), "network"); n["router:external"] != true || n["shared"] != false {
			t.Fatalf("the target project's view: %v", n)
		}
		gw := map[string]any{"router": map[string]any{"external_gateway_info": map[string]any{"network_id": nid}}}
		r := e.must(201, e.do(userB, "POST", "/v2.0/routers", gw), "router")
		if r["external_gateway_info"] == nil {
			t.Fatalf("router without its gateway: %v", r)
		}
		e.must(201, e.do(userB, "POST", "/v2.0/floatingips", map[string]any{"floatingip": map[string]any{"floating_network_id": nid}}), "floatingip")
		e.fault(e.do(userA, "GET", "/v2.0/networks/"+nid, nil), 404, "NetworkNotFound")
		if l := e.list(userA, "/v2.0/networks?router:external=true", "networks"); len(l) != 0 {
			t.Fatalf("another project lists the network: %v", l)
		}
		e.fault(e.do(userA, "POST", "/v2.0/routers", gw), 404, "NetworkNotFound")
		e.fault(e.do(userA, "POST", "/v2.0/floatingips", map[string]any{"floatingip": map[string]any{"floating_network_id": nid}}), 404, "NetworkNotFound")
		// A network nobody made external is no one's gateway.
		plain := e.network(admin, map[string]any{"name": "plain", "shared": true})["id"].(string)
		e.fault(e.do(userB, "POST", "/v2.0/routers", map[string]any{"router": map[string]any{"external_gateway_info": map[string]any{"network_id": plain}}}),
			400, "HTTPBadRequest")
		// Not external any more: the targeted share goes too.
		e.must(200, e.do(admin, "PUT", "/v2.0/networks/"+plain, map[string]any{"network": map[string]any{"router:external": true}}), "network")
		e.must(201, e.do(admin, "POST", "/v2.0/rbac-policies", map[string]any{"rbac_policy": map[string]any{"object_type": "network",
			"object_id": plain, "action": "access_as_external", "target_tenant": projA}}), "rbac_policy")
		e.must(200, e.do(admin, "PUT", "/v2.0/networks/"+plain, map[string]any{"network": map[string]any{"router:external": false}}), "network")
		if pols := e.list(admin, "/v2.0/rbac-policies?object_id="+plain+"&action=access_as_external", "rbac_policies"); len(pols) != 0 {
			t.Fatalf("external shares left: %v", pols)
		}
	})
}

// TestHARouters: an HA router with an interface goes to every L3 agent
// (up to the maximum), each instance with an HA port on the project's HA
// network; l3-agents shows each instance's state as agents report it, the
// router's ports follow the active instance, and the HA network goes with
// the project's last HA router.
func TestHARouters(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		report := func(typ, host string) string {
			return e.must(200, e.do(admin, "POST", "/neutrino/v1/agents/report", map[string]any{"agent": map[string]any{
				"agent_type": typ, "binary": "neutrino-agent", "host": host, "start_flag": true,
				"configurations": map[string]any{"tunnel_types": []any{"vxlan"}, "agent_mode": "legacy"}}}), "agent")["id"].(string)
		}
		for _, h := range []string{"network-1", "network-2"} {
			report("Neutrino host agent", h)
			report("L3 agent", h)
		}
		n := e.network(userA, nil)["id"].(string)
		sn := e.subnet(userA, map[string]any{"network_id": n, "ip_version": 4, "cidr": "10.42.0.0/24"})
		e.fault(e.do(userA, "POST", "/v2.0/routers", map[string]any{"router": map[string]any{"ha": true}}), 403, "PolicyNotAuthorized")
		r := e.must(201, e.do(admin, "POST", "/v2.0/routers", map[string]any{"router": map[string]any{"ha": true,
			"tenant_id": projA}}), "router")
		if r["ha"] != true {
			t.Fatalf("router: %v", r)
		}
		id := r["id"].(string)
		// The project's HA network is there from its first HA router on,
		// before any agent hosts it (as Neutron).
		if l := e.list(admin, "/v2.0/networks?name=HA+network+tenant+"+projA, "networks"); len(l) != 1 {
			t.Fatalf("no HA network with the project's first HA router: %v", l)
		}
		ri := e.must(200, e.do(userA, "PUT", "/v2.0/routers/"+id+"/add_router_interface", map[string]any{"subnet_id": sn["id"]}), "")
		// Neutron's device owner for an HA router's interfaces.
		if p := e.must(200, e.do(admin, "GET", "/v2.0/ports/"+ri["port_id"].(string), nil), "port"); p["device_owner"] != "network:ha_router_replicated_interface" {
			t.Fatalf("HA router interface: %v", p["device_owner"])
		}
		agents := e.list(admin, "/v2.0/routers/"+id+"/l3-agents", "agents")
		if len(agents) != 2 {
			t.Fatalf("an HA router went to %d agents, not both: %v", len(agents), agents)
		}
		for _, a := range agents {
			if s := a.(map[string]any)["ha_state"]; s != "standby" {
				t.Fatalf("ha_state before any report: %v", s)
			}
		}
		nets := e.list(admin, "/v2.0/networks?name=HA+network+tenant+"+projA, "networks")
		if len(nets) != 1 || nets[0].(map[string]any)["project_id"] != "" {
			t.Fatalf("HA network: %v", nets)
		}
		haNet := nets[0].(map[string]any)["id"].(string)
		hosts := map[any]bool{}
		for _, p := range e.list(admin, "/v2.0/ports?device_owner=network:router_ha_interface&device_id="+id, "ports") {
			p := p.(map[string]any)
			if p["network_id"] != haNet || p["name"] != "HA port tenant "+projA || p["project_id"] != "" {
				t.Fatalf("HA port: %v", p)
			}
			hosts[p["binding:host_id"]] = true
		}
		if !hosts["network-1"] || !hosts["network-2"] {
			t.Fatalf("HA ports are not one per instance's host: %v", hosts)
		}
		// Each instance's host state holds the router and its interface.
		for _, h := range []string{"network-1", "network-2"} {
			st := e.must(200, e.do(admin, "GET", "/neutrino/v1/hosts/"+h+"/state", nil), "")
			found := false
			for _, p := range st["ports"].([]any) {
				found = found || p.(map[string]any)["id"] == ri["port_id"]
			}
			if len(st["routers"].([]any)) != 1 || !found {
				t.Fatalf("%s's state lacks the HA router or its interface", h)
			}
		}
		// network-2 reports its instance active: the interface follows.
		e.fault(e.do(userA, "PUT", "/neutrino/v1/hosts/network-2/ha-routers", map[string]any{"states": map[string]any{id: "active"}}), 403, "PolicyNotAuthorized")
		e.fault(e.do(admin, "PUT", "/neutrino/v1/hosts/network-2/ha-routers", map[string]any{"states": map[string]any{id: "leading"}}), 400, "HTTPBadRequest")
		e.must(200, e.do(admin, "PUT", "/neutrino/v1/hosts/network-2/ha-routers", map[string]any{"states": map[string]any{id: "active"}}), "")
		for _, a := range e.list(admin, "/v2.0/routers/"+id+"/l3-agents", "agents") {
			a := a.(map[string]any)
			if want := map[any]string{"network-1": "standby", "network-2": "active"}[a["host"]]; a["ha_state"] != want {
				t.Fatalf("%s: ha_state %v, want %s", a["host"], a["ha_state"], want)
			}
		}
		if p := e.must(200, e.do(admin, "GET", "/v2.0/ports/"+ri["port_id"].(string), nil), "port"); p["binding:host_id"] != "network-2" {
			t.Fatalf("the interface did not follow the active instance: %v", p["binding:host_id"])
		}
		// network-1 reports active too (network-2 cut off, its agent not yet
		// counted dead): the instance active last has the ports.
		e.must(200, e.do(admin, "PUT", "/neutrino/v1/hosts/network-1/ha-routers", map[string]any{"states": map[string]any{id: "active"}}), "")
		if p := e.must(200, e.do(admin, "GET", "/v2.0/ports/"+ri["port_id"].(string), nil), "port"); p["binding:host_id"] != "network-1" {
			t.Fatalf("the interface did not follow the instance active last: %v", p["binding:host_id"])
		}
		// The partition heals and VRRP keeps network-2 (which became active
		// first): network-1 reports standby, and the ports go back.
		e.must(200, e.do(admin, "PUT", "/neutrino/v1/hosts/network-1/ha-routers", map[string]any{"states": map[string]any{id: "standby"}}), "")
		if p := e.must(200, e.do(admin, "GET", "/v2.0/ports/"+ri["port_id"].(string), nil), "port"); p["binding:host_id"] != "network-2" {
			t.Fatalf("the interface stayed with an instance now standby: %v", p["binding:host_id"])
		}
		e.must(200, e.do(admin, "PUT", "/neutrino/v1/hosts/network-1/ha-routers", map[string]any{"states": map[string]any{id: "active"}}), "")
		// An instance removed from its agent takes its HA port with it; added
		// back, it has one again.
		var l3n1 string
		for _, a := range e.list(admin, "/v2.0/routers/"+id+"/l3-agents", "agents") {
			if a := a.(map[string]any); a["host"] == "network-1" {
				l3n1 = a["id"].(string)
			}
		}
		haPortHosts := func() string {
			var hs []string
			for _, p := range e.list(admin, "/v2.0/ports?device_owner=network:router_ha_interface&device_id="+id, "ports") {
				hs = append(hs, p.(map[string]any)["binding:host_id"].(string))
			}
			sort.Strings(hs)
			return strings.Join(hs, ",")
		}
		e.must(204, e.do(admin, "DELETE", "/v2.0/agents/"+l3n1+"/l3-routers/"+id, nil), "")
		if h := haPortHosts(); h != "network-2" {
			t.Fatalf("HA ports after removing the instance on network-1: %s", h)
		}
		if p := e.must(200, e.do(admin, "GET", "/v2.0/ports/"+ri["port_id"].(string), nil), "port"); p["binding:host_id"] != "network-2" {
			t.Fatalf("the interface did not go to the remaining instance: %v", p["binding:host_id"])
		}
		e.must(201, e.do(admin, "POST", "/v2.0/agents/"+l3n1+"/l3-routers", map[string]any{"router_id": id}), "")
		e.fault(e.do(admin, "POST", "/v2.0/agents/"+l3n1+"/l3-routers", map[string]any{"router_id": id}), 409, "RouterHostedByL3Agent")
		if h := haPortHosts(); h != "network-1,network-2" {
			t.Fatalf("HA ports after adding the instance on network-1 back: %s", h)
		}
		// ha cannot change while the router is up; down, it can.
		e.fault(e.do(admin, "PUT", "/v2.0/routers/"+id, map[string]any{"router": map[string]any{"ha": false}}), 400, "BadRequest")
		e.must(200, e.do(admin, "PUT", "/v2.0/routers/"+id, map[string]any{"router": map[string]any{"admin_state_up": false}}), "router")
		e.must(200, e.do(admin, "PUT", "/v2.0/routers/"+id, map[string]any{"router": map[string]any{"ha": false}}), "router")
		if l := e.list(admin, "/v2.0/routers/"+id+"/l3-agents", "agents"); len(l) != 1 || l[0].(map[string]any)["ha_state"] != nil {
			t.Fatalf("a router made legacy keeps %d agents: %v", len(l), l)
		}
		if l := e.list(admin, "/v2.0/networks?name=HA+network+tenant+"+projA, "networks"); len(l) != 0 {
			t.Fatalf("the HA network outlived the project's last HA router: %v", l)
		}
		e.must(200, e.do(admin, "PUT", "/v2.0/routers/"+id, map[string]any{"router": map[string]any{"ha": true}}), "router")
		if l := e.list(admin, "/v2.0/routers/"+id+"/l3-agents", "agents"); len(l) != 2 {
			t.Fatalf("a router made HA again has %d agents", len(l))
		}
		e.must(200, e.do(userA, "PUT", "/v2.0/routers/"+id+"/remove_router_interface", map[string]any{"subnet_id": sn["id"]}), "")
		e.must(204, e.do(admin, "DELETE", "/v2.0/routers/"+id, nil), "")
		if l := e.list(admin, "/v2.0/networks?name=HA+network+tenant+"+projA, "networks"); len(l) != 0 {
			t.Fatalf("the HA network outlived the project's last HA router: %v", l)
		}
		if l := e.list(admin, "/v2.0/ports?device_owner=network:router_ha_interface", "ports"); len(l) != 0 {
			t.Fatalf("HA ports outlived their router: %v", l)
		}
	})
}
