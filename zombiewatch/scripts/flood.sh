#!/usr/bin/env bash
# Flood a line server with COUNT connections, PARALLEL at a time, using only
# bash and coreutils (no Python, no nc): each connection sends one line and
# must get it back in upper case. Prints ok/failed counts and the elapsed
# time; exits 1 if any connection failed, 3 if none could even connect
# (nothing listens there), 2 on bad arguments, 130 on Ctrl-C.
#
#   scripts/flood.sh HOST PORT COUNT [PARALLEL]
#
# FLOOD_TIMEOUT (default 5, above 0) bounds each connection in seconds, so
# the whole flood is bounded by COUNT / PARALLEL * FLOOD_TIMEOUT. Counts are
# decimal (a leading zero is not octal). Each connection sends its line and
# reads the reply without half-closing: a relay server (socat -t 0) would
# take a half-close for the end and drop the reply.
set -uo pipefail
export LC_ALL=C # ${x^^} must upper-case ASCII only, as the server does

die() {
	echo "flood.sh: $*" >&2
	exit 2
}
# decimal NAME VALUE MIN MAX: print VALUE, a decimal integer in [MIN, MAX],
# without leading zeros, or die. Read as base 10 (10#): bash arithmetic
# would take 010 as octal 8 and fail on 08.
decimal() {
	if ! [[ $2 =~ ^[0-9]{1,9}$ ]] || ((10#$2 < $3 || 10#$2 > $4)); then
		die "$1 must be $3-$4, not '$2'"
	fi
	echo $((10#$2))
}

[[ $# -ge 3 && $# -le 4 ]] || die "usage: flood.sh HOST PORT COUNT [PARALLEL]"
host=$1 port=$2 count=$3 parallel=${4:-10}
timeout_s=${FLOOD_TIMEOUT:-5}
[[ -n $host ]] || die "empty HOST"
port=$(decimal PORT "$port" 1 65535) || exit 2
count=$(decimal COUNT "$count" 1 1000000) || exit 2
parallel=$(decimal PARALLEL "$parallel" 1 1000) || exit 2
# coreutils timeout takes 0 as "no limit": a connection that never ends
# would hold the flood forever, so 0 is refused.
if ! [[ $timeout_s =~ ^[0-9]+(\.[0-9]+)?$ ]] || [[ $timeout_s =~ ^0*(\.0*)?$ ]]; then
	die "FLOOD_TIMEOUT must be a number of seconds above 0, not '$timeout_s'"
fi

results=$(mktemp) || die "cannot create a temporary file"

# One connection, run by its own bash under coreutils timeout. It appends
# one result line (shorter than PIPE_BUF, so appends never interleave); a
# connection that timed out writes nothing and is counted as a timeout.
# shellcheck disable=SC2016 # expanded by the inner bash, not here
one='
	line="zombiewatch flood.sh $3 Hello"
	{ exec 3<>"/dev/tcp/$1/$2"; } 2>/dev/null || { echo "connect failed" >>"$4"; exit 1; }
	printf "%s\n" "$line" >&3
	IFS= read -r reply <&3 || { echo "no reply" >>"$4"; exit 1; }
	if [[ $reply == "${line^^}" ]]; then echo ok >>"$4"; else echo "wrong reply" >>"$4"; fi
'

stop() {
	trap - INT TERM
	# The jobs are the timeout processes, each the leader of a process group
	# of its own with its bash. The signal goes to the whole group, not to
	# timeout alone: a timeout signalled just after its fork, before it has
	# noted its child's pid, exits without passing the signal on, and its
	# bash would wait for a reply forever (docs/FACTS.md, "flood.sh and
	# coreutils timeout"). Then to the pid, for a timeout that has not made
	# its group yet.
	local pid
	for pid in $(jobs -p); do
		kill -TERM -- "-$pid" "$pid" 2>/dev/null
	done
	wait
	rm -f "$results"
	echo "flood.sh: interrupted" >&2
	exit 130
}
trap stop INT TERM

start=$(date +%s%N)
running=0
for ((i = 0; i < count; i++)); do
	# timeout puts itself and its bash in a process group of their own; a
	# Ctrl-C reaches us, and stop() passes it on to every group.
	timeout "$timeout_s" bash -c "$one" flood "$host" "$port" "$i" "$results" &
	if ((++running >= parallel)); then
		wait -n
		((running--))
	fi
done
wait
elapsed_ms=$((($(date +%s%N) - start) / 1000000))

ok=$(grep -c '^ok$' "$results")
answered=$(wc -l <"$results")
failed=$((count - ok))
echo "ok $ok failed $failed elapsed $((elapsed_ms / 1000)).$(printf '%03d' $((elapsed_ms % 1000))) s"
if ((failed > 0)); then
	{
		grep -v '^ok$' "$results" | sort | uniq -c | sed 's/^ */  /'
		((count > answered)) && echo "  $((count - answered)) timeout"
	} >&2
fi
refused=$(grep -c '^connect failed$' "$results")
rm -f "$results"
if ((refused == count)); then
	echo "flood.sh: no connection to $host:$port got through" >&2
	exit 3
fi
((failed == 0))
