package lbaas

import (
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/services/ml2"
	"neutrino/internal/store"
)

// vipOwner owns a load balancer's VIP port (Octavia's).
const vipOwner = "Octavia"

func invalid(format string, args ...any) error {
	return fault.New(http.StatusBadRequest, "ValidationException", "Validation failure: "+format, args...)
}

// Known reports whether a provider is one of the enabled ones.
func Known(provider string) bool { _, ok := providers[provider]; return ok }

// providers are the enabled providers. The haproxy provider's changes
// complete when a load-balancer agent has applied them (until the agents
// run it, they stay pending, as Octavia's with no controller).
var providers = map[string]string{ProviderNoop: "The no-op driver (the API alone: changes complete at once).",
	ProviderHAProxy: "haproxy in a namespace on a network host's load-balancer agent."}

func (s *Service) createLB(c *plugin.Ctx, in plugin.Object) (plugin.Object, error) {
	id := attr.Str(in, "id")
	provider := attr.Str(in, "provider")
	if fp, err := flavorProvider(c, in); err != nil {
		return nil, err
	} else if fp != "" {
		provider = fp
	}
	if provider == "" {
		provider = s.cfg.DefaultProvider
	}
	if _, ok := providers[provider]; !ok || provider == "" {
		return nil, fault.New(http.StatusBadRequest, "ProviderNotEnabled", "Provider '%s' is not enabled.", provider)
	}
	port, err := vipPort(c, in, id)
	if err != nil {
		return nil, err
	}
	o := plugin.Object{"id": id, "project_id": in["project_id"], "name": in["name"], "description": in["description"],
		"admin_state_up": in["admin_state_up"], "provisioning_status": pendingCreate, "operating_status": offline,
		"vip_port_id": port["id"], "vip_network_id": port["network_id"], "vip_qos_policy_id": in["vip_qos_policy_id"],
		"provider": provider, "flavor_id": in["flavor_id"], "availability_zone": in["availability_zone"], "tags": in["tags"]}
	for _, f := range attr.Objects(port, "fixed_ips") {
		if sid := attr.Str(in, "vip_subnet_id"); sid == "" || attr.Str(f, "subnet_id") == sid {
			o["vip_subnet_id"], o["vip_address"] = f["subnet_id"], f["ip_address"]
			break
		}
	}
	c.Stamp(o)
	if err := c.Put(LoadBalancer, o); err != nil {
		return nil, err
	}
	provide(c, id)
	return o, s.schedule(c, o)
}

// vipPort is the load balancer's VIP port: the one named, or a new one on
// the subnet (or the network's first subnet) named, at the address asked
// for.
func vipPort(c *plugin.Ctx, in plugin.Object, lbID string) (plugin.Object, error) {
	portID, netID, subnetID := attr.Str(in, "vip_port_id"), attr.Str(in, "vip_network_id"), attr.Str(in, "vip_subnet_id")
	if portID == "" && netID == "" && subnetID == "" {
		return nil, invalid("VIP must contain one of: vip_port_id, vip_network_id, vip_subnet_id.")
	}
	if portID != "" {
		p, err := c.Get(schema.Port, portID)
		if err != nil {
			return nil, invalid("Port %s not found.", portID)
		}
		if attr.Str(p, "device_id") != "" || attr.Str(p, "device_owner") != "" {
			return nil, fault.New(http.StatusConflict, "PortInUse", "Port %s is already in use.", portID)
		}
		p = schema.CloneObject(p)
		p["device_owner"], p["device_id"] = vipOwner, "lb-"+lbID
		return p, c.Touch(schema.Port, p)
	}
	if subnetID != "" {
		sn, err := c.Get(schema.Subnet, subnetID)
		if err != nil {
			return nil, invalid("Subnet %s not found.", subnetID)
		}
		if netID != "" && attr.Str(sn, "network_id") != netID {
			return nil, invalid("Subnet %s is not on network %s.", subnetID, netID)
		}
		netID = attr.Str(sn, "network_id")
	} else {
		if _, err := c.Get(schema.Network, netID); err != nil {
			return nil, invalid("Network %s not found.", netID)
		}
		subnets, err := c.Tx.List(schema.Subnet.Kind, store.Filter{Parent: netID})
		if err != nil {
			return nil, err
		}
		for _, sn := range subnets {
			if subnetID == "" || attr.Num(sn["ip_version"], 0) == 4 && !strings.Contains(attr.Str(sn, "cidr"), ":") {
				subnetID = attr.Str(sn, "id")
			}
		}
		if subnetID == "" {
			return nil, invalid("Supplied network does not contain a subnet.")
		}
	}
	fixed := map[string]any{"subnet_id": subnetID}
	if a := attr.Str(in, "vip_address"); a != "" {
		fixed["ip_address"] = a
	}
	p, err := ml2.ServicePort(c, netID, attr.Str(in, "project_id"), vipOwner, "lb-"+lbID, []any{fixed})
	if err != nil {
		return nil, err
	}
	p["name"] = "octavia-lb-" + lbID
	return p, c.Put(schema.Port, p)
}

