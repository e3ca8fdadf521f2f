# shellcheck shell=bash
# The servers the test suite talks to. Meant to be `source`d (by scripts/test.sh, bench scripts)
# after scripts/install-deps.sh; the caller registers the cleanup:
#   source scripts/services.sh
#   trap restorable_services_cleanup EXIT
# It uses a server the machine already runs where there is a usable one, and otherwise starts its
# own on a free port of 127.0.0.1, with its data in a temp dir; restorable_services_cleanup stops
# what it started and removes those dirs. Exports:
#   RESTORABLE_TEST_DATABASE_URL  postgres://postgres@127.0.0.1:PORT/postgres (trust auth; tests
#                                 create their own databases in it)
#   RESTORABLE_TEST_NATS_URL      nats://127.0.0.1:PORT, a nats-server with JetStream
#   RESTORABLE_NATS_SERVER        absolute path of nats-server (tests start their own servers)
#   RESTORABLE_TEST_AWS_ENDPOINT  http://127.0.0.1:PORT, a moto server
#   RESTORABLE_MOTO_SERVER        absolute path of moto_server
#   RESTORABLE_CHROMIUM           absolute path of chromium, and
#   RESTORABLE_CHROMEDRIVER       of chromedriver (the browser tests start their own; each only
#                                 when found and not set already)
#   AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
#   AWS_DEFAULT_REGION=us-east-1  (each only when not set already)
# RESTORABLE_TEST_FORCE_OWN_SERVICES=1 starts its own PostgreSQL and NATS even where the machine
# runs usable ones (a comma list, e.g. "postgres" or "postgres,nats", forces only those); the moto
# server is always its own. RESTORABLE_SERVICES_TIMEOUT (seconds, default 60) bounds each wait.
# On failure it says why, stops what it had started and returns non-zero.

_rs_started_pids=()   # processes we started (nats-server, moto_server)
_rs_dirs=()           # temp dirs we made
_rs_pg_data=""        # data dir of a cluster we started
_rs_pg_user=""        # the user that cluster runs as ("" = us)
_rs_pg_bin=""

_rs_say() { echo "services: $*"; }
_rs_err() { echo "services: error: $*" >&2; }

_rs_forced() { # _rs_forced NAME: was our own server of that kind asked for?
  case ",${RESTORABLE_TEST_FORCE_OWN_SERVICES:-}," in
    ,1,|,all,|*",$1,"*) return 0 ;;
  esac
  return 1
}

_rs_free_port() { # a port the kernel hands out on 127.0.0.1 (free at the time of asking)
  local py
  py="$(command -v python3 || true)"
  [ -n "$py" ] || py="${RESTORABLE_TOOLS_DIR:-$HOME/.cache/restorable/tools}/moto-venv/bin/python"
  "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

_rs_deadline() { echo $(( $(date +%s) + ${RESTORABLE_SERVICES_TIMEOUT:-60} )); }

_rs_nats_info() { # _rs_nats_info PORT: prints the server's INFO line, if one answers
  # shellcheck disable=SC2016 # $1 is the inner shell's
  timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    IFS= read -r -t 3 line <&3 || exit 1
    printf "%s\n" "$line"' _ "$1" 2>/dev/null
}

_rs_nats_js_ok() { # _rs_nats_js_ok PORT: a NATS server with JetStream on answers there
  local info
  info="$(_rs_nats_info "$1")" || return 1
  case "$info" in
    INFO*'"jetstream":true'*) return 0 ;;
  esac
  return 1
}

