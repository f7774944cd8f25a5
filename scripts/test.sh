#!/usr/bin/env bash
# Neutrino's whole test suite, from a fresh Debian machine:
#   1. installs what the tests need (Debian packages, Go modules),
#   2. go vet + unit and API tests on SQLite (as root also the data-plane
#      tests, in network namespaces they create and remove),
#   3. the API tests again on a throw-away PostgreSQL,
#   4. the openstack CLI walk-through, and Tempest's tempest.api.network
#      against a running Neutrino, on SQLite and on PostgreSQL, with
#      Neutrino's built-in identity.
# Everything listens on 127.0.0.1 only; everything started is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# /usr/sbin holds ip, nft, dhclient: tests that need them must find them.
export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/sbin:/sbin:$PATH
WORK=$(mktemp -d /tmp/neutrino-test.XXXXXX)
chmod 755 "$WORK"   # the postgres user must reach its cluster directory
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  stop_dhcp_agent 2>/dev/null || true
  [ -z "${PEER_STARTED:-}" ] || "$PEER/stop.sh" keystone mariadb >/dev/null 2>&1 || true
  scripts/pg.sh stop "$WORK/pg" || true
  rm -rf "$WORK"
}
trap cleanup EXIT
step() { echo; echo "=== $* ($(date +%H:%M:%S))"; }
# Every tier that cannot run here is named at the end, never skipped quietly.
NOT_RUN=()
not_run() { NOT_RUN+=("$*"); echo "tier not run: $*"; }
if [ "$(id -u)" = 0 ]; then
  # As root the data-plane tests must run: a missing tool fails them.
  export NEUTRINO_REQUIRE_DATAPLANE=1
else
  not_run "data-plane tests in namespaces and the sandbox end to end (need root)"
fi

step "install test dependencies"
PKGS="tempest python3-tempest python3-openstackclient python3-subunit python3-stestr postgresql curl iproute2 iputils-ping busybox isc-dhcp-client nftables keepalived haproxy openssl python3-octaviaclient python3-barbicanclient"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" != 0 ]; then echo "need root to install:$missing"; exit 1; fi
  # Keep package scripts from starting services: tests start their own.
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing >/dev/null
fi
go version
go mod download

step "go vet"
go vet ./...

# The data-plane tests work in namespaces of their own: nothing of theirs
# may appear in this machine's own namespace.
root_clean() {
  [ "$(id -u)" = 0 ] || return 0
  local stray
  stray=$(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E '^(brq|brp|vxlan-|tap|qr-|qg-|nt-)' || true)
  if [ -n "$stray" ]; then echo "devices left in the root namespace by a test: $stray"; return 1; fi
  stray=$(nft list tables 2>/dev/null | grep -i neutrino || true)
  if [ -n "$stray" ]; then echo "nftables tables left in the root namespace by a test: $stray"; return 1; fi
}

step "unit and API tests (SQLite)"
go test -count=1 ./...
root_clean

free_port() {  # first free loopback TCP port from $1
  local p=$1
  while (echo >/dev/tcp/127.0.0.1/$p) 2>/dev/null; do p=$((p + 1)); done
  echo $p
}

step "store and API tests (PostgreSQL)"
PGPORT=$(free_port 55432)
# One retry on another port: a start can fail on a port taken in between.
DSN=$(scripts/pg.sh start "$WORK/pg" "$PGPORT") || {
  PGPORT=$(free_port $((PGPORT + 1)))
  DSN=$(scripts/pg.sh start "$WORK/pg" "$PGPORT")
}
NEUTRINO_TEST_POSTGRES="$DSN" go test -count=1 ./internal/store/ ./internal/api/

step "build"
go build -o "$WORK/neutrino" ./cmd/neutrino

# start_dhcp_agent NAME URL OS_ENV...: a DHCP and L3 agent for the Tempest
# runs, its host being a namespace of its own (removed, with the DHCP and
# router namespaces it made, by stop_dhcp_agent).
start_dhcp_agent() {
  local name=$1 url=$2; shift 2
  [ "$(id -u)" = 0 ] || return 0
  AGENT_NS="nt-tempest-$name-$$"
  ip netns add "$AGENT_NS"
  ip -n "$AGENT_NS" link set lo up
  ip -n "$AGENT_NS" link add v0 type veth peer name v1
  ip -n "$AGENT_NS" addr add 10.250.9.1/24 dev v0
  ip -n "$AGENT_NS" link set v0 up
  ip -n "$AGENT_NS" link set v1 up
  env "$@" "$WORK/neutrino" agent --host "tempest-$name" --server "$url" --netns "$AGENT_NS" \
    --vtep 10.250.9.1 --dhcp --l3 --report-interval 5s > "$WORK/agent-$name.log" 2>&1 &
  AGENT_PID=$!
  PIDS+=("$AGENT_PID")
  for _ in $(seq 50); do grep -q '"agent running"' "$WORK/agent-$name.log" && break; sleep 0.1; done
  sleep 1
}
stop_dhcp_agent() {
  [ -n "${AGENT_PID:-}" ] || return 0
  kill "$AGENT_PID" 2>/dev/null; wait "$AGENT_PID" 2>/dev/null || true
  for ns in $(ip netns list | awk '{print $1}' | grep "^$AGENT_NS"); do ip netns del "$ns"; done
  AGENT_PID=""
}

