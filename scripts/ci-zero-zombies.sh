#!/usr/bin/env bash
# The CI gate to copy into a pipeline: fail the job when zombies leak.
#
#   scripts/ci-zero-zombies.sh                      # the built-in modes only
#   scripts/ci-zero-zombies.sh PORT -- ./my-server  # and your own server
#
# Step 1 checks that every built-in reaping mode meets its expected verdict
# (a sanity check of the machine and of zombiewatch itself). Step 2, when a
# command is given, runs it under `zombiewatch run`, loads it with
# scripts/flood.sh on 127.0.0.1:PORT once it listens, and passes
# zombiewatch's exit status through: 0 no zombie leaked, 1 zombies leaked,
# 2 usage error, 3 could not measure (the port is another program's, ...),
# 4 the load failed (flood.sh saw failed connections), 130 interrupted.
#
# CONNECTIONS (default 500) and PARALLEL (default 20) size the load;
# ZOMBIEWATCH overrides the command (default: zombiewatch on PATH, else
# python3 -m zombiewatch).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/zombiewatch-command.sh
source "$here/zombiewatch-command.sh"

if [[ $# -ne 0 && ($# -lt 3 || $2 != "--") ]]; then
	echo "usage: ci-zero-zombies.sh [PORT -- CMD [ARGS...]]" >&2
	exit 2
fi

echo "== every built-in mode meets its expected verdict"
"${zw[@]}" --mode all --check --connections "${CONNECTIONS:-500}"
status=$?
if ((status != 0)); then
	echo "ci-zero-zombies: the built-in modes check failed (exit $status)" >&2
	exit "$status"
fi

if (($# == 0)); then
	exit 0
fi
port=$1
shift 2
echo "== $* under load on 127.0.0.1:$port"
load=$(printf '%q ' "$here/flood.sh" 127.0.0.1 "$port" "${CONNECTIONS:-500}" "${PARALLEL:-20}")
"${zw[@]}" run --wait-port "$port" --load "$load" -- "$@"
status=$?
if ((status != 0)); then
	echo "ci-zero-zombies: $1 failed the zero-zombie gate (exit $status)" >&2
fi
exit "$status"