// invalidState is Octavia's answer to a change of a load balancer that is
// pending (ImmutableObject is for what is made under one).
func invalidState(lb plugin.Object) error {
	return fault.New(http.StatusConflict, "InvalidState", "Invalid state %s of loadbalancer resource %s",
		attr.Str(lb, "provisioning_status"), attr.Str(lb, "id"))
}

// deleteLB starts a load balancer's delete (the provider completes it):
// one with listeners or pools only with cascade=true, which takes them
// along.
func deleteLB(c *plugin.Ctx, cur plugin.Object) error {
	id := attr.Str(cur, "id")
	if st := attr.Str(cur, "provisioning_status"); st != active && st != "ERROR" {
		return invalidState(cur)
	}
	cascade, _ := strconv.ParseBool(c.Query().Get("cascade")) // the client sends True
	for _, res := range under {
		objs, err := objectsUnder(c, res, id)
		if err != nil {
			return err
		}
		if len(objs) > 0 && !cascade && (res == Listener || res == Pool) {
			return invalid("Cannot delete Load Balancer %s - it has children", id)
		}
		for _, o := range objs {
			o = schema.CloneObject(o)
			o["provisioning_status"] = pendingDelete
			if err := c.Put(res, o); err != nil {
				return err
			}
		}
	}
	cur["provisioning_status"] = pendingDelete
	if err := c.Touch(LoadBalancer, cur); err != nil {
		return err
	}
	provide(c, id)
	return nil
}

// updateObject applies an update: the object and its load balancer
// PENDING_UPDATE until the provider completes.
func updateObject(res *schema.Resource) func(c *plugin.Ctx, cur, in plugin.Object) (plugin.Object, error) {
	return func(c *plugin.Ctx, cur, in plugin.Object) (plugin.Object, error) {
		lb, err := lbOf(c, res, cur)
		if err != nil {
			return nil, err
		}
		if res == LoadBalancer && attr.Str(lb, "provisioning_status") != active {
			return nil, invalidState(lb)
		}
		if err := lock(c, lb); err != nil {
			return nil, err
		}
		if res == Listener {
			if err := checkDefaultPool(c, cur, attr.Str(in, "default_pool_id")); err != nil {
				return nil, err
			}
		}
		merged := attr.Merge(cur, in)
		switch res {
		case Listener:
			err = checkListenerTLS(c, merged)
		case Pool:
			err = checkPoolTLS(c, merged)
		}
		if err != nil {
			return nil, err
		}
		merged["provisioning_status"] = pendingUpdate
		return merged, nil
	}
}

