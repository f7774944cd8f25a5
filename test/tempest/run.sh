#!/usr/bin/env bash
# Run Tempest's network API tests against a Neutrino server using its
# built-in identity. Usage:
#   test/tempest/run.sh URL DATA_DIR [RESULTS_DIR]
# URL is the server (http://127.0.0.1:PORT), DATA_DIR its --data-dir (for the
# admin password). Env: REGEX (default ^tempest\.api\.network), CONCURRENCY (2),
# IDENTITY_URL (default URL/v3: the built-in identity; set it to a Keystone's
# v3 URL for --auth keystone) and ADMIN_PASSWORD (default: from DATA_DIR).
# The run fails on any failed test that known-failures.txt does not list.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
URL="${1:?url}"; DATA="${2:?data dir}"; RES="${3:-$(mktemp -d)}"
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH   # Debian's python3 for tempest
REGEX="${REGEX:-^tempest\.api\.network}"
CONCURRENCY="${CONCURRENCY:-2}"
IDENTITY_URL="${IDENTITY_URL:-$URL/v3}"
if [ -n "${ADMIN_PASSWORD:-}" ]; then ADMIN_PW=$ADMIN_PASSWORD; else read -r ADMIN_PW _ < "$DATA/passwords"; fi
mkdir -p "$RES"

token() {
  curl -sf -D - -o /dev/null -H 'Content-Type: application/json' "$IDENTITY_URL/auth/tokens" -d '{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","domain":{"name":"Default"},"password":"'"$ADMIN_PW"'"}}},"scope":{"project":{"name":"admin","domain":{"name":"Default"}}}}}' \
    | awk 'tolower($1)=="x-subject-token:" {print $2}' | tr -d '\r'
}
TOKEN=$(token)
[ -n "$TOKEN" ] || { echo "tempest: cannot log in to $URL"; exit 1; }
api() { curl -sf -H "X-Auth-Token: $TOKEN" -H 'Content-Type: application/json' "$@"; }
EXTS=$(api "$URL/v2.0/extensions" | python3 -c 'import json,sys; print(",".join(sorted(e["alias"] for e in json.load(sys.stdin)["extensions"])))')
# The server lists exactly the committed extensions: a dropped one would
# only turn its Tempest tests into skips.
WANT_EXTS=$(grep -v '^#' "$HERE/extensions.txt" | grep . | sort | paste -sd, -)
if [ "$EXTS" != "$WANT_EXTS" ]; then
  echo "tempest: the server's extensions differ from test/tempest/extensions.txt"
  diff <(tr , '\n' <<<"$WANT_EXTS") <(tr , '\n' <<<"$EXTS") | sed 's/^</  missing:/; s/^>/  not listed in the file:/' | grep ':'
  exit 1
fi
PUBLIC=$(api "$URL/v2.0/networks?name=tempest-public" | python3 -c 'import json,sys; n=json.load(sys.stdin)["networks"]; print(n[0]["id"] if n else "")')
if [ -z "$PUBLIC" ]; then
  PUBLIC=$(api -X POST "$URL/v2.0/networks" -d '{"network":{"name":"tempest-public","router:external":true}}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["network"]["id"])')
  api -X POST "$URL/v2.0/subnets" -d '{"subnet":{"network_id":"'"$PUBLIC"'","ip_version":4,"cidr":"203.0.113.0/24","enable_dhcp":false,"name":"tempest-public-subnet"}}' >/dev/null
fi

WS="$RES/workspace"
rm -rf "$WS"
(cd "$RES" && tempest init "$WS" >/dev/null)
cat > "$WS/etc/tempest.conf" <<CONF
[DEFAULT]
log_file = tempest.log
use_stderr = false
[auth]
use_dynamic_credentials = true
admin_username = admin
admin_password = $ADMIN_PW
admin_project_name = admin
admin_domain_name = Default
create_isolated_networks = false
[identity]
uri_v3 = $IDENTITY_URL
auth_version = v3
region = RegionOne
v3_endpoint_type = public
admin_role = admin
[identity-feature-enabled]
api_v2 = false
[service_available]
nova = false
glance = false
cinder = false
swift = false
neutron = true
[network]
catalog_type = network
region = RegionOne
endpoint_type = publicURL
public_network_id = $PUBLIC
floating_network_name = tempest-public
project_network_cidr = 10.100.0.0/16
project_network_mask_bits = 28
project_network_v6_cidr = 2001:db8::/48
project_network_v6_mask_bits = 64
project_networks_reachable = false
[network-feature-enabled]
api_extensions = $EXTS
ipv6 = true
ipv6_subnet_attributes = true
port_security = true
floating_ips = true
[validation]
run_validation = false
CONF
export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}" NEUTRINO_TEMPEST_FAST_SUBNET_DELETE=1
cd "$WS"
T0=$(date +%s)
tempest run --regex "$REGEX" --concurrency "$CONCURRENCY" > "$RES/console.txt" 2>&1
RC=$?
echo "tempest: rc=$RC in $(( $(date +%s) - T0 ))s"
stestr last --subunit 2>/dev/null | subunit2csv > "$RES/results.csv" 2>/dev/null
python3 - "$RES" "$HERE/known-failures.txt" "$HERE/floor.txt" "$RC" <<'PY'
import csv, sys
res, known_file, floor_file, rc = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
floor = dict((l.split()[0], int(l.split()[1])) for l in open(floor_file) if l.strip() and not l.startswith("#"))
known = set(l.strip() for l in open(known_file) if l.strip() and not l.startswith("#"))
st = {r["test"]: r["status"] for r in csv.DictReader(open(res + "/results.csv"))}
norm = {"success": "passed", "fail": "failed", "failure": "failed", "skip": "skipped"}
groups = {}
for t, s in st.items():
    groups.setdefault(norm.get(s, s), []).append(t)
for k, v in sorted(groups.items()):
    open(f"{res}/{k}.txt", "w").write("".join(sorted(x + "\n" for x in v)))
failed = sorted(groups.get("failed", []))
unexpected = [t for t in failed if t.split("[")[0] not in known]
for t in failed:
    print("FAILED" if t in unexpected else "failed (known, needs a later issue)", t)
if not st:
    print("tempest: no results")
    sys.exit(1)
print(f"tempest: {len(groups.get('passed', []))} passed, {len(failed)} failed, {len(groups.get('skipped', []))} skipped")
print(f"tempest: {len(unexpected)} unexpected failure(s), {len(failed) - len(unexpected)} known")
bad = []
odd = sorted(set(groups) - {"passed", "failed", "skipped"})
if odd:
    bad.append("statuses other than passed/failed/skipped: " + ", ".join(f"{k} ({len(groups[k])})" for k in odd))
if len(groups.get("passed", [])) < floor["passed"]:
    bad.append(f"{len(groups.get('passed', []))} passed, below the floor of {floor['passed']} (test/tempest/floor.txt)")
if len(groups.get("skipped", [])) > floor["skipped"]:
    bad.append(f"{len(groups.get('skipped', []))} skipped, above the ceiling of {floor['skipped']} (test/tempest/floor.txt)")
if rc != 0 and not failed:
    bad.append(f"tempest exited with {rc} without a failed test")
for b in bad:
    print("tempest:", b)
sys.exit(1 if unexpected or bad else 0)
PY
