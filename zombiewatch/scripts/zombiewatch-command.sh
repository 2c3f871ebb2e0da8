# shellcheck shell=bash disable=SC2034  # zw is for the scripts that source this
# Sourced by the scripts that run zombiewatch: sets the array `zw` to the
# zombiewatch command and checks that it runs, before the script does
# anything else, so that a missing install exits 3 with one line naming the
# fix instead of reading as a leak. ZOMBIEWATCH overrides the command (e.g.
# "python3 -m zombiewatch" from a checkout, or .venv/bin/zombiewatch); else
# zombiewatch on PATH; else python3 -m zombiewatch.
if [[ -n ${ZOMBIEWATCH:-} ]]; then
	read -r -a zw <<<"$ZOMBIEWATCH"
elif command -v zombiewatch >/dev/null; then
	zw=(zombiewatch)
else
	zw=(python3 -m zombiewatch)
fi
if ! "${zw[@]}" --version >/dev/null 2>&1; then
	if [[ -n ${ZOMBIEWATCH:-} ]]; then
		echo "${0##*/}: ZOMBIEWATCH='$ZOMBIEWATCH' does not run zombiewatch: point it at a zombiewatch that runs (e.g. .venv/bin/zombiewatch) or unset it" >&2
	else
		echo "${0##*/}: zombiewatch is not installed here (not on PATH, and python3 -m zombiewatch fails): activate the venv it is installed in (. .venv/bin/activate), install it (README, Install), or set ZOMBIEWATCH=/path/to/zombiewatch" >&2
	fi
	exit 3
fi
