#!/usr/bin/env bash
# The openstack CLI against a running Neutrino with built-in identity, as the
# demo project and as admin: create, list, show, update and delete networks,
# subnets (IPv4 and IPv6 SLAAC), ports with fixed IPs, security groups and
# rules, routers (HA ones with their agents' states, distributed ones),
# floating IPs and load balancers; the
# demo project sees its own and shared resources only.
#   test/cli/walkthrough.sh DATA_DIR   (the server's --data-dir, with openrc-*)
set -euo pipefail
DATA="${1:?data dir}"
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH   # Debian's python3 for the CLI
S=$$
os() { openstack "$@"; }
fail() { echo "cli: FAIL: $*"; exit 1; }
as_demo() { (. "$DATA/openrc-demo"; os "$@"); }
as_admin() { (. "$DATA/openrc-admin"; os "$@"); }

as_demo network create "net$S" -f value -c id >/dev/null
as_demo subnet create --network "net$S" --subnet-range 10.77.0.0/24 "v4$S" -f value -c id >/dev/null
as_demo subnet create --network "net$S" --ip-version 6 --ipv6-ra-mode slaac --ipv6-address-mode slaac \
  --subnet-range 2001:db8:77::/64 "v6$S" -f value -c id >/dev/null
ips=$(as_demo port create --network "net$S" --fixed-ip subnet="v4$S",ip-address=10.77.0.10 "port$S" -f value -c fixed_ips)
echo "$ips" | grep -q "10.77.0.10" || fail "fixed IP missing: $ips"
echo "$ips" | grep -q "2001:db8:77:0:" || fail "SLAAC address missing: $ips"
as_demo port set --name "port$S-renamed" "port$S"
# (outputs are captured before grep: grep -q closing the pipe early would
# fail the CLI with SIGPIPE under pipefail)
name=$(as_demo port show "port$S-renamed" -f value -c name)
[ "$name" = "port$S-renamed" ] || fail "port rename: $name"
as_demo network set --description "described" "net$S"
[ "$(as_demo network show "net$S" -f value -c description)" = described ] || fail "network update"
as_demo security group create "sg$S" -f value -c id >/dev/null
as_demo security group rule create --protocol tcp --dst-port 22 --remote-ip 0.0.0.0/0 --ingress "sg$S" -f value -c id >/dev/null
as_demo port set --security-group "sg$S" "port$S-renamed"
sgid=$(as_demo security group show "sg$S" -f value -c id)
groups=$(as_demo port show "port$S-renamed" -f json -c security_group_ids)
[[ "$groups" == *"$sgid"* ]] || fail "port security groups: $groups"
protos=$(as_demo security group rule list "sg$S" -f value -c "IP Protocol")
[[ "$protos" == *tcp* ]] || fail "rule list: $protos"

# Isolation: admin's private network is invisible to demo, a shared one is visible.
as_admin network create "private$S" -f value -c id >/dev/null
as_admin network create --share "shared$S" -f value -c id >/dev/null
has() { printf '%s\n' "$1" | grep -qx "$2"; }
demo_nets=$(as_demo network list -f value -c Name)
has "$demo_nets" "shared$S" || fail "demo cannot see the shared network"
has "$demo_nets" "private$S" && fail "demo sees admin's private network"
has "$demo_nets" "net$S" || fail "demo cannot see its own network"
admin_nets=$(as_admin network list -f value -c Name)
has "$admin_nets" "net$S" || fail "admin cannot see demo's network"

# Routers and floating IPs: demo routes its subnet to an external network;
# admin picks a floating IP address and maps it to demo's port.
as_admin network create --external "ext$S" -f value -c id >/dev/null
as_admin subnet create --network "ext$S" --subnet-range 198.51.100.0/24 \
  --allocation-pool start=198.51.100.100,end=198.51.100.250 --no-dhcp "ext$S-v4" -f value -c id >/dev/null
