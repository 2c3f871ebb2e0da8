#!/usr/bin/env bash
# The CI gate to copy into a pipeline: fail the job when zombies leak.
#
#   ci-zero-zombies.sh [--no-self-check] [--builtin-flood] [PORT [RUN-OPTIONS...] -- CMD [ARGS...]]
#
#   ci-zero-zombies.sh                                  # the self-check only
#   ci-zero-zombies.sh 8080 -- ./my-server --port 8080  # the self-check, then your server
#   ci-zero-zombies.sh --no-self-check 8080 --junit-xml zombiewatch.xml --settle 2 -- ./my-server
#
# The self-check runs every built-in reaping mode against its expected
# verdict (`zombiewatch --mode all --check`, 15-30 s): a check of the machine
# and of zombiewatch itself. The modes expected to fail fail by timing, so a
# very busy runner can fail it; --no-self-check skips it. With a command,
# the gate runs it under `zombiewatch run`, loads it on 127.0.0.1:PORT once
# it listens (with flood.sh, beside this script; with --builtin-flood, with
# zombiewatch's own flooder, which also measures latency), and passes
# zombiewatch's exit status through: 0 no zombie leaked, 1 zombies leaked,
# 2 usage error, 3 could not measure (the port is another program's, ...),
# 4 the load failed (flood.sh saw failed connections), 130 interrupted; a
# zombiewatch that does not run here exits 3 before anything. RUN-OPTIONS
# (between PORT and --) go to `zombiewatch run` as they are: --junit-xml
# FILE, --settle S, --max-leaked N, --ready-timeout S, ... (its --help).
#
# CONNECTIONS (default 500) and PARALLEL (default 20) size the load;
# ZOMBIEWATCH overrides the command (default: zombiewatch on PATH, else
# python3 -m zombiewatch).
set -uo pipefail

usage() {
	echo "usage: ci-zero-zombies.sh [--no-self-check] [--builtin-flood] [PORT [RUN-OPTIONS...] -- CMD [ARGS...]]"
}
usage_error() {
	echo "ci-zero-zombies.sh: $* ($(usage))" >&2
	exit 2
}

self_check=1
builtin_flood=0
while (($# > 0)); do
	case $1 in
	--no-self-check) self_check=0 ;;
	--builtin-flood) builtin_flood=1 ;;
	-h | --help) # the comment that opens this file
		awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
		exit 0
		;;
	-*) usage_error "unknown option $1 (options of zombiewatch run go after PORT)" ;;
	*) break ;;
	esac
	shift
done

port=
run_options=()
if (($# > 0)); then
	port=$1
	shift
	if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
		usage_error "PORT must be 1-65535, not '$port'"
	fi
	while (($# > 0)) && [[ $1 != -- ]]; do
		run_options+=("$1")
		shift
	done
	(($# >= 2)) || usage_error "PORT needs -- CMD after it"
	shift # the --
elif ((builtin_flood)); then
	usage_error "--builtin-flood needs PORT -- CMD"
elif ((!self_check)); then
	usage_error "nothing to check: --no-self-check and no PORT -- CMD"
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=zombiewatch/scripts/zombiewatch-command.sh
source "$here/zombiewatch-command.sh"

if ((self_check)); then
	echo "== self-check: every built-in mode meets its expected verdict"
	"${zw[@]}" --mode all --check --connections "${CONNECTIONS:-500}"
	status=$?
	if ((status != 0)); then
		echo "ci-zero-zombies.sh: the self-check of the built-in modes failed (exit $status); --no-self-check skips it" >&2
		exit "$status"
	fi
fi

if [[ -z $port ]]; then
	exit 0
fi
if ((builtin_flood)); then
	echo "== $* under zombiewatch's flooder on 127.0.0.1:$port"
	load=(--flood "127.0.0.1:$port" --connections "${CONNECTIONS:-500}" --concurrency "${PARALLEL:-20}")
else
	echo "== $* under flood.sh on 127.0.0.1:$port"
	load=(--wait-port "$port" --load "$(printf '%q ' "$here/flood.sh" 127.0.0.1 "$port" "${CONNECTIONS:-500}" "${PARALLEL:-20}")")
fi
# The user's options last: where they repeat one of ours, theirs wins.
"${zw[@]}" run "${load[@]}" "${run_options[@]}" -- "$@"
status=$?
if ((status != 0)); then
	echo "ci-zero-zombies.sh: $1 failed the zero-zombie gate (exit $status)" >&2
fi
exit "$status"
