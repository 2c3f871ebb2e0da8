#!/usr/bin/env bash
# The uppercase line protocol for inetd-style servers (socat EXEC:,
# tcpserver): one process per connection, stdin/stdout are the socket.
export LC_ALL=C
while IFS= read -r line; do
	printf '%s\n' "${line^^}"
done