as_demo router create "r$S" -f value -c id >/dev/null
as_demo router set --external-gateway "ext$S" "r$S"
as_demo router add subnet "r$S" "v4$S"
gw=$(as_demo router show "r$S" -f json -c external_gateway_info)
[[ "$gw" == *198.51.100.* ]] || fail "router gateway: $gw"
ifs=$(as_demo router show "r$S" -f json -c interfaces_info)
[[ "$ifs" == *10.77.0.1\"* ]] || fail "router interface: $ifs"
portid=$(as_demo port show "port$S-renamed" -f value -c id)
demo=$(as_admin project show demo -f value -c id)
fip=$(as_admin floating ip create --project "$demo" --floating-ip-address 198.51.100.50 --port "$portid" "ext$S" -f json)
[[ "$fip" == *'"fixed_ip_address": "10.77.0.10"'* && "$fip" == *'"floating_ip_address": "198.51.100.50"'* ]] || fail "floating IP: $fip"
fips=$(as_demo floating ip list -f value -c "Floating IP Address" -c "Fixed IP Address")
[[ "$fips" == *"198.51.100.50 10.77.0.10"* ]] || fail "demo's floating IP list: $fips"
as_demo floating ip unset --port 198.51.100.50
[ "$(as_demo floating ip show 198.51.100.50 -f value -c port_id)" = None ] || fail "floating IP still mapped"
as_demo floating ip set --port "$portid" 198.51.100.50
[ "$(as_demo floating ip show 198.51.100.50 -f value -c port_id)" = "$portid" ] || fail "floating IP not mapped again"
as_demo router remove subnet "r$S" "v4$S" 2>/dev/null && fail "an interface a floating IP needs was removed"
as_demo floating ip delete 198.51.100.50
as_demo router remove subnet "r$S" "v4$S"
# Metering: the admin's labels and rules; other projects may not make them.
as_admin network meter create --description "traffic to the documentation range" "meter$S" -f value -c id >/dev/null
as_admin network meter rule create --remote-ip-prefix 198.51.100.0/24 --egress "meter$S" >/dev/null 2>&1
as_admin network meter rule create --source-ip-prefix 10.77.0.10/32 --exclude --egress "meter$S" >/dev/null
rules=$(as_admin network meter rule list -f value -c Direction -c "Remote IP Prefix" -c "Source IP Prefix")
[[ "$rules" == *"egress 198.51.100.0/24"* && "$rules" == *"10.77.0.10/32"* ]] || fail "meter rules: $rules"
as_demo network meter create "mine$S" >/dev/null 2>&1 && fail "demo made a metering label"
as_admin network meter delete "meter$S"
[ -z "$(as_admin network meter rule list -f value)" ] || fail "rules outlived their label"
as_demo router unset --external-gateway "r$S"
as_demo router delete "r$S"

# Load balancers: Octavia's API on the load-balancer endpoint of the
# catalog (the noop provider completes each change at once).
as_demo loadbalancer create --name "lb$S" --vip-subnet-id "v4$S" --provider noop_driver -f value -c id >/dev/null
lb_active() { for _ in $(seq 25); do [ "$(as_demo loadbalancer show "lb$S" -f value -c provisioning_status)" = ACTIVE ] && return 0; sleep 0.2; done; return 1; }
lb_active || fail "load balancer not ACTIVE"
vip=$(as_demo loadbalancer show "lb$S" -f value -c vip_address)
[[ "$vip" == 10.77.0.* ]] || fail "VIP address: $vip"
as_demo loadbalancer listener create --name "lis$S" --protocol HTTP --protocol-port 80 "lb$S" -f value -c id >/dev/null
lb_active || fail "load balancer not ACTIVE after the listener"
as_demo loadbalancer pool create --name "pool$S" --lb-algorithm ROUND_ROBIN --listener "lis$S" --protocol HTTP -f value -c id >/dev/null
as_demo loadbalancer member create --address 10.77.0.20 --protocol-port 8080 --subnet-id "v4$S" "pool$S" -f value -c id >/dev/null
as_demo loadbalancer healthmonitor create --delay 5 --timeout 3 --max-retries 2 --type HTTP "pool$S" -f value -c id >/dev/null
tree=$(as_demo loadbalancer status show "lb$S")
[[ "$tree" == *'"address": "10.77.0.20"'* && "$tree" == *'"type": "HTTP"'* ]] || fail "status tree: $tree"
members=$(as_demo loadbalancer member list "pool$S" -f value -c address)
[ "$members" = 10.77.0.20 ] || fail "members: $members"
pol=$(as_demo loadbalancer l7policy create --action REJECT --name "pol$S" "lis$S" -f value -c id)
lb_active || fail "load balancer not ACTIVE after the L7 policy"
as_demo loadbalancer l7rule create --type PATH --compare-type STARTS_WITH --value /private "$pol" -f value -c id >/dev/null
rules=$(as_demo loadbalancer l7rule list "$pol" -f value -c value)
[ "$rules" = /private ] || fail "L7 rules: $rules"
providers=$(as_demo loadbalancer provider list -f value -c name | xargs)
[ "$providers" = "haproxy noop_driver" ] || fail "providers: $providers"
conns=$(as_demo loadbalancer stats show "lb$S" -f value -c total_connections)
[ "$conns" = 0 ] || fail "stats: $conns"
as_demo loadbalancer failover "lb$S" 2>/dev/null && fail "a member failed over a load balancer"
as_admin loadbalancer failover "lb$S"
lb_active || fail "load balancer not ACTIVE after its failover"
# The key manager (Barbican's API on the catalog's key-manager endpoint):
# a secret, a certificate as a PKCS12 bundle (Octavia's way) for a
# TERMINATED_HTTPS listener; another project reads neither until an ACL
# names its user.
tls=$(mktemp -d)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=cli.example.com" \
  -keyout "$tls/key.pem" -out "$tls/cert.pem" 2>/dev/null || fail "openssl"
openssl pkcs12 -export -inkey "$tls/key.pem" -in "$tls/cert.pem" -passout pass: -out "$tls/cert.p12"
sref=$(as_demo secret store --name "sec$S" --payload "s3cret-$S" -f value -c "Secret href")
[ "$(as_demo secret get "$sref" --payload -f value)" = "s3cret-$S" ] || fail "secret payload"
listed=$(as_demo secret list -f value -c Name)
has "$listed" "sec$S" || fail "secret list: $listed"
as_admin secret get "$sref" --payload >/dev/null 2>&1 && fail "another project read a secret"
admin_id=$(as_admin token issue -f value -c user_id)
as_demo acl user add --user "$admin_id" "$sref" >/dev/null
acl=$(as_demo acl get "$sref" -f value -c Users)
[[ "$acl" == *"$admin_id"* ]] || fail "ACL: $acl"
[ "$(as_admin secret get "$sref" --payload -f value)" = "s3cret-$S" ] || fail "the ACL's user reads the secret"
p12=$(as_demo secret store --name "p12$S" -t application/octet-stream -e base64 --payload "$(base64 -w0 "$tls/cert.p12")" -f value -c "Secret href")
crt=$(as_demo secret store --name "crt$S" --payload "$(cat "$tls/cert.pem")" -f value -c "Secret href")
key=$(as_demo secret store --name "key$S" --payload "$(cat "$tls/key.pem")" -f value -c "Secret href")
cont=$(as_demo secret container create --name "cont$S" --type certificate --secret certificate="$crt" --secret private_key="$key" -f value -c "Container href")
[ "$(as_demo secret container get "$cont" -f value -c Type)" = certificate ] || fail "container"
as_demo loadbalancer listener create "lb$S" --name "tls$S" --protocol TERMINATED_HTTPS --protocol-port 443 \
  --default-tls-container-ref "$p12" -f value -c id --sni-container-refs "$cont" >/dev/null
lb_active || fail "load balancer not ACTIVE after the TLS listener"
[ "$(as_demo loadbalancer listener show "tls$S" -f value -c default_tls_container_ref)" = "$p12" ] || fail "TLS listener's certificate"
as_demo loadbalancer listener create --name "bad$S" --protocol TERMINATED_HTTPS --protocol-port 8443 \
  --default-tls-container-ref "$crt" "lb$S" >/dev/null 2>&1 && fail "a listener took a PEM certificate for a PKCS12 bundle"
as_demo loadbalancer listener delete "tls$S"
lb_active || fail "load balancer not ACTIVE after the TLS listener's delete"
as_demo secret container delete "$cont"
for r in "$sref" "$p12" "$crt" "$key"; do as_demo secret delete "$r"; done
rm -rf "$tls"
# A flavor (the admin's profile names the provider).
prof=$(as_admin loadbalancer flavorprofile create --name "prof$S" --provider noop_driver --flavor-data '{}' -f value -c id)
as_admin loadbalancer flavor create --name "flv$S" --flavorprofile "$prof" --enable -f value -c id >/dev/null
flavors=$(as_demo loadbalancer flavor list -f value -c name)
has "$flavors" "flv$S" || fail "flavors a member sees: $flavors"
as_demo loadbalancer create --name "lbf$S" --vip-subnet-id "v4$S" --flavor "flv$S" -f value -c id >/dev/null
[ "$(as_demo loadbalancer show "lbf$S" -f value -c provider)" = noop_driver ] || fail "provider of a flavored load balancer"
for _ in $(seq 25); do [ "$(as_demo loadbalancer show "lbf$S" -f value -c provisioning_status)" = ACTIVE ] && break; sleep 0.2; done
as_demo loadbalancer delete "lbf$S"
as_demo loadbalancer delete "lb$S" 2>/dev/null && fail "a load balancer with children deleted without --cascade"
as_demo loadbalancer delete --cascade "lb$S"
lbs=$(as_demo loadbalancer list -f value -c name)
has "$lbs" "lb$S" && fail "load balancer still listed after a cascade delete"
as_admin loadbalancer flavor delete "flv$S"
as_admin loadbalancer flavorprofile delete "$prof"
as_admin network delete "ext$S"

# HA routers: two L3 agents (registered through the agent API, no data
# plane here); an HA router goes to both, and the CLI shows which instance
# its agents report active.
tok=$(as_admin token issue -f value -c id)
base=$(. "$DATA/openrc-admin"; echo "${OS_AUTH_URL%/v3}")
api() { curl -sf -X "$1" -H "X-Auth-Token: $tok" -H 'Content-Type: application/json' "$base$2" -d "$3" >/dev/null; }
for h in "cli-l3-a$S" "cli-l3-b$S"; do
  for t in "Neutrino host agent" "L3 agent"; do
    api POST /neutrino/v1/agents/report "{\"agent\": {\"agent_type\": \"$t\", \"binary\": \"cli\", \"host\": \"$h\", \"start_flag\": true, \"configurations\": {}}}"
  done
done
as_admin network create "hanet$S" -f value -c id >/dev/null
as_admin subnet create --network "hanet$S" --subnet-range 10.78.0.0/24 "hasub$S" -f value -c id >/dev/null
rid=$(as_admin router create --ha "ha$S" -f value -c id)
[ "$(as_admin router show "ha$S" -f value -c ha)" = True ] || fail "router not HA"
as_admin router add subnet "ha$S" "hasub$S"
api PUT "/neutrino/v1/hosts/cli-l3-b$S/ha-routers" "{\"states\": {\"$rid\": \"active\"}}"
states=$(as_admin network agent list --router "ha$S" --long -f value -c Host -c "HA State")
[[ "$states" == *"cli-l3-a$S standby"* && "$states" == *"cli-l3-b$S active"* ]] || fail "HA states: $states"
as_admin router remove subnet "ha$S" "hasub$S"
as_admin router delete "ha$S"
# A distributed router: the CLI shows it distributed, its interface (owned
# by network:router_interface_distributed) among its interfaces_info, and
# an L3 agent's mode.
api POST /neutrino/v1/agents/report "{\"agent\": {\"agent_type\": \"L3 agent\", \"binary\": \"cli\", \"host\": \"cli-l3-a$S\", \"start_flag\": true, \"configurations\": {\"agent_mode\": \"dvr_snat\"}}}"
aid=$(as_admin network agent list --host "cli-l3-a$S" --agent-type l3 -f value -c ID)
mode=$(as_admin network agent show "$aid" -f json -c configuration)
[[ "$mode" == *'"agent_mode": "dvr_snat"'* ]] || fail "L3 agent mode: $mode"
as_admin router create --distributed "dvr$S" -f value -c id >/dev/null
[ "$(as_admin router show "dvr$S" -f value -c distributed)" = True ] || fail "router not distributed"
as_admin router add subnet "dvr$S" "hasub$S"
ifs=$(as_admin router show "dvr$S" -f json -c interfaces_info)
[[ "$ifs" == *10.78.0.1\"* ]] || fail "distributed router interface: $ifs"
owners=$(as_admin port list --router "dvr$S" --long -f value -c "Device Owner")
[ "$owners" = network:router_interface_distributed ] || fail "distributed interface's owner: $owners"
as_admin router remove subnet "dvr$S" "hasub$S"
as_admin router delete "dvr$S"
as_admin network delete "hanet$S"
for id in $(as_admin network agent list --host "cli-l3-a$S" -f value -c ID) $(as_admin network agent list --host "cli-l3-b$S" -f value -c ID); do
  as_admin network agent delete "$id"
done

as_demo port delete "port$S-renamed"
as_demo security group delete "sg$S"
as_demo subnet delete "v4$S" "v6$S"
as_demo network delete "net$S"
as_admin network delete "private$S" "shared$S"
demo_nets=$(as_demo network list -f value -c Name)
has "$demo_nets" "net$S" && fail "network still listed after delete"
echo "cli: walkthrough passed"