// deleteObject starts an object's delete (a pool's members and health
// monitor with it).
func deleteObject(res *schema.Resource) func(c *plugin.Ctx, cur plugin.Object) error {
	return func(c *plugin.Ctx, cur plugin.Object) error {
		lb, err := lbOf(c, res, cur)
		if err != nil {
			return err
		}
		if err := lock(c, lb); err != nil {
			return err
		}
		// What is under it goes with it.
		if err := deleteBelow(c, res, attr.Str(cur, "id")); err != nil {
			return err
		}
		if res == Pool {
			// Listeners using it as default pool no longer do.
			ls, err := c.Tx.List(Listener.Kind, store.Filter{Parent: attr.Str(cur, "loadbalancer_id")})
			if err != nil {
				return err
			}
			for _, l := range ls {
				if attr.Str(l, "default_pool_id") == attr.Str(cur, "id") {
					l = schema.CloneObject(l)
					l["default_pool_id"] = nil
					if err := c.Put(Listener, l); err != nil {
						return err
					}
				}
			}
		}
		cur["provisioning_status"] = pendingDelete
		return c.Put(res, cur)
	}
}

// below are the kinds under each kind, deleted with it.
var below = map[*schema.Resource][]*schema.Resource{}

func init() {
	below[Pool] = []*schema.Resource{Member, HealthMonitor}
	below[Listener] = []*schema.Resource{L7Policy}
	below[L7Policy] = []*schema.Resource{L7Rule}
}

// deleteBelow marks everything under an object PENDING_DELETE.
func deleteBelow(c *plugin.Ctx, res *schema.Resource, id string) error {
	for _, kind := range below[res] {
		l, err := c.Tx.List(kind.Kind, store.Filter{Parent: id})
		if err != nil {
			return err
		}
		for _, o := range l {
			if err := deleteBelow(c, kind, attr.Str(o, "id")); err != nil {
				return err
			}
			o = schema.CloneObject(o)
			o["provisioning_status"] = pendingDelete
			if err := c.Put(kind, o); err != nil {
				return err
			}
		}
	}
	return nil
}

// child stamps a new object under a load balancer (locked for it).
func child(c *plugin.Ctx, res *schema.Resource, lb, in plugin.Object, o plugin.Object) (plugin.Object, error) {
	if err := lock(c, lb); err != nil {
		return nil, err
	}
	o["id"], o["project_id"] = in["id"], lb["project_id"]
	o["provisioning_status"], o["operating_status"] = pendingCreate, offline
	for _, k := range []string{"name", "description", "admin_state_up", "tags"} {
		if res.Attr(k) != nil {
			o[k] = in[k]
		}
	}
	c.Stamp(o)
	return o, c.Put(res, o)
}

// loadBalancer is the load balancer a request names, as the caller sees it.
func loadBalancer(c *plugin.Ctx, id string) (plugin.Object, error) {
	lb, err := c.Get(LoadBalancer, id)
	if err != nil {
		return nil, err
	}
	if attr.Str(lb, "provisioning_status") == pendingDelete {
		return nil, LoadBalancer.NotFoundError(id)
	}
	return lb, nil
}

func (s *Service) createListener(c *plugin.Ctx, in plugin.Object) (plugin.Object, error) {
	lb, err := loadBalancer(c, attr.Str(in, "loadbalancer_id"))
	if err != nil {
		return nil, err
	}
	ls, err := c.Tx.List(Listener.Kind, store.Filter{Parent: attr.Str(lb, "id")})
	if err != nil {
		return nil, err
	}
	for _, l := range ls {
		if attr.Num(l["protocol_port"], 0) == attr.Num(in["protocol_port"], -1) && sameL4(attr.Str(l, "protocol"), attr.Str(in, "protocol")) {
			return nil, fault.New(http.StatusConflict, "DuplicateListenerEntry",
				"Another Listener on this Load Balancer is already using protocol_port %d", int(attr.Num(in["protocol_port"], 0)))
		}
	}
	if err := checkDefaultPool(c, in, attr.Str(in, "default_pool_id")); err != nil {
		return nil, err
	}
	o := plugin.Object{}
	for _, a := range Listener.Attrs {
		if a.Post {
			o[a.Name] = in[a.Name]
		}
	}
	if err := checkListenerTLS(c, o); err != nil {
		return nil, err
	}
	return child(c, Listener, lb, in, o)
}

