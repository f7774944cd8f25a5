package api

import (
	"fmt"
	"strings"
	"testing"
)

// TestDVRRouters: distributed routers through the API, against L3 agents
// in each mode. The scheduler sends centralized routers to legacy and
// dvr_snat agents and a distributed router's SNAT part to dvr_snat ones
// only, with Neutron's errors for a manual mismatch; a distributed
// router's interfaces are distributed ports; its SNAT ports follow its
// interfaces and gateway; a VM's host gets the router (with each subnet's
// SNAT hop) and its DVR MAC in its state, and, once the VM has a floating
// IP, a port on the external network that follows the VM; migration to
// a centralized router and delete clean up after it.
func TestDVRRouters(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *testEnv) {
		agentIDs := map[string]string{}
		report := func(typ, host, mode string) {
			a := e.must(200, e.do(admin, "POST", "/neutrino/v1/agents/report", map[string]any{"agent": map[string]any{
				"agent_type": typ, "binary": "neutrino-agent", "host": host, "start_flag": true,
				"configurations": map[string]any{"tunnel_types": []any{"vxlan"}, "agent_mode": mode, "tunneling_ip": "10.0.0.1"}}}), "agent")
			if typ == "L3 agent" {
				agentIDs[host] = a["id"].(string)
			}
		}
		for host, mode := range map[string]string{"network-1": "dvr_snat", "compute-1": "dvr", "legacy-1": "legacy"} {
			report("Neutrino host agent", host, "")
			report("L3 agent", host, mode)
		}
		ext := e.network(admin, map[string]any{"router:external": true})["id"].(string)
		e.subnet(admin, map[string]any{"network_id": ext, "ip_version": 4, "cidr": "203.0.113.0/24"})
		var subnets []string
		var nets []string
		for i := 0; i < 2; i++ {
			n := e.network(userA, nil)["id"].(string)
			sn := e.subnet(userA, map[string]any{"network_id": n, "ip_version": 4, "cidr": fmt.Sprintf("10.8%d.0.0/24", i)})
			nets, subnets = append(nets, n), append(subnets, sn["id"].(string))
		}
		hosts := func(rid string) []string {
			var out []string
			for _, a := range e.list(admin, "/v2.0/routers/"+rid+"/l3-agents", "agents") {
				out = append(out, a.(map[string]any)["host"].(string))
			}
			return out
		}
		ports := func(rid, owner string) []map[string]any {
			var out []map[string]any
			for _, p := range e.list(admin, "/v2.0/ports?device_id="+rid+"&device_owner="+owner, "ports") {
				out = append(out, p.(map[string]any))
			}
			return out
		}

		// A centralized router never goes to the dvr agent, nor by hand.
		legacy := e.must(201, e.do(admin, "POST", "/v2.0/routers", map[string]any{"router": map[string]any{"tenant_id": projA,
			"distributed": false}}), "router")["id"].(string)
		e.must(200, e.do(userA, "PUT", "/v2.0/routers/"+legacy+"/add_router_interface", map[string]any{"subnet_id": subnets[0]}), "")
		if h := hosts(legacy); len(h) != 1 || h[0] == "compute-1" {
			t.Fatalf("a centralized router went to %v", h)
		}
		e.fault(e.do(admin, "POST", "/v2.0/agents/"+agentIDs["compute-1"]+"/l3-routers", map[string]any{"router_id": legacy}), 409, "DVRL3CannotAssignToDvrAgent")
		e.must(200, e.do(userA, "PUT", "/v2.0/routers/"+legacy+"/remove_router_interface", map[string]any{"subnet_id": subnets[0]}), "")

		// A distributed router without a gateway: no central part.
		e.fault(e.do(userA, "POST", "/v2.0/routers", map[string]any{"router": map[string]any{"distributed": true}}), 403, "PolicyNotAuthorized")
		r := e.must(201, e.do(admin, "POST", "/v2.0/routers", map[string]any{"router": map[string]any{"tenant_id": projA,
			"distributed": true}}), "router")
		rid := r["id"].(string)
		for _, sn := range subnets {
			e.must(200, e.do(userA, "PUT", "/v2.0/routers/"+rid+"/add_router_interface", map[string]any{"subnet_id": sn}), "")
		}
		if h := hosts(rid); len(h) != 0 {
			t.Fatalf("a distributed router without a gateway is hosted by %v", h)
		}
		// Neutron's device owner for them, and no plain interfaces.
		if l := ports(rid, "network:router_interface"); len(l) != 0 {
			t.Fatalf("plain interfaces of a distributed router: %v", l)
		}
		for _, p := range ports(rid, "network:router_interface_distributed") {
			if p["binding:vif_type"] != "distributed" || p["binding:host_id"] != "" || p["status"] != "DOWN" {
				t.Fatalf("distributed interface: %v", p)
			}
		}
		if l := ports(rid, "network:router_centralized_snat"); len(l) != 0 {
			t.Fatalf("SNAT ports without a gateway: %v", l)
		}
		// With a gateway: the SNAT part on the dvr_snat agent, with one
		// SNAT port per interface there.
		e.must(200, e.do(admin, "PUT", "/v2.0/routers/"+rid, map[string]any{"router": map[string]any{
			"external_gateway_info": map[string]any{"network_id": ext}}}), "router")
		if h := hosts(rid); len(h) != 1 || h[0] != "network-1" {
			t.Fatalf("a distributed router's SNAT part went to %v", h)
		}
		snat := ports(rid, "network:router_centralized_snat")
		if len(snat) != 2 {
			t.Fatalf("SNAT ports: %v", snat)
		}
		for _, p := range snat {
			if p["binding:host_id"] != "network-1" || p["project_id"] != "" {
				t.Fatalf("SNAT port: %v", p)
			}
		}
		e.fault(e.do(admin, "DELETE", "/v2.0/ports/"+snat[0]["id"].(string), nil), 409, "L3PortInUse")
		e.fault(e.do(admin, "POST", "/v2.0/agents/"+agentIDs["legacy-1"]+"/l3-routers", map[string]any{"router_id": rid}), 409, "RouterL3AgentMismatch")

		// A VM on compute-1: its state has the router, each subnet's SNAT
		// hop, the interfaces and the host's DVR MAC.
		vm := e.must(201, e.do(admin, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": nets[0],
			"tenant_id": projA, "binding:host_id": "compute-1", "device_owner": "compute:nova"}}), "port")
		st := e.must(200, e.do(admin, "GET", "/neutrino/v1/hosts/compute-1/state", nil), "")
		routers, _ := st["routers"].([]any)
		if len(routers) != 1 || len(routers[0].(map[string]any)["snat_hops"].([]any)) != 2 {
			t.Fatalf("compute-1's routers: %v", routers)
		}
		var ifaces int
		for _, p := range st["ports"].([]any) {
			if p.(map[string]any)["device_owner"] == "network:router_interface_distributed" {
				ifaces++
			}
		}
		macs, _ := st["dvr_macs"].([]any)
		if ifaces != 2 || len(macs) != 1 || !strings.HasPrefix(fmt.Sprint(macs[0].(map[string]any)["mac_address"]), "fa:16:3f:") {
			t.Fatalf("compute-1's state: %d interfaces, DVR MACs %v", ifaces, macs)
		}
		if st := e.must(200, e.do(admin, "GET", "/neutrino/v1/hosts/legacy-1/state", nil), ""); strings.Contains(fmt.Sprint(st["routers"]), rid) {
			t.Fatalf("legacy-1 has the distributed router: %v", st["routers"])
		}
		// A floating IP: served on compute-1, through its port on the
		// external network (device_id its L3 agent), which follows the VM.
		fip := e.must(201, e.do(userA, "POST", "/v2.0/floatingips", map[string]any{"floatingip": map[string]any{
			"floating_network_id": ext, "port_id": vm["id"]}}), "floatingip")
		gw := e.list(admin, "/v2.0/ports?device_owner=network:floatingip_agent_gateway", "ports")
		if len(gw) != 1 || gw[0].(map[string]any)["binding:host_id"] != "compute-1" || gw[0].(map[string]any)["device_id"] != agentIDs["compute-1"] {
			t.Fatalf("floating IP agent gateway ports: %v", gw)
		}
		if st := e.must(200, e.do(admin, "GET", "/neutrino/v1/hosts/network-1/state", nil), ""); st["floatingips"] != nil {
			t.Fatalf("network-1 serves the floating IP of a VM on compute-1: %v", st["floatingips"])
		}
		if st := e.must(200, e.do(admin, "GET", "/neutrino/v1/hosts/compute-1/state", nil), ""); len(st["floatingips"].([]any)) != 1 {
			t.Fatalf("compute-1's floating IPs: %v", st["floatingips"])
		}
		e.must(200, e.do(admin, "PUT", "/v2.0/ports/"+vm["id"].(string), map[string]any{"port": map[string]any{"binding:host_id": "network-1"}}), "port")
		gw = e.list(admin, "/v2.0/ports?device_owner=network:floatingip_agent_gateway", "ports")
		if len(gw) != 1 || gw[0].(map[string]any)["binding:host_id"] != "network-1" {
			t.Fatalf("the floating IP's agent gateway port did not follow the VM: %v", gw)
		}
		// On a legacy host the floating IP is served centrally.
		e.must(200, e.do(admin, "PUT", "/v2.0/ports/"+vm["id"].(string), map[string]any{"port": map[string]any{"binding:host_id": "legacy-1"}}), "port")
		if gw := e.list(admin, "/v2.0/ports?device_owner=network:floatingip_agent_gateway", "ports"); len(gw) != 0 {
			t.Fatalf("agent gateway ports for a VM on a legacy host: %v", gw)
		}
		if st := e.must(200, e.do(admin, "GET", "/neutrino/v1/hosts/network-1/state", nil), ""); len(st["floatingips"].([]any)) != 1 {
			t.Fatalf("network-1 does not serve the floating IP of a VM on a legacy host: %v", st["floatingips"])
		}
		e.must(200, e.do(admin, "PUT", "/v2.0/ports/"+vm["id"].(string), map[string]any{"port": map[string]any{"binding:host_id": "compute-1"}}), "port")
		e.must(200, e.do(userA, "PUT", "/v2.0/floatingips/"+fip["id"].(string), map[string]any{"floatingip": map[string]any{"port_id": nil}}), "floatingip")
		if gw := e.list(admin, "/v2.0/ports?device_owner=network:floatingip_agent_gateway", "ports"); len(gw) != 0 {
			t.Fatalf("agent gateway ports with no floating IP: %v", gw)
		}
		// An interface goes: its SNAT port with it.
		e.must(200, e.do(userA, "PUT", "/v2.0/routers/"+rid+"/remove_router_interface", map[string]any{"subnet_id": subnets[1]}), "")
		if l := ports(rid, "network:router_centralized_snat"); len(l) != 1 || l[0]["network_id"] != nets[0] {
			t.Fatalf("SNAT ports after an interface went: %v", l)
		}
		// To a centralized router, down first (Neutron's rule): the SNAT
		// ports go and the interface is bound to the router's host.
		e.fault(e.do(admin, "PUT", "/v2.0/routers/"+rid, map[string]any{"router": map[string]any{"distributed": false}}), 400, "BadRequest")
		e.must(200, e.do(admin, "PUT", "/v2.0/routers/"+rid, map[string]any{"router": map[string]any{"admin_state_up": false}}), "router")
		e.must(200, e.do(admin, "PUT", "/v2.0/routers/"+rid, map[string]any{"router": map[string]any{"distributed": false}}), "router")
		if l := ports(rid, "network:router_centralized_snat"); len(l) != 0 {
			t.Fatalf("SNAT ports of a centralized router: %v", l)
		}
		h := hosts(rid)
		if len(h) != 1 || h[0] == "compute-1" {
			t.Fatalf("the centralized router went to %v", h)
		}
		for _, p := range ports(rid, "network:router_interface") {
			if p["binding:host_id"] != h[0] || p["binding:vif_type"] == "distributed" {
				t.Fatalf("interface of the centralized router: %v", p)
			}
		}
		// HA (still down): its interfaces take the HA owner; then back to
		// distributed, and deleted: nothing of it is left.
		e.must(200, e.do(admin, "PUT", "/v2.0/routers/"+rid, map[string]any{"router": map[string]any{"ha": true}}), "router")
		if l := ports(rid, "network:ha_router_replicated_interface"); len(l) != 1 {
			t.Fatalf("interfaces of the router made HA: %v", e.list(admin, "/v2.0/ports?device_id="+rid, "ports"))
		}
		e.must(200, e.do(admin, "PUT", "/v2.0/routers/"+rid, map[string]any{"router": map[string]any{"ha": false, "distributed": true}}), "router")
		if l := ports(rid, "network:router_interface_distributed"); len(l) != 1 {
			t.Fatalf("interfaces of the router distributed again: %v", e.list(admin, "/v2.0/ports?device_id="+rid, "ports"))
		}
		if h := hosts(rid); len(h) != 1 || h[0] != "network-1" {
			t.Fatalf("distributed again, the router's SNAT part went to %v", h)
		}
		if l := ports(rid, "network:router_centralized_snat"); len(l) != 1 {
			t.Fatalf("SNAT ports, distributed again: %v", l)
		}
		e.must(200, e.do(userA, "PUT", "/v2.0/routers/"+rid+"/remove_router_interface", map[string]any{"subnet_id": subnets[0]}), "")
		e.must(200, e.do(admin, "PUT", "/v2.0/routers/"+rid, map[string]any{"router": map[string]any{"external_gateway_info": nil}}), "router")
		e.must(204, e.do(admin, "DELETE", "/v2.0/routers/"+rid, nil), "")
		if l := e.list(admin, "/v2.0/ports?device_id="+rid, "ports"); len(l) != 0 {
			t.Fatalf("ports of a deleted router: %v", l)
		}
	})
}
