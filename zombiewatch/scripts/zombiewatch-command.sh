# shellcheck shell=bash disable=SC2034  # zw is for the scripts that source this
# Sourced by the scripts here: sets the array `zw` to the zombiewatch command.
# ZOMBIEWATCH overrides it (e.g. "python3 -m zombiewatch" from a checkout);
# else zombiewatch on PATH; else python3 -m zombiewatch.
if [[ -n ${ZOMBIEWATCH:-} ]]; then
	read -r -a zw <<<"$ZOMBIEWATCH"
elif command -v zombiewatch >/dev/null; then
	zw=(zombiewatch)
else
	zw=(python3 -m zombiewatch)
fi
