#!/usr/bin/env bash
# Installs the Debian packages the test suite and benchmarks need, when they are missing:
# servers the tests start themselves (PostgreSQL, MariaDB, Redis), Chromium and a few tools.
# Idempotent; needs root (or sudo) only when something is missing.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "$2" ]; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# PostgreSQL's server binaries live in /usr/lib/postgresql/<version>/bin, off the PATH.
have_pg() { command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; }

have wrk /usr/bin/wrk || need+=(wrk)
# The deployment guide's walkthrough (tests/test_deployment_guide.py) runs curl and openssl.
have curl /usr/bin/curl || need+=(curl)
have openssl /usr/bin/openssl || need+=(openssl)
have redis-server /usr/bin/redis-server || need+=(redis-server)
have_pg || need+=(postgresql)
have mariadbd /usr/sbin/mariadbd || need+=(mariadb-server)
have mariadb-install-db /usr/bin/mariadb-install-db || need+=(mariadb-server)
# The image smoke test (tests/deploy) runs the server in its own network namespace...
have ip /usr/sbin/ip || need+=(iproute2)
{ have unshare /usr/bin/unshare && have setpriv /usr/bin/setpriv; } || need+=(util-linux)
# ... with a system Python the unprivileged image user can run, in fresh virtual environments.
installed python3-venv || need+=(python3-venv)
# The demo page's browser test (tests/demo) drives Chromium through Playwright.
have chromium /usr/bin/chromium || need+=(chromium)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "system-deps: installing ${need[*]}" >&2
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
# The packages' own services must not start: the tests run throwaway servers of their own.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee "$policy" >/dev/null
  "${sudo_cmd[@]}" chmod +x "$policy"
  created_policy=1
fi
trap '[ "$created_policy" -eq 0 ] || "${sudo_cmd[@]}" rm -f "$policy"' EXIT
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
