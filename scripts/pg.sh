#!/usr/bin/env bash
# Start (or stop) a throw-away PostgreSQL cluster on loopback for tests.
#   scripts/pg.sh start DIR PORT   -> prints the DSN of database "neutrino"
#   scripts/pg.sh stop DIR
set -euo pipefail
cmd="${1:?start|stop}"; dir="${2:?dir}"
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bin" ] || { echo "pg.sh: PostgreSQL is not installed" >&2; exit 1; }
asuser() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$cmd" in
start)
  port="${3:?port}"
  mkdir -p "$dir"; [ "$(id -u)" = 0 ] && chown postgres "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    asuser "$bin/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log" 2>&1
  fi
  if ! asuser "$bin/pg_ctl" -D "$dir/data" -w -l "$dir/server.log" \
    -o "-h 127.0.0.1 -p $port -k $dir -c fsync=on -c max_connections=200" start >/dev/null; then
    echo "pg.sh: PostgreSQL did not start on port $port; its log:" >&2
    tail -20 "$dir/server.log" >&2 || true
    exit 1
  fi
  asuser "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres neutrino 2>/dev/null || true
  echo "postgres://postgres@127.0.0.1:$port/neutrino?sslmode=disable"
  ;;
stop)
  asuser "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
  ;;
esac
