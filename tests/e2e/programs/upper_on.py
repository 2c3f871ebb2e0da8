"""An uppercase line server on any address: ``python upper_on.py HOST PORT``.

HOST may be an IPv6 address (``::1``, ``::``) or ``0.0.0.0``: the tests of
which listener `run --flood HOST:PORT` accepts as the program's.
"""

import socket
import socketserver
import sys


class Upper(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line.upper())


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    address_family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET


Server((sys.argv[1], int(sys.argv[2])), Upper).serve_forever()
