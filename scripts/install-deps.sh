#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine, and nothing that is already there.
# - 7z (p7zip-full): the verify tests check archives written by another tool;
# - PostgreSQL server binaries (postgresql): each restore test runs a throwaway cluster;
# - unshare, setpriv, prlimit (util-linux): the restore sandbox's namespace and limits.
# Needs root (or sudo) only when something is missing.
set -euo pipefail

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
command -v 7z >/dev/null 2>&1 || missing+=(p7zip-full)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
for tool in unshare setpriv prlimit; do
  command -v "$tool" >/dev/null 2>&1 || { missing+=(util-linux); break; }
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq || echo "apt-get update failed; trying the install with the lists at hand"
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