_rs_http_ok() { # _rs_http_ok PORT: something answers HTTP there
  # shellcheck disable=SC2016 # $1 is the inner shell's
  timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET / HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n" "$1" >&3
    IFS= read -r -t 3 line <&3 || exit 1
    case "$line" in HTTP/*) exit 0 ;; esac
    exit 1' _ "$1" 2>/dev/null
}

_rs_psql() { # _rs_psql PORT: `select 1` as postgres with no password
  local psql="psql"
  [ -n "$_rs_pg_bin" ] && [ -x "$_rs_pg_bin/psql" ] && psql="$_rs_pg_bin/psql"
  local out
  out="$(env -u PGPASSWORD -u PGSERVICE PGPASSFILE=/nonexistent/restorable-pgpass PGCONNECT_TIMEOUT=3 \
    "$psql" -X -w -q -A -t -h 127.0.0.1 -p "$1" -U postgres -d postgres -c 'select 1' 2>/dev/null)" \
    && [ "$out" = 1 ]
}

_rs_pg_bin_dir() { # the newest /usr/lib/postgresql/N/bin with a server in it
  local d
  # shellcheck disable=SC2012 # version-numbered dirs
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
  if [ -n "$d" ] && [ -x "$d/postgres" ]; then echo "$d"; return 0; fi
  d="$(dirname "$(command -v pg_ctl 2>/dev/null || echo /nonexistent/pg_ctl)")"
  if [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
  return 1
}

_rs_as_pg_user() { # runs a command as the cluster's user
  if [ -n "$_rs_pg_user" ]; then runuser -u "$_rs_pg_user" -- "$@"; else "$@"; fi
}

_rs_postgres() {
  _rs_pg_bin="$(_rs_pg_bin_dir)" || _rs_pg_bin=""
  if ! _rs_forced postgres && _rs_psql 5432; then
    export RESTORABLE_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
    _rs_say "postgres: using the server on 127.0.0.1:5432"
    return 0
  fi
  if [ -z "$_rs_pg_bin" ]; then
    _rs_err "postgres: no usable server on 127.0.0.1:5432 and no PostgreSQL binaries (run scripts/install-deps.sh)"
    return 1
  fi
  local dir port
  if [ "$(id -u)" -eq 0 ]; then
    # PostgreSQL refuses to run as root: the cluster runs as postgres (or nobody), in /tmp so that
    # user can reach it whatever TMPDIR is.
    if id -u postgres >/dev/null 2>&1; then _rs_pg_user=postgres; else _rs_pg_user=nobody; fi
    dir="$(mktemp -d /tmp/restorable-pg.XXXXXX)" || return 1
    _rs_dirs+=("$dir")
    chown "$_rs_pg_user:" "$dir" || return 1
  else
    dir="$(mktemp -d "${TMPDIR:-/tmp}/restorable-pg.XXXXXX")" || return 1
    _rs_dirs+=("$dir")
  fi
  chmod 700 "$dir"
  if ! _rs_as_pg_user "$_rs_pg_bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale \
      >"$dir/initdb.log" 2>&1; then
    _rs_err "postgres: initdb failed:"; tail -n 20 "$dir/initdb.log" >&2
    return 1
  fi
  _rs_pg_data="$dir/data"
  port="$(_rs_free_port)" || return 1
  # pg_ctl -w waits until the server accepts connections (bounded by -t), and fails if it dies.
  if ! _rs_as_pg_user "$_rs_pg_bin/pg_ctl" -D "$_rs_pg_data" -l "$dir/postgres.log" -w \
      -t "${RESTORABLE_SERVICES_TIMEOUT:-60}" \
      -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c fsync=off -c max_connections=200" \
      start >"$dir/pg_ctl.log" 2>&1; then
    _rs_err "postgres: the cluster in $_rs_pg_data did not start on 127.0.0.1:$port:"
    tail -n 20 "$dir/pg_ctl.log" "$dir/postgres.log" >&2 2>/dev/null
    return 1
  fi
  if ! _rs_psql "$port"; then
    _rs_err "postgres: started on 127.0.0.1:$port but 'select 1' as postgres failed"
    return 1
  fi
  export RESTORABLE_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  _rs_say "postgres: started a cluster on 127.0.0.1:$port (as ${_rs_pg_user:-$(id -un)}, data in $_rs_pg_data)"
}

_rs_nats() {
  local bin
  bin="$(command -v nats-server 2>/dev/null || true)"
  [ -n "$bin" ] || for bin in /usr/sbin/nats-server /usr/bin/nats-server ""; do [ -x "$bin" ] && break; done
  if [ -z "$bin" ]; then
    _rs_err "nats: nats-server not found (run scripts/install-deps.sh)"
    return 1
  fi
  bin="$(readlink -f "$bin")"
  export RESTORABLE_NATS_SERVER="$bin"
  if ! _rs_forced nats && _rs_nats_js_ok 4222; then
    export RESTORABLE_TEST_NATS_URL="nats://127.0.0.1:4222"
    _rs_say "nats: using the server on 127.0.0.1:4222 (JetStream on); RESTORABLE_NATS_SERVER=$bin"
    return 0
  fi
  local dir port pid deadline
  dir="$(mktemp -d "${TMPDIR:-/tmp}/restorable-nats.XXXXXX")" || return 1
  _rs_dirs+=("$dir")
  port="$(_rs_free_port)" || return 1
  "$bin" -js -a 127.0.0.1 -p "$port" -sd "$dir/js" -l "$dir/nats.log" </dev/null >/dev/null 2>&1 &
  pid=$!
  _rs_started_pids+=("$pid")
  deadline="$(_rs_deadline)"
  until _rs_nats_js_ok "$port"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      _rs_err "nats: nats-server exited before answering on 127.0.0.1:$port:"; tail -n 20 "$dir/nats.log" >&2
      return 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      _rs_err "nats: no INFO with JetStream on from 127.0.0.1:$port within ${RESTORABLE_SERVICES_TIMEOUT:-60}s:"
      tail -n 20 "$dir/nats.log" >&2
      return 1
    fi
    sleep 0.1
  done
  export RESTORABLE_TEST_NATS_URL="nats://127.0.0.1:$port"
  _rs_say "nats: started nats-server on 127.0.0.1:$port (JetStream on, pid $pid); RESTORABLE_NATS_SERVER=$bin"
}

_rs_moto() {
  local bin venv_bin
  venv_bin="${RESTORABLE_TOOLS_DIR:-$HOME/.cache/restorable/tools}/moto-venv/bin/moto_server"
  if [ -x "$venv_bin" ]; then
    bin="$venv_bin"
  else
    bin="$(command -v moto_server 2>/dev/null || true)"
    if [ -z "$bin" ]; then
      _rs_err "moto: no moto_server in $venv_bin nor on PATH (run scripts/install-deps.sh)"
      return 1
    fi
  fi
  bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")" # absolute; venv scripts are kept, not resolved
  export RESTORABLE_MOTO_SERVER="$bin"
  local dir port pid deadline
  dir="$(mktemp -d "${TMPDIR:-/tmp}/restorable-moto.XXXXXX")" || return 1
  _rs_dirs+=("$dir")
  port="$(_rs_free_port)" || return 1
  "$bin" -H 127.0.0.1 -p "$port" </dev/null >"$dir/moto.log" 2>&1 &
  pid=$!
  _rs_started_pids+=("$pid")
  deadline="$(_rs_deadline)"
  until _rs_http_ok "$port"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      _rs_err "moto: moto_server exited before answering on 127.0.0.1:$port:"; tail -n 20 "$dir/moto.log" >&2
      return 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      _rs_err "moto: no HTTP answer from 127.0.0.1:$port within ${RESTORABLE_SERVICES_TIMEOUT:-60}s:"
      tail -n 20 "$dir/moto.log" >&2
      return 1
    fi
    sleep 0.1
  done
  export RESTORABLE_TEST_AWS_ENDPOINT="http://127.0.0.1:$port"
  export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
  export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
  export AWS_REGION="${AWS_REGION:-us-east-1}"
  export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-$AWS_REGION}"
  _rs_say "moto: started $bin on 127.0.0.1:$port (pid $pid)"
}

_rs_browser() { # nothing to start: the browser tests spawn their own chromedriver
  local bin
  if [ -z "${RESTORABLE_CHROMIUM:-}" ] && bin="$(command -v chromium 2>/dev/null)"; then
    export RESTORABLE_CHROMIUM="$bin"
  fi
  if [ -z "${RESTORABLE_CHROMEDRIVER:-}" ] && bin="$(command -v chromedriver 2>/dev/null)"; then
    export RESTORABLE_CHROMEDRIVER="$bin"
  fi
  _rs_say "browser: RESTORABLE_CHROMIUM=${RESTORABLE_CHROMIUM:-(not found)}" \
    "RESTORABLE_CHROMEDRIVER=${RESTORABLE_CHROMEDRIVER:-(not found)}"
}

_rs_stop_pid() { # TERM, then KILL after 10 s; reaps it
  local pid="$1"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
}

# Stops everything this file started and removes its temp dirs; safe to call more than once.
restorable_services_cleanup() {
  local pid dir errexit=0
  case $- in *e*) errexit=1; set +e ;; esac # called from an EXIT trap under set -e: do it all
  for pid in "${_rs_started_pids[@]}"; do _rs_stop_pid "$pid"; done
  _rs_started_pids=()
  if [ -n "$_rs_pg_data" ] && [ -f "$_rs_pg_data/postmaster.pid" ]; then
    _rs_as_pg_user "$_rs_pg_bin/pg_ctl" -D "$_rs_pg_data" -m fast -w -t 30 stop >/dev/null 2>&1 \
      || _rs_as_pg_user "$_rs_pg_bin/pg_ctl" -D "$_rs_pg_data" -m immediate -w -t 30 stop >/dev/null 2>&1 \
      || echo "services: warning: could not stop the cluster in $_rs_pg_data" >&2
  fi
  _rs_pg_data=""
  for dir in "${_rs_dirs[@]}"; do rm -rf "$dir"; done
  _rs_dirs=()
  [ "$errexit" -eq 0 ] || set -e
  return 0
}

restorable_services_start() {
  _rs_postgres && _rs_nats && _rs_moto && _rs_browser
}

if ! restorable_services_start; then
  restorable_services_cleanup
  # shellcheck disable=SC2317 # reached when run rather than sourced
  return 1 2>/dev/null || exit 1
fi
