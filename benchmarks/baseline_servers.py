"""CPython's socketserver serving zombiewatch's upper-case line protocol.

The baselines of ``benchmarks/bench.py``, kept in their own file so that
the server process imports what such a server imports and nothing of the
benchmark:

    python benchmarks/baseline_servers.py forking|threading BACKLOG

Binds 127.0.0.1 on a free port, prints one JSON ready line
(``{"event": "listening", "port": P, "pid": N}``) and serves until killed.
``forking 5`` is ``ForkingTCPServer`` as shipped (``request_queue_size``
5); the server classes are otherwise used as they come.
"""

import json
import os
import socketserver
import sys


class UpperHandler(socketserver.StreamRequestHandler):
    """Answer each line in upper case until EOF; 10 s of idleness end it."""

    timeout = 10

    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line.upper())


def main() -> None:
    """Start the server named on the command line."""
    kind, backlog = sys.argv[1], int(sys.argv[2])
    server_class: type[socketserver.TCPServer]
    if kind == "forking":

        class ForkingServer(socketserver.ForkingTCPServer):
            request_queue_size = backlog
            allow_reuse_address = True

        server_class = ForkingServer
    else:

        class ThreadingServer(socketserver.ThreadingTCPServer):
            request_queue_size = backlog
            allow_reuse_address = True
            daemon_threads = True

        server_class = ThreadingServer
    server = server_class(("127.0.0.1", 0), UpperHandler)
    ready = {"event": "listening", "port": server.server_address[1], "pid": os.getpid()}
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
