"""CPython's socketserver.ForkingTCPServer serving the uppercase protocol.

    python forking_server.py PORT [POLL_INTERVAL|none]

ForkingMixIn collects children in ``service_actions``, which
``serve_forever`` calls once per ``poll_interval`` and after each request.
With ``none`` the loop blocks until the next connection and collects only
then, before it forks, so the last children stay zombies: a third-party
`poll` mode.
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


class CollectOnConnect(Server):
    """Collects only as a client connects, just before it forks.

    As shipped, the collection after the last request races the last
    children: a parent descheduled for a few milliseconds on a busy host
    finds them already dead and reaps them all, and the leak vanishes.
    Collecting before the fork leaves at least the last child a zombie,
    every time, which is what a test of the verdict needs.
    """

    def service_actions(self) -> None:
        pass

    def process_request(self, request, client_address) -> None:
        self.collect_children()
        super().process_request(request, client_address)


if __name__ == "__main__":
    port = int(sys.argv[1])
    lingering = sys.argv[2:] == ["none"]
    server_class = CollectOnConnect if lingering else Server
    interval = None if lingering else float((sys.argv[2:] or ["0.5"])[0])
    with server_class(("127.0.0.1", port), Upper) as server:
        server.serve_forever(poll_interval=interval)  # type: ignore[arg-type]
