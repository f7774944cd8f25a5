#!/usr/bin/env bash
# The sandbox as a newcomer uses it (root): up, a network through the
# openstack CLI, two VMs on two compute hosts that get their addresses and
# MTU by DHCP (busybox udhcpc against Neutrino's responder), a ping across
# VXLAN, ports ACTIVE, then everything down with nothing left behind.
#   test/e2e/sandbox.sh NEUTRINO_BINARY WORKDIR
set -euo pipefail
BIN="${1:?neutrino binary}"; WORK="${2:?work dir}"
DIR="$WORK/sandbox"
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
fail() { echo "sandbox: FAIL: $*"; "$BIN" sandbox down --dir "$DIR" >/dev/null 2>&1 || true; exit 1; }
# ping_until FROM ADDR: the sandbox's agents converge within seconds.
ping_until() {
  for _ in $(seq 20); do
    "$BIN" sandbox vm exec "$1" --dir "$DIR" -- ping -c 1 -W 1 "$2" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  return 1
}
before=$(ip netns list | wc -l)
port=19700; while (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null; do port=$((port + 1)); done
lbport=19880; while (echo >/dev/tcp/127.0.0.1/$lbport) 2>/dev/null; do lbport=$((lbport + 1)); done
kmport=19320; while (echo >/dev/tcp/127.0.0.1/$kmport) 2>/dev/null; do kmport=$((kmport + 1)); done
"$BIN" sandbox up --dir "$DIR" --listen 127.0.0.1:$port --lb-listen 127.0.0.1:$lbport --km-listen 127.0.0.1:$kmport --network-hosts 2 || fail "up"
(
  . <("$BIN" sandbox openrc --dir "$DIR")
  openstack network create e2e-net -f value -c id >/dev/null
  openstack subnet create --network e2e-net --subnet-range 10.42.0.0/24 e2e-sub -f value -c id >/dev/null
) || fail "network create"
"$BIN" sandbox vm create vm1 --network e2e-net --host compute-1 --dir "$DIR" >/dev/null || fail "vm1"
"$BIN" sandbox vm create vm2 --network e2e-net --host compute-2 --dir "$DIR" >/dev/null || fail "vm2"
ip2=$("$BIN" sandbox vm exec vm2 --dir "$DIR" -- ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1)
[ -n "$ip2" ] || fail "vm2 got no address by DHCP"
mtu=$("$BIN" sandbox vm exec vm2 --dir "$DIR" -- cat /sys/class/net/eth0/mtu)
[ "$mtu" = 1450 ] || fail "vm2's MTU from DHCP is $mtu, want 1450"
ping_until vm1 "$ip2" || fail "vm1 cannot ping vm2 ($ip2)"
statuses=$(. <("$BIN" sandbox openrc --dir "$DIR"); openstack port list -c Status -f value)
# two VM ports and the network's DHCP port, all wired
[ "$(echo "$statuses" | grep -c ACTIVE)" = 3 ] && ! echo "$statuses" | grep -qv ACTIVE || fail "ports not ACTIVE: $statuses"
# provider_ping TYPE WHERE NET CIDR VM_A VM_B PROVIDER_ARGS...: a provider
# network (admin) NET of TYPE with a subnet CIDR, VM_A on compute-1 and
# VM_B on compute-2, and a ping from one to the other (WHERE names the
# network in the failure).
provider_ping() {
  local type=$1 where=$2 net=$3 cidr=$4 a=$5 b=$6 ip; shift 6
  (
    . <("$BIN" sandbox openrc --dir "$DIR")
    openstack network create "$@" "$net" -f value -c id >/dev/null
    openstack subnet create --network "$net" --subnet-range "$cidr" "$net-sub" -f value -c id >/dev/null
  ) || fail "$type network create"
  "$BIN" sandbox vm create "$a" --network "$net" --host compute-1 --dir "$DIR" >/dev/null || fail "$a"
  "$BIN" sandbox vm create "$b" --network "$net" --host compute-2 --dir "$DIR" >/dev/null || fail "$b"
  ip=$("$BIN" sandbox vm exec "$b" --dir "$DIR" -- ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1)
  ping_until "$a" "$ip" || fail "$a cannot ping $b on $where ($ip)"
}
# A flat provider network on physnet1.
provider_ping flat "the flat network" e2e-flat 10.43.0.0/24 vm3 vm4 \
  --provider-network-type flat --provider-physical-network physnet1
# A VLAN provider network on the same physnet1 (tagged by tc programs).
provider_ping vlan "VLAN 100" e2e-vlan 10.44.0.0/24 vm5 vm6 \
  --provider-network-type vlan --provider-physical-network physnet1 --provider-segment 100
# Every agent (a host agent and an L3 agent per host, DHCP and
# load-balancer agents on both network hosts) alive; the L3 agents in
# dvr_snat mode on network hosts, dvr on compute hosts.
alive=$(. <("$BIN" sandbox openrc --dir "$DIR"); openstack network agent list -c Alive -f value)
[ "$(echo "$alive" | grep -Ec '^(True|:-\))$')" = 12 ] || fail "agents not all alive: $alive"
modes=$(. <("$BIN" sandbox openrc --dir "$DIR"); for h in network-1 compute-1; do
  openstack network agent list --agent-type l3 --host "$h" -f value -c ID | xargs -I{} openstack network agent show {} -f json -c configuration; done)
echo "$modes" | grep -q '"agent_mode": "dvr_snat"' && echo "$modes" | grep -q '"agent_mode": "dvr"' || fail "L3 agent modes: $modes"
# A router to the sandbox's external network "public": vm2 reaches the
# upstream host (HTTP through SNAT; busybox 1.35 wget -T crashes, hence
# timeout), and the upstream host reaches vm2 on a
# floating IP chosen by address.
(
  . <("$BIN" sandbox openrc --dir "$DIR")
  openstack router create e2e-router -f value -c id >/dev/null
  openstack router set --external-gateway public e2e-router
  openstack router add subnet e2e-router e2e-sub
  openstack security group rule create --protocol icmp default -f value -c id >/dev/null
  port=$(openstack port list --device-id vm2 -f value -c ID)
  openstack floating ip create --floating-ip-address 203.0.113.77 --port "$port" public -f value -c id >/dev/null
) || fail "router and floating IP"
page=""
for _ in $(seq 20); do
  page=$("$BIN" sandbox vm exec vm2 --dir "$DIR" -- timeout 3 busybox wget -q -O - http://203.0.113.1/ 2>/dev/null) && break
  sleep 0.5
done
[ "$page" = "hello from upstream" ] || fail "vm2 cannot reach the upstream host through the router: $page"
ok=""
for _ in $(seq 20); do
  "$BIN" sandbox upstream exec --dir "$DIR" -- ping -c 1 -W 1 203.0.113.77 >/dev/null 2>&1 && { ok=1; break; }
  sleep 0.5
done
[ -n "$ok" ] || fail "the upstream host cannot reach vm2 on its floating IP"
# An HA router on both network hosts: vm7 reaches the upstream host
# through its active instance; that host taken off the wire (a crash), the
# other takes over while vm7 pings; back, the first host is a standby.
(
  . <("$BIN" sandbox openrc --dir "$DIR")
  openstack network create e2e-ha-net -f value -c id >/dev/null
  openstack subnet create --network e2e-ha-net --subnet-range 10.45.0.0/24 e2e-ha-sub -f value -c id >/dev/null
  openstack router create --ha e2e-ha -f value -c id >/dev/null
  openstack router set --external-gateway public e2e-ha
  openstack router add subnet e2e-ha e2e-ha-sub
) || fail "HA router"
"$BIN" sandbox vm create vm7 --network e2e-ha-net --host compute-1 --dir "$DIR" >/dev/null || fail "vm7"
# ha_host STATE: the hosts whose instances are in STATE, one a line (a
# host taken down still shows its last state until its agent counts as dead).
ha_host() { (. <("$BIN" sandbox openrc --dir "$DIR"); openstack network agent list --router e2e-ha --long -f value -c Host -c "HA State") | awk -v s="$1" '$2 == s {print $1}'; }
# wait_ha STATE HOST: until HOST's instance is in STATE.
wait_ha() { for _ in $(seq 40); do ha_host "$1" | grep -qx "$2" && return 0; sleep 0.5; done; return 1; }
active=""
for _ in $(seq 40); do active=$(ha_host active | head -1); [ -n "$active" ] && break; sleep 0.5; done
[ -n "$active" ] || fail "no active instance of the HA router"
other=network-1; [ "$active" = network-1 ] && other=network-2
ping_until vm7 203.0.113.1 || fail "vm7 cannot reach the upstream host through the HA router"
"$BIN" sandbox vm exec vm7 --dir "$DIR" -- ping -c 500 -i 0.01 -W 1 203.0.113.1 > "$WORK/ha-ping.txt" 2>&1 &
ping_pid=$!
sleep 1
"$BIN" sandbox host down "$active" --dir "$DIR" >/dev/null || fail "host down"
wait_ha active "$other" || fail "$other did not take over from $active"
wait $ping_pid || true
lost=$(grep -o '[0-9]* received' "$WORK/ha-ping.txt" | cut -d' ' -f1)
[ -n "$lost" ] && [ "$lost" -gt 0 ] || fail "vm7's pings did not resume: $(tail -3 "$WORK/ha-ping.txt")"
echo "sandbox: HA failover of $active: $((500 - lost)) of 500 pings (10 ms apart) lost"
ping_until vm7 203.0.113.1 || fail "vm7 cannot reach the upstream host after the failover"
"$BIN" sandbox host up "$active" --dir "$DIR" >/dev/null || fail "host up"
wait_ha standby "$active" || fail "$active did not come back as a standby: $(ha_host active | xargs) active"
[ "$(ha_host active | xargs)" = "$other" ] || fail "the active instance moved back: $(ha_host active | xargs) active"
ping_until vm7 203.0.113.1 || fail "vm7 cannot reach the upstream host once $active is back"
# A distributed router: vm8 (compute-1) and vm9 (compute-2) on two of its
# subnets reach each other routed on their own hosts, and the upstream
# host reaches vm8's floating IP, served on compute-1, with both network
# hosts off the wire.
(
  . <("$BIN" sandbox openrc --dir "$DIR")
  openstack router create --distributed e2e-dvr -f value -c id >/dev/null
  openstack router set --external-gateway public e2e-dvr
  for x in a b; do
    openstack network create "e2e-dvr-$x" -f value -c id >/dev/null
    openstack subnet create --network "e2e-dvr-$x" --subnet-range "10.4$([ $x = a ] && echo 6 || echo 7).0.0/24" "e2e-dvr-$x-sub" -f value -c id >/dev/null
    openstack router add subnet e2e-dvr "e2e-dvr-$x-sub"
  done
  [ "$(openstack router show e2e-dvr -f value -c distributed)" = True ] || exit 1
) || fail "distributed router"
"$BIN" sandbox vm create vm8 --network e2e-dvr-a --host compute-1 --dir "$DIR" >/dev/null || fail "vm8"
"$BIN" sandbox vm create vm9 --network e2e-dvr-b --host compute-2 --dir "$DIR" >/dev/null || fail "vm9"
ip9=$("$BIN" sandbox vm exec vm9 --dir "$DIR" -- ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1)
ping_until vm8 "$ip9" || fail "vm8 cannot reach vm9 ($ip9) through the distributed router"
(
  . <("$BIN" sandbox openrc --dir "$DIR")
  openstack floating ip create --floating-ip-address 203.0.113.78 --port "$(openstack port list --device-id vm8 -f value -c ID)" public -f value -c id >/dev/null
) || fail "floating IP of vm8"
upstream_ping() {
  for _ in $(seq 20); do
    "$BIN" sandbox upstream exec --dir "$DIR" -- ping -c 1 -W 1 "$1" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  return 1
}
upstream_ping 203.0.113.78 || fail "the upstream host cannot reach vm8's floating IP"
for h in network-1 network-2; do "$BIN" sandbox host down "$h" --dir "$DIR" >/dev/null || fail "host down $h"; done
"$BIN" sandbox upstream exec --dir "$DIR" -- ping -c 5 -i 0.2 -W 1 203.0.113.78 >/dev/null || fail "vm8's floating IP with every network host down"
"$BIN" sandbox vm exec vm8 --dir "$DIR" -- ping -c 3 -W 1 "$ip9" >/dev/null || fail "vm8 to vm9 with every network host down"
for h in network-1 network-2; do "$BIN" sandbox host up "$h" --dir "$DIR" >/dev/null || fail "host up $h"; done
# A load balancer (haproxy on a network host's agent) on e2e-sub: vm1 and
# vm2 serve HTTP on 8080 (busybox httpd, ending by itself), vm10 and the
# upstream host (through a floating IP on the VIP) see both in turn.
for vm in vm1 vm2; do
  mkdir -p "$WORK/www-$vm" && echo "$vm" > "$WORK/www-$vm/index.html"
  "$BIN" sandbox vm exec "$vm" --dir "$DIR" -- sh -c "echo \$\$ > $WORK/httpd-$vm.pid; exec timeout 120 busybox httpd -f -p 8080 -h $WORK/www-$vm" &
done
"$BIN" sandbox vm create vm10 --network e2e-net --host compute-2 --dir "$DIR" >/dev/null || fail "vm10"
(
  . <("$BIN" sandbox openrc --dir "$DIR")
  openstack security group rule create --protocol tcp --dst-port 80 default -f value -c id >/dev/null
  openstack loadbalancer create --name e2e-lb --vip-subnet-id e2e-sub -f value -c id >/dev/null
  lb_active() { for _ in $(seq 50); do [ "$(openstack loadbalancer show e2e-lb -f value -c provisioning_status)" = ACTIVE ] && return 0; sleep 0.2; done; return 1; }
  lb_active || exit 1
  openstack loadbalancer listener create --name e2e-http --protocol HTTP --protocol-port 80 e2e-lb -f value -c id >/dev/null; lb_active || exit 1
  openstack loadbalancer pool create --name e2e-pool --lb-algorithm ROUND_ROBIN --listener e2e-http --protocol HTTP -f value -c id >/dev/null; lb_active || exit 1
  for vm in vm1 vm2; do
    ip=$(openstack port list --device-id "$vm" -f value -c "Fixed IP Addresses" | grep -o "10\.42\.0\.[0-9]*" | head -1)
    openstack loadbalancer member create --address "$ip" --protocol-port 8080 e2e-pool -f value -c id >/dev/null; lb_active || exit 1
  done
  vip_port=$(openstack loadbalancer show e2e-lb -f value -c vip_port_id)
  openstack floating ip create --floating-ip-address 203.0.113.79 --port "$vip_port" public -f value -c id >/dev/null
) || fail "load balancer"
vip=$(. <("$BIN" sandbox openrc --dir "$DIR"); openstack loadbalancer show e2e-lb -f value -c vip_address)
# pages CMD... URL: the distinct pages of six requests made by CMD.
pages() {
  local url="${*: -1}"; set -- "${@:1:$(($# - 1))}"
  for _ in 1 2 3 4 5 6; do "$@" -- timeout 3 busybox wget -q -O - "$url" 2>/dev/null; done | sort -u | xargs
}
got=""
for _ in $(seq 20); do got=$(pages "$BIN" sandbox vm exec vm10 --dir "$DIR" "http://$vip/"); [ "$got" = "vm1 vm2" ] && break; sleep 0.5; done
[ "$got" = "vm1 vm2" ] || fail "vm10 through the load balancer at $vip saw: $got"
got=""
for _ in $(seq 20); do got=$(pages "$BIN" sandbox upstream exec --dir "$DIR" "http://203.0.113.79/"); [ "$got" = "vm1 vm2" ] && break; sleep 0.5; done
[ "$got" = "vm1 vm2" ] || fail "the upstream host through the load balancer's floating IP saw: $got"
# TLS: a CA and two server certificates (openssl); www's stored as a
# PKCS12 bundle in the key manager (Octavia's cookbook), api's as a
# certificate container; a TERMINATED_HTTPS listener presents the one SNI
# asks for, verified against the CA from vm10.
tls="$WORK/tls"; mkdir -p "$tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=E2E CA" -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null || fail "CA"
for name in www api; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name.example.com" -addext "subjectAltName=DNS:$name.example.com" \
    -keyout "$tls/$name.key" -out "$tls/$name.csr" 2>/dev/null &&
  openssl x509 -req -in "$tls/$name.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial -days 1 -copy_extensions copy -out "$tls/$name.crt" 2>/dev/null || fail "certificate $name"
done
openssl pkcs12 -export -inkey "$tls/www.key" -in "$tls/www.crt" -passout pass: -out "$tls/www.p12" || fail "PKCS12"
(
  . <("$BIN" sandbox openrc --dir "$DIR")
  www=$(openstack secret store --name e2e-www -t application/octet-stream -e base64 --payload "$(base64 -w0 "$tls/www.p12")" -f value -c "Secret href")
  crt=$(openstack secret store --name e2e-api-crt --payload "$(cat "$tls/api.crt")" -f value -c "Secret href")
  key=$(openstack secret store --name e2e-api-key --payload "$(cat "$tls/api.key")" -f value -c "Secret href")
  api=$(openstack secret container create --name e2e-api --type certificate --secret certificate="$crt" --secret private_key="$key" -f value -c "Container href")
  openstack security group rule create --protocol tcp --dst-port 443 default -f value -c id >/dev/null
  openstack loadbalancer listener create e2e-lb --name e2e-tls --protocol TERMINATED_HTTPS --protocol-port 443 --default-pool e2e-pool \
    --default-tls-container-ref "$www" -f value -c id --sni-container-refs "$api" >/dev/null
  for _ in $(seq 50); do [ "$(openstack loadbalancer show e2e-lb -f value -c provisioning_status)" = ACTIVE ] && exit 0; sleep 0.2; done; exit 1
) || fail "TLS listener"
subject() {  # subject SERVERNAME: the subject vm10 verified at the VIP
  "$BIN" sandbox vm exec vm10 --dir "$DIR" -- timeout 5 openssl s_client -connect "$vip:443" -servername "$1" \
    -verify_return_error -CAfile "$tls/ca.pem" </dev/null 2>/dev/null | sed -n 's/^subject=//p'
}
for name in www api; do
  got=""; for _ in $(seq 20); do got=$(subject $name.example.com); [ "$got" = "CN = $name.example.com" ] && break; sleep 0.5; done
  [ "$got" = "CN = $name.example.com" ] || fail "SNI $name.example.com: presented '$got'"
done
page=$("$BIN" sandbox vm exec vm10 --dir "$DIR" -- curl -s --cacert "$tls/ca.pem" --resolve "api.example.com:443:$vip" https://api.example.com/)
[[ "$page" == vm1 || "$page" == vm2 ]] || fail "HTTPS through the TLS listener: '$page'"
# An L7 policy redirects by path.
(
  . <("$BIN" sandbox openrc --dir "$DIR")
  pol=$(openstack loadbalancer l7policy create --action REDIRECT_PREFIX --redirect-prefix https://www.example.com e2e-http -f value -c id)
  for _ in $(seq 50); do [ "$(openstack loadbalancer show e2e-lb -f value -c provisioning_status)" = ACTIVE ] && break; sleep 0.2; done
  openstack loadbalancer l7rule create --type PATH --compare-type STARTS_WITH --value /secure "$pol" -f value -c id >/dev/null
  for _ in $(seq 50); do [ "$(openstack loadbalancer show e2e-lb -f value -c provisioning_status)" = ACTIVE ] && exit 0; sleep 0.2; done; exit 1
) || fail "L7 policy"
got=$("$BIN" sandbox vm exec vm10 --dir "$DIR" -- curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "http://$vip/secure/page")
[ "$got" = "302 https://www.example.com/secure/page" ] || fail "L7 redirect by path: '$got'"
# A health monitor: vm2's server stops; three seconds later it is ERROR
# and gets no request.
(
  . <("$BIN" sandbox openrc --dir "$DIR")
  openstack loadbalancer healthmonitor create --delay 1 --timeout 1 --max-retries 1 --max-retries-down 1 --type HTTP e2e-pool -f value -c id >/dev/null
  for _ in $(seq 50); do
    [ "$(openstack loadbalancer member list e2e-pool -f value -c operating_status | sort -u | xargs)" = ONLINE ] && exit 0; sleep 0.2
  done; exit 1
) || fail "health monitor: members not ONLINE"
kill "$(cat "$WORK/httpd-vm2.pid")" || fail "stopping vm2's server"
sleep 3
got=$(pages "$BIN" sandbox vm exec vm10 --dir "$DIR" "http://$vip/")
[ "$got" = vm1 ] || fail "3 s after vm2's server stopped, requests went to: $got"
st=$(. <("$BIN" sandbox openrc --dir "$DIR"); for _ in $(seq 25); do
  s=$(openstack loadbalancer member list e2e-pool -f value -c address -c operating_status | sort | awk '{print $2}' | xargs)
  [[ "$s" == *ERROR* ]] && break; sleep 0.2; done; echo "$s")
[[ "$st" == *ERROR* && "$st" == *ONLINE* ]] || fail "member statuses with vm2 down: $st"
(. <("$BIN" sandbox openrc --dir "$DIR"); for s in e2e-www e2e-api-crt e2e-api-key; do openstack secret delete "$(openstack secret list --name $s -f value -c "Secret href")"; done) || fail "secret delete"
(. <("$BIN" sandbox openrc --dir "$DIR"); openstack floating ip delete 203.0.113.79 && openstack loadbalancer delete --cascade e2e-lb) || fail "load balancer delete"
for vm in vm1 vm2; do kill "$(cat "$WORK/httpd-$vm.pid")" 2>/dev/null || true; done
wait
"$BIN" sandbox vm delete vm1 --dir "$DIR" >/dev/null || fail "vm delete"
"$BIN" sandbox down --dir "$DIR" >/dev/null || fail "down"
after=$(ip netns list | wc -l)
[ "$before" = "$after" ] || fail "namespaces left behind: $(ip netns list)"
echo "sandbox: e2e passed (DHCP leases with MTU 1450, VMs on two hosts ping over VXLAN, a flat and a VLAN network, ports ACTIVE, agents alive, router with SNAT and a floating IP to the upstream host, an HA router failing over with a network host down and back, a distributed router routing east-west and serving a floating IP with every network host down, a load balancer round-robining to two VMs from a VM and through a floating IP, terminating TLS with the certificate SNI asks for, redirecting by path, and dropping a member whose server stopped, clean teardown)"
