"""An uppercase line server that resets some connections: every Nth one
gets its line read, then an RST (SO_LINGER 0) instead of an answer.

    python flaky_server.py PORT N

Threads, not forks: it makes no zombies, so only the load can fail a run.
"""

import socket
import socketserver
import struct
import sys
import threading

count = 0
lock = threading.Lock()


class Upper(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        global count
        with lock:
            count += 1
            reset = count % int(sys.argv[2]) == 0
        line = self.rfile.readline()
        if reset:
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        self.wfile.write(line.upper())


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024


Server(("127.0.0.1", int(sys.argv[1])), Upper).serve_forever()