# serve_and_tempest LABEL [serve flags...]: start Neutrino, run Tempest, stop it.
serve_and_tempest() {
  local label=$1; shift
  local data="$WORK/data-$label" port
  port=$(free_port 19696)
  "$WORK/neutrino" serve --listen 127.0.0.1:$port --lb-listen 127.0.0.1:"$(free_port 19876)" --km-listen 127.0.0.1:"$(free_port 19311)" --data-dir "$data" "$@" > "$WORK/serve-$label.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/ >/dev/null && break; sleep 0.1; done
  local rc=0
  if [ "$label" = sqlite ]; then
    test/cli/walkthrough.sh "$data" || rc=$?
  fi
  if [ $rc = 0 ]; then
    start_dhcp_agent "$label" "http://127.0.0.1:$port" $(sed -n 's/^export //p' "$data/openrc-admin")
    test/tempest/run.sh http://127.0.0.1:$port "$data" "$WORK/tempest-$label" || rc=$?
    stop_dhcp_agent
  fi
  kill "$pid"; wait "$pid" 2>/dev/null || true
  if [ $rc != 0 ]; then
    echo "--- tempest ($label) failed; server log tail:"; tail -20 "$WORK/serve-$label.log"
    grep -B3 -A25 'Traceback\|FAIL:' "$WORK/tempest-$label/console.txt" | head -150 || true
    return $rc
  fi
}

if [ "$(id -u)" = 0 ]; then
  step "sandbox end to end (network namespaces)"
  test/e2e/sandbox.sh "$WORK/neutrino" "$WORK"
  root_clean
fi

step "openstack CLI walk-through and Tempest tempest.api.network (SQLite)"
serve_and_tempest sqlite

step "Tempest tempest.api.network (PostgreSQL)"
runuser -u postgres -- psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -c "DROP DATABASE IF EXISTS tempest" -c "CREATE DATABASE tempest"
serve_and_tempest postgres --database "${DSN%/neutrino*}/tempest?sslmode=disable"

# --auth keystone against Debian's real Keystone, run by the workplace's peer
# harness beside this checkout (../shared/peer), with the Keystone catalog's
# network endpoint pointed at Neutrino.
PEER="$ROOT/../shared/peer"
if [ -x "$PEER/start.sh" ]; then
  step "Tempest tempest.api.network (SQLite, --auth keystone with Debian's Keystone)"
  "$PEER/install.sh" > "$WORK/peer-install.log" 2>&1 || { tail -20 "$WORK/peer-install.log"; exit 1; }
  kport=$(free_port 19696)
  if ! curl -sf http://127.0.0.1:5000/v3 >/dev/null; then PEER_STARTED=1; fi
  NETWORK_URL="http://127.0.0.1:$kport/" START_NEUTRON=0 "$PEER/start.sh" > "$WORK/peer-start.log" 2>&1 || { tail -20 "$WORK/peer-start.log"; exit 1; }
  "$WORK/neutrino" serve --listen 127.0.0.1:$kport --lb-listen "" --km-listen "" --data-dir "$WORK/data-keystone" --auth keystone \
    --keystone-url http://127.0.0.1:5000/v3 --keystone-user neutron --keystone-password neutron --keystone-project service \
    > "$WORK/serve-keystone.log" 2>&1 &
  kpid=$!
  PIDS+=("$kpid")
  for _ in $(seq 100); do curl -sf http://127.0.0.1:$kport/ >/dev/null && break; sleep 0.1; done
  rc=0
  # Neutrino's Keystone token validation, against the real one.
  NEUTRINO_TEST_KEYSTONE=http://127.0.0.1:5000/v3 NEUTRINO_TEST_KEYSTONE_USER=neutron NEUTRINO_TEST_KEYSTONE_PASSWORD=neutron \
    NEUTRINO_TEST_KEYSTONE_PROJECT=service NEUTRINO_TEST_KEYSTONE_LOGIN=admin:admin:admin \
    go test -count=1 -run '^TestKeystoneValidation$' -v ./internal/identity/ > "$WORK/keystone-validation.log" 2>&1 || rc=1
  grep -q -- '--- PASS: TestKeystoneValidation' "$WORK/keystone-validation.log" || { cat "$WORK/keystone-validation.log"; rc=1; }
  start_dhcp_agent keystone "http://127.0.0.1:$kport" OS_AUTH_URL=http://127.0.0.1:5000/v3 OS_USERNAME=admin \
    OS_PASSWORD=admin OS_PROJECT_NAME=admin OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default
  IDENTITY_URL=http://127.0.0.1:5000/v3 ADMIN_PASSWORD=admin \
    test/tempest/run.sh http://127.0.0.1:$kport "$WORK/data-keystone" "$WORK/tempest-keystone" || rc=$?
  stop_dhcp_agent
  kill "$kpid"; wait "$kpid" 2>/dev/null || true
  # Leave a Keystone that was already running as it was found.
  [ -n "${PEER_STARTED:-}" ] || "$PEER/set-network-url.sh" http://127.0.0.1:9696/ >/dev/null 2>&1 || true
  [ $rc = 0 ] || { tail -20 "$WORK/serve-keystone.log"; exit $rc; }
else
  not_run "Tempest and Keystone validation with --auth keystone (no ../shared/peer harness beside this checkout)"
fi

step "all tests passed"
for t in "${NOT_RUN[@]}"; do echo "tier not run: $t"; done