// sameL4 reports whether two listener protocols share the transport (a
// UDP and a TCP listener may use the same port).
func sameL4(a, b string) bool {
	udp := func(p string) bool { return p == "UDP" }
	sctp := func(p string) bool { return p == "SCTP" }
	return udp(a) == udp(b) && sctp(a) == sctp(b)
}

// checkDefaultPool checks a listener's default pool: one of its load
// balancer's.
func checkDefaultPool(c *plugin.Ctx, listener plugin.Object, poolID string) error {
	if poolID == "" {
		return nil
	}
	p, err := c.Tx.Get(Pool.Kind, poolID)
	if err != nil || attr.Str(p, "loadbalancer_id") != attr.Str(listener, "loadbalancer_id") {
		return invalid("Pool %s not found on the listener's load balancer.", poolID)
	}
	return nil
}

func (s *Service) createPool(c *plugin.Ctx, in plugin.Object) (plugin.Object, error) {
	lbID, listenerID := attr.Str(in, "loadbalancer_id"), attr.Str(in, "listener_id")
	var listener plugin.Object
	if listenerID != "" {
		l, err := c.Get(Listener, listenerID)
		if err != nil {
			return nil, err
		}
		if lbID != "" && lbID != attr.Str(l, "loadbalancer_id") {
			return nil, invalid("Listener %s is not on load balancer %s.", listenerID, lbID)
		}
		if attr.Str(l, "default_pool_id") != "" {
			return nil, fault.New(http.StatusConflict, "DuplicatePoolEntry", "This listener already has a default pool")
		}
		listener, lbID = schema.CloneObject(l), attr.Str(l, "loadbalancer_id")
	}
	if lbID == "" {
		return nil, invalid("loadbalancer_id or listener_id must be specified.")
	}
	lb, err := loadBalancer(c, lbID)
	if err != nil {
		return nil, err
	}
	if sp, ok := in["session_persistence"].(map[string]any); ok {
		switch attr.Str(sp, "type") {
		case "SOURCE_IP", "HTTP_COOKIE", "APP_COOKIE":
		default:
			return nil, invalid("session_persistence type must be SOURCE_IP, HTTP_COOKIE or APP_COOKIE.")
		}
		if attr.Str(sp, "type") == "APP_COOKIE" && attr.Str(sp, "cookie_name") == "" {
			return nil, invalid("session_persistence cookie_name is required for APP_COOKIE.")
		}
	}
	o := plugin.Object{"loadbalancer_id": lbID}
	for _, a := range Pool.Attrs {
		if a.Post && a.Name != "listener_id" && a.Name != "loadbalancer_id" {
			o[a.Name] = in[a.Name]
		}
	}
	if err := checkPoolTLS(c, o); err != nil {
		return nil, err
	}
	o, err = child(c, Pool, lb, in, o)
	if err != nil {
		return nil, err
	}
	if listener != nil {
		listener["default_pool_id"] = o["id"]
		if err := c.Put(Listener, listener); err != nil {
			return nil, err
		}
	}
	return o, nil
}

