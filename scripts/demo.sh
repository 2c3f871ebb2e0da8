#!/usr/bin/env bash
# The lesson of the classic fork server in thirty seconds: the same server
# and the same flood, once with a parent that never waits for its children
# (`none`) and once with a SIGCHLD handler that loops waitpid (`sigchld`).
#
#   scripts/demo.sh [CONNECTIONS]
#
# ZOMBIEWATCH overrides the command (default: zombiewatch on PATH, else
# python3 -m zombiewatch).
set -uo pipefail

connections=${1:-300}
if ! [[ $connections =~ ^[0-9]+$ ]] || ((connections < 1 || connections > 100000)); then
	echo "demo.sh: CONNECTIONS must be 1-100000, not '$connections'" >&2
	exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=zombiewatch/scripts/zombiewatch-command.sh
source "$here/../zombiewatch/scripts/zombiewatch-command.sh"

run() {
	local mode=$1
	echo "== $mode: $("${zw[@]}" modes | awk -v m="$mode" '$1 == m { $1 = $2 = $3 = $4 = ""; sub(/^ +/, ""); print }')"
	# Its log lines would clutter the lesson; they are shown if it could not measure.
	"${zw[@]}" --mode "$mode" --connections "$connections" --settle 0.5 2>"$log"
	status=$?
	echo "-> exit status $status"
	echo
	if ((status > 1)); then
		cat "$log" >&2
		echo "demo.sh: zombiewatch could not measure $mode (exit $status); no lesson to draw" >&2
		exit "$status"
	fi
	return "$status"
}

log=$(mktemp) || exit 3
trap 'rm -f "$log"' EXIT

run none
none_status=$?
run sigchld
sigchld_status=$?

echo "none leaves a zombie per connection until its parent exits (exit $none_status);"
echo "sigchld collects every child as it ends, even when SIGCHLDs coalesce (exit $sigchld_status)."
((none_status == 1 && sigchld_status == 0))
