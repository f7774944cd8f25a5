#!/usr/bin/env bash
# The API benchmark of docs/benchmarks.md, every configuration interleaved:
#   scripts/bench.sh [ROUNDS=5]
# Each round runs `neutrino bench` (the workload of shared/peer/bench-api.sh)
# four ways: embedded server on SQLite, separate `neutrino serve` on SQLite,
# and the same two on a throw-away PostgreSQL (scripts/pg.sh). It prints,
# per operation and configuration, the median req/s, its ratio to Debian
# Neutron Zed's figure on this machine, every run, and the median p50.
# This VM's speed drifts over minutes: interleaving spreads the drift over
# all four configurations alike.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"
tmp=$(mktemp -d /tmp/neutrino-bench.XXXXXX)
chmod 755 "$tmp" # PostgreSQL runs as its own user
port=9898
pgport=55498
bin="$tmp/neutrino"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  bash scripts/pg.sh stop "$tmp/pg" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
go build -o "$bin" ./cmd/neutrino
dsn=$(bash scripts/pg.sh start "$tmp/pg" "$pgport")
# A second database for the separate server (over TCP, which pg.sh trusts).
"$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/createdb" -h 127.0.0.1 -p "$pgport" -U postgres neutrino_sep
dsn_sep="${dsn%/neutrino*}/neutrino_sep?sslmode=disable"
out="$tmp/results"
: >"$out"

separate() { # label, then serve's store flags
  local label=$1 d="$tmp/data-$1"
  shift
  rm -rf "$d"
  "$bin" serve --listen "127.0.0.1:$port" --data-dir "$d" "$@" --admin-password bench-admin \
    --demo-password bench-demo --default-quotas network=-1,port=-1,subnet=-1 >"$tmp/serve.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do
    [ -f "$d/openrc-admin" ] && curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.1
  done
  (. "$d/openrc-admin"; "$bin" bench --url "http://127.0.0.1:$port") | awk -v l="$label" '/^[a-e]_/ {print l, $1, $3, $4}' >>"$out"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

for r in $(seq "$rounds"); do
  echo "round $r of $rounds" >&2
  "$bin" bench | awk '/^[a-e]_/ {print "sqlite-embedded", $1, $3, $4}' >>"$out"
  separate sqlite-separate
  "$bin" bench --database "$dsn" | awk '/^[a-e]_/ {print "postgres-embedded", $1, $3, $4}' >>"$out"
  separate postgres-separate --database "$dsn_sep"
done

python3 - "$out" <<'PY'
import collections, statistics, sys
neutron = {"a_post_networks": 14.5, "b_post_ports": 7.9, "c_get_ports_limit50": 13.4,
           "d_delete_ports": 5.9, "e_delete_networks": 8.2}
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    config, op, rps, p50 = line.split()
    runs[(op, config)].append((float(rps), float(p50)))
print("%-20s %-18s %8s %6s  %-40s %s" % ("operation", "configuration", "median", "x", "runs (req/s)", "p50 ms"))
for (op, config), v in sorted(runs.items()):
    rps = sorted(x[0] for x in v)
    m = statistics.median(rps)
    print("%-20s %-18s %8.0f %5.0fx  %-40s %.2f" % (op, config, m, m / neutron[op],
          " / ".join("%.0f" % x for x in rps), statistics.median(x[1] for x in v)))
PY