func (s *Service) createMember(c *plugin.Ctx, in plugin.Object) (plugin.Object, error) {
	pool, err := c.Get(Pool, attr.Str(in, "pool_id"))
	if err != nil {
		return nil, err
	}
	lb, err := loadBalancer(c, attr.Str(pool, "loadbalancer_id"))
	if err != nil {
		return nil, err
	}
	addr, _ := netip.ParseAddr(attr.Str(in, "address"))
	members, err := c.Tx.List(Member.Kind, store.Filter{Parent: attr.Str(pool, "id")})
	if err != nil {
		return nil, err
	}
	for _, m := range members {
		a, _ := netip.ParseAddr(attr.Str(m, "address"))
		if a == addr && attr.Num(m["protocol_port"], 0) == attr.Num(in["protocol_port"], -1) {
			return nil, fault.New(http.StatusConflict, "DuplicateMemberEntry",
				"Another member on this pool is already using ip %s on protocol_port %d", addr, int(attr.Num(in["protocol_port"], 0)))
		}
	}
	if sid := attr.Str(in, "subnet_id"); sid != "" {
		if _, err := c.Get(schema.Subnet, sid); err != nil {
			return nil, invalid("Subnet %s not found.", sid)
		}
	}
	o := plugin.Object{"pool_id": pool["id"]}
	for _, a := range Member.Attrs {
		if a.Post {
			o[a.Name] = in[a.Name]
		}
	}
	o, err = child(c, Member, lb, in, o)
	if err != nil {
		return nil, err
	}
	if hms, _ := c.Tx.List(HealthMonitor.Kind, store.Filter{Parent: attr.Str(pool, "id")}); len(hms) == 0 {
		o["operating_status"] = noMonitor
		return o, c.Put(Member, o)
	}
	return o, nil
}

func (s *Service) createHM(c *plugin.Ctx, in plugin.Object) (plugin.Object, error) {
	pool, err := c.Get(Pool, attr.Str(in, "pool_id"))
	if err != nil {
		return nil, err
	}
	if hms, _ := c.Tx.List(HealthMonitor.Kind, store.Filter{Parent: attr.Str(pool, "id")}); len(hms) > 0 {
		return nil, fault.New(http.StatusConflict, "DuplicateHealthMonitor", "This pool already has a health monitor")
	}
	lb, err := loadBalancer(c, attr.Str(pool, "loadbalancer_id"))
	if err != nil {
		return nil, err
	}
	if attr.Num(in["timeout"], 0) > attr.Num(in["delay"], 0) {
		return nil, invalid("The timeout %d must be no greater than the delay %d.", int(attr.Num(in["timeout"], 0)), int(attr.Num(in["delay"], 0)))
	}
	o := plugin.Object{}
	for _, a := range HealthMonitor.Attrs {
		if a.Post {
			o[a.Name] = in[a.Name]
		}
	}
	isHTTP := attr.Str(in, "type") == "HTTP" || attr.Str(in, "type") == "HTTPS"
	for k, def := range map[string]any{"http_method": "GET", "url_path": "/", "expected_codes": "200"} {
		if schema.IsUnset(o[k]) {
			o[k] = nil
			if isHTTP {
				o[k] = def
			}
		} else if !isHTTP && o[k] != nil {
			return nil, invalid("%s is only valid for HTTP and HTTPS health monitors.", k)
		}
	}
	return child(c, HealthMonitor, lb, in, o)
}

// ids renders objects as [{"id": ...}].
func ids(objs []plugin.Object) []any {
	out := make([]any, 0, len(objs))
	for _, o := range objs {
		out = append(out, map[string]any{"id": o["id"]})
	}
	return out
}

// clone copies o for its presentation, with Octavia's timestamps (no
// zone designator: "2026-12-03T19:36:08").
func clone(o plugin.Object, extra int) plugin.Object {
	cp := make(plugin.Object, len(o)+extra)
	for k, v := range o {
		cp[k] = v
	}
	for _, k := range []string{"created_at", "updated_at"} {
		if s, ok := cp[k].(string); ok {
			cp[k] = strings.TrimSuffix(s, "Z")
		}
	}
	return cp
}

func presentMember(c *plugin.Ctx, o plugin.Object) plugin.Object { return clone(o, 0) }

