#!/bin/sh
# A container entrypoint: start a double-forking daemon, then stay in the
# foreground. As PID 1, sh collects any child in the wait of each
# foreground command, the daemon orphaned to it included.
"${PYTHON:-python3}" "$(dirname "$0")/daemon.py" 0.3 "$@"
while :; do
	sleep 0.2
done
