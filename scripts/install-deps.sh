#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine, and nothing that is already there.
# - 7z (p7zip-full): the verify tests check archives written by another tool;
# - PostgreSQL server binaries and psql (postgresql): each restore test runs a throwaway cluster,
#   and scripts/services.sh starts one when the machine runs none it can use;
# - unshare, setpriv, prlimit, runuser (util-linux): the restore sandbox's namespace and limits,
#   and running clusters as an unprivileged user;
# - nats-server (nats-server): the event-bus tests start, stop and restart their own servers;
# - chromium and chromedriver (chromium, chromium-driver): the web pages' browser tests
#   (api/tests/browser.rs) drive a headless Chromium over WebDriver;
# - wrk (wrk): the load tool of the fleet page and API benchmark (api/benches/fleet.rs);
# - moto server (PyPI moto[server], pinned), in a venv of its own at
#   ${RESTORABLE_TOOLS_DIR:-$HOME/.cache/restorable/tools}/moto-venv: the local AWS (S3, KMS);
#   python3-venv and python3 come from Debian when no python3 on PATH can make a venv.
# Needs root (or sudo) only when a Debian package is missing.
set -euo pipefail

MOTO_VERSION=5.2.5
tools_dir="${RESTORABLE_TOOLS_DIR:-$HOME/.cache/restorable/tools}"
moto_venv="$tools_dir/moto-venv"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
command -v 7z >/dev/null 2>&1 || missing+=(p7zip-full)
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 \
  || ! { command -v psql >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/psql >/dev/null 2>&1; }; then
  missing+=(postgresql)
fi
for tool in unshare setpriv prlimit runuser; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || [ -x "/usr/bin/$tool" ] \
    || { missing+=(util-linux); break; }
done
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || [ -x /usr/bin/nats-server ] \
  || missing+=(nats-server)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
command -v wrk >/dev/null 2>&1 || [ -x /usr/bin/wrk ] || missing+=(wrk)

# The python that makes the moto venv: only looked for when the venv has no moto_server yet.
venv_python=""
if [ ! -x "$moto_venv/bin/moto_server" ]; then
  if command -v python3 >/dev/null 2>&1 && python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    venv_python="$(command -v python3)"
  else
    venv_python=/usr/bin/python3
    if ! { [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import venv, ensurepip' >/dev/null 2>&1; }; then
      missing+=(python3 python3-venv)
    fi
  fi
fi

if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq || echo "apt-get update failed; trying the install with the lists at hand"
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ -n "$venv_python" ]; then
  echo "installing: moto[server]==$MOTO_VERSION into $moto_venv"
  mkdir -p "$tools_dir"
  # --clear: a venv left half-made by an earlier run is made anew.
  "$venv_python" -m venv --clear "$moto_venv"
  "$moto_venv/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  if [ ! -x "$moto_venv/bin/moto_server" ]; then
    echo "install-deps: moto[server] installed but $moto_venv/bin/moto_server is missing" >&2
    exit 1
  fi
fi
