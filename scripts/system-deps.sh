#!/usr/bin/env bash
# Installs the Debian packages the test suite starts as real servers, when they are missing.
# Idempotent; needs root (or sudo) only when something is missing.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "$2" ]; }

have wrk /usr/bin/wrk || need+=(wrk)
have redis-server /usr/bin/redis-server || need+=(redis-server)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "system-deps: installing ${need[*]}" >&2
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
# Tests start their own servers on free ports; keep package scripts from starting system services.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee "$policy" >/dev/null
  "${sudo_cmd[@]}" chmod +x "$policy"
  made_policy=1
fi
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
if [ "$made_policy" -eq 1 ]; then
  "${sudo_cmd[@]}" rm -f "$policy"
fi