// presentLB adds the load balancer's listeners and pools.
func presentLB(c *plugin.Ctx, o plugin.Object) plugin.Object {
	cp := clone(o, 4)
	ls, _ := c.Tx.List(Listener.Kind, store.Filter{Parent: attr.Str(o, "id")})
	ps, _ := c.Tx.List(Pool.Kind, store.Filter{Parent: attr.Str(o, "id")})
	cp["listeners"], cp["pools"] = ids(ls), ids(ps)
	cp["additional_vips"], cp["tenant_id"] = []any{}, o["project_id"]
	return cp
}

func presentListener(c *plugin.Ctx, o plugin.Object) plugin.Object {
	cp := clone(o, 2)
	cp["loadbalancers"] = []any{map[string]any{"id": o["loadbalancer_id"]}}
	ps, _ := c.Tx.List(L7Policy.Kind, store.Filter{Parent: attr.Str(o, "id")})
	cp["l7policies"] = ids(ps)
	return cp
}

func presentPool(c *plugin.Ctx, o plugin.Object) plugin.Object {
	cp := clone(o, 4)
	id := attr.Str(o, "id")
	cp["loadbalancers"] = []any{map[string]any{"id": o["loadbalancer_id"]}}
	ls, _ := c.Tx.List(Listener.Kind, store.Filter{Parent: attr.Str(o, "loadbalancer_id")})
	var using []plugin.Object
	for _, l := range ls {
		if attr.Str(l, "default_pool_id") == id {
			using = append(using, l)
		}
	}
	cp["listeners"] = ids(using)
	ms, _ := c.Tx.List(Member.Kind, store.Filter{Parent: id})
	cp["members"] = ids(ms)
	cp["healthmonitor_id"] = nil
	if hms, _ := c.Tx.List(HealthMonitor.Kind, store.Filter{Parent: id}); len(hms) > 0 {
		cp["healthmonitor_id"] = hms[0]["id"]
	}
	return cp
}

func presentHM(c *plugin.Ctx, o plugin.Object) plugin.Object {
	cp := clone(o, 1)
	cp["pools"] = []any{map[string]any{"id": o["pool_id"]}}
	return cp
}

// statusTree answers GET /loadbalancers/{id}/status: the load balancer's
// statuses and those of everything under it.
func statusTree(c *plugin.Ctx, id string) (any, error) {
	lb, err := c.Get(LoadBalancer, id)
	if err != nil {
		return nil, err
	}
	st := func(o plugin.Object, extra map[string]any) map[string]any {
		m := map[string]any{"id": o["id"], "name": o["name"], "provisioning_status": o["provisioning_status"],
			"operating_status": o["operating_status"]}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	pools, err := c.Tx.List(Pool.Kind, store.Filter{Parent: id})
	if err != nil {
		return nil, err
	}
	poolStatus := map[string]any{}
	for _, p := range pools {
		ms, _ := c.Tx.List(Member.Kind, store.Filter{Parent: attr.Str(p, "id")})
		members := []any{}
		for _, m := range ms {
			members = append(members, st(m, map[string]any{"address": m["address"], "protocol_port": m["protocol_port"]}))
		}
		extra := map[string]any{"members": members}
		if hms, _ := c.Tx.List(HealthMonitor.Kind, store.Filter{Parent: attr.Str(p, "id")}); len(hms) > 0 {
			extra["health_monitor"] = st(hms[0], map[string]any{"type": hms[0]["type"]})
		}
		poolStatus[attr.Str(p, "id")] = st(p, extra)
	}
	ls, err := c.Tx.List(Listener.Kind, store.Filter{Parent: id})
	if err != nil {
		return nil, err
	}
	listeners := []any{}
	for _, l := range ls {
		pl := []any{}
		if p, ok := poolStatus[attr.Str(l, "default_pool_id")]; ok {
			pl = append(pl, p)
		}
		listeners = append(listeners, st(l, map[string]any{"pools": pl}))
	}
	return map[string]any{"statuses": map[string]any{"loadbalancer": st(lb, map[string]any{"listeners": listeners})}}, nil
}
