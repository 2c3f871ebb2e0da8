"""CPython's socketserver.ForkingTCPServer serving the uppercase protocol.

    python forking_server.py PORT [POLL_INTERVAL|none]

ForkingMixIn collects children in ``service_actions``, which
``serve_forever`` calls once per ``poll_interval`` and after each request.
With ``none`` the loop blocks until the next connection, so the children
that end after the last one stay zombies: a third-party `poll` mode.
"""

import socketserver
import sys


class Upper(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line.upper())


class Server(socketserver.ForkingTCPServer):
    allow_reuse_address = True
    request_queue_size = 1024


if __name__ == "__main__":
    port = int(sys.argv[1])
    interval = None if sys.argv[2:] == ["none"] else float((sys.argv[2:] or ["0.5"])[0])
    with Server(("127.0.0.1", port), Upper) as server:
        server.serve_forever(poll_interval=interval)  # type: ignore[arg-type]
