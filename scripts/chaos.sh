#!/usr/bin/env bash
# The chaos test (tests/integration/chaos.rs), longer: the production deployment — `serve` and two
# `worker --stage all` processes on a private PostgreSQL cluster, a private nats-server and a moto
# server as the local AWS — with healthy simulated PBXes on a one-minute schedule, while workers
# are killed -9 at random, PostgreSQL is stopped and resumed and nats-server is killed and
# restarted. Builds in release, runs it, and writes its figures to RELIABILITY.md.
#
# Usage: scripts/chaos.sh [--minutes N] [--pg-outage SECS] [--nats-outage SECS]
#                         [--kill-every MIN-MAX] [--outage-every SECS] [--pbxes N]
#                         [--padding-bytes N] [--settle SECS] [--seed N] [--out FILE] [--debug]
# Defaults: 10 minutes of faults, PostgreSQL down 30 s and nats-server down 10 s once every
# 5 minutes, a worker killed every 10–20 s, 8 PBXes, RELIABILITY.md at the top of the tree.
# --debug: the dev profile instead of release (no second build of the whole tree).
# Each maps to an environment variable of the test (RESTORABLE_CHAOS_*), which may be set
# instead. The process logs stay in the directory the test prints (RESTORABLE_CHAOS_LOG_DIR).
# Exit status: the test's (non-zero when a check failed; RELIABILITY.md is written either way).
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=10
pg_outage="${RESTORABLE_CHAOS_PG_OUTAGE_SECS:-30}"
nats_outage="${RESTORABLE_CHAOS_NATS_OUTAGE_SECS:-10}"
kill_min="${RESTORABLE_CHAOS_KILL_MIN_SECS:-10}"
kill_max="${RESTORABLE_CHAOS_KILL_MAX_SECS:-20}"
outage_every="${RESTORABLE_CHAOS_OUTAGE_EVERY_SECS:-300}"
pbxes="${RESTORABLE_CHAOS_PBXES:-8}"
padding="${RESTORABLE_CHAOS_PADDING_BYTES:-0}"
settle="${RESTORABLE_CHAOS_SETTLE_SECS:-600}"
seed="${RESTORABLE_CHAOS_SEED:-}"
out="RELIABILITY.md"
profile=(--release)
profile_name=release
[ -n "${RESTORABLE_CHAOS_SECS:-}" ] && minutes=""

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
number() { # number NAME VALUE: a whole number, or die
  case "$2" in ''|*[!0-9]*) echo "chaos: $1 must be a whole number, not '$2'" >&2; exit 2 ;; esac
}

while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    --pg-outage) pg_outage="$2"; shift 2 ;;
    --nats-outage) nats_outage="$2"; shift 2 ;;
    --kill-every)
      kill_min="${2%-*}"; kill_max="${2#*-}"; shift 2 ;;
    --outage-every) outage_every="$2"; shift 2 ;;
    --pbxes) pbxes="$2"; shift 2 ;;
    --padding-bytes) padding="$2"; shift 2 ;;
    --settle) settle="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --debug) profile=(); profile_name=dev; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "chaos: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
if [ -n "$minutes" ]; then
  number --minutes "$minutes"
  run_secs=$(( minutes * 60 ))
else
  run_secs="$RESTORABLE_CHAOS_SECS"
fi
for pair in "--pg-outage:$pg_outage" "--nats-outage:$nats_outage" "--kill-every(min):$kill_min" \
  "--kill-every(max):$kill_max" "--outage-every:$outage_every" "--pbxes:$pbxes" \
  "--padding-bytes:$padding" "--settle:$settle" "RESTORABLE_CHAOS_SECS:$run_secs"; do
  number "${pair%%:*}" "${pair#*:}"
done
[ -z "$seed" ] || number --seed "$seed"

bash scripts/install-deps.sh
trap 'exit 130' INT
trap 'exit 143' TERM
# Only moto is used from here (the test starts its own PostgreSQL and nats-server, which it
# stops and kills); services.sh also checks the machine's servers, which is harmless.
# shellcheck source=scripts/services.sh
source scripts/services.sh
trap restorable_services_cleanup EXIT

report="$(mktemp "${TMPDIR:-/tmp}/restorable-chaos-report.XXXXXX")"
log_dir="${RESTORABLE_CHAOS_LOG_DIR:-${TMPDIR:-/tmp}/restorable-chaos-$(date +%Y%m%dT%H%M%S)}"
export RESTORABLE_CHAOS_SECS="$run_secs"
export RESTORABLE_CHAOS_PG_OUTAGE_SECS="$pg_outage"
export RESTORABLE_CHAOS_NATS_OUTAGE_SECS="$nats_outage"
export RESTORABLE_CHAOS_KILL_MIN_SECS="$kill_min"
export RESTORABLE_CHAOS_KILL_MAX_SECS="$kill_max"
export RESTORABLE_CHAOS_OUTAGE_EVERY_SECS="$outage_every"
export RESTORABLE_CHAOS_PBXES="$pbxes"
export RESTORABLE_CHAOS_PADDING_BYTES="$padding"
export RESTORABLE_CHAOS_SETTLE_SECS="$settle"
export RESTORABLE_CHAOS_REPORT="$report"
export RESTORABLE_CHAOS_LOG_DIR="$log_dir"
[ -z "$seed" ] || export RESTORABLE_CHAOS_SEED="$seed"

echo "chaos: building ($profile_name profile)"
cargo build "${profile[@]}" --bin restorable
cargo test "${profile[@]}" -p restorable --test integration --no-run
echo "chaos: ${run_secs}s of faults (PostgreSQL down ${pg_outage}s and NATS down ${nats_outage}s every" \
  "${outage_every}s, a worker killed every ${kill_min}-${kill_max}s), ${pbxes} PBXes; logs in $log_dir"
status=0
cargo test "${profile[@]}" -p restorable --test integration -- integration::chaos:: --nocapture || status=$?

{
  echo "# Reliability"
  echo
  echo "What the production deployment survives, measured by \`scripts/chaos.sh\` (the chaos test"
  echo "\`tests/integration/chaos.rs\` run longer): one \`restorable serve\` and two \`restorable worker --stage all\`"
  echo "processes on one host, on PostgreSQL, NATS JetStream and a local AWS endpoint (moto: S3 with"
  echo "Object Lock, KMS), with ${pbxes} healthy simulated PBXes on a one-minute schedule. For"
  echo "${run_secs} s a worker is killed with SIGKILL every ${kill_min}–${kill_max} s (and restarted),"
  echo "PostgreSQL is stopped for ${pg_outage} s and nats-server killed for ${nats_outage} s once every"
  echo "${outage_every} s; then the faults stop, the instances are stopped and the system settles."
  echo
  echo "- **cycles lost or stuck**: opened and never closed after settling;"
  echo "- **duplicated**: a cycle with a ladder event (or its opening/closing) recorded twice;"
  echo "- **false failures**: \`Failed\` events — none of the PBXes has a fault, so each is a false red;"
  echo "- **time to the first completed cycle** after an outage: from the server's return to the"
  echo "  first cycle closed without failure."
  echo
  echo "Run of $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, commit" \
    "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')," \
    "${profile_name} build, exit status ${status}:"
  echo
  if [ -s "$report" ]; then
    cat "$report"
  else
    echo "The test wrote no figures (it stopped before the end; see its output and $log_dir)."
  fi
} >"$out"
rm -f "$report"
echo "chaos: wrote $out (test exit status $status)"
exit "$status"
