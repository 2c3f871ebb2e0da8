"""The default values that several modules share, each written once.

The CLI's option defaults, ``runner.RunOptions``, ``server.Config``, the
scan and the pytest plugin's guard all read them here, so a default
cannot drift between the command line and the code it drives. This module
imports nothing: the forking server and the pytest plugin import it, and
neither may carry typing, click or psutil (docs/FACTS.md, Fork cost).
"""

# -- the built-in server ------------------------------------------------------
MODE = "sigchld"  # reaping mode
HOST = "127.0.0.1"  # where the server listens and the flooder connects
PORT = 0  # 0: the kernel picks a free port
CHILD_DELAY = 0.0  # seconds; `serve`'s default (a measured run uses the mode's own)
IDLE_TIMEOUT = 10.0  # seconds a client may stay silent before its worker ends it
# Seconds a whole connection may last, however steadily its client trickles
# bytes: the idle timeout is per read, so without this a client sending a
# byte a second holds its worker forever (slowloris). Far above what a
# well-behaved client of a line echo needs (the flood gives each connection
# 10 s), and short enough that clients queued behind slow ones are served
# within about half a minute.
CONN_TIMEOUT = 30.0

# -- the built-in flood -------------------------------------------------------
CONNECTIONS = 1000  # connections to open in all
CONCURRENCY = 50  # connections open at once
LINES = 1  # lines sent on each connection
TIMEOUT = 10.0  # seconds each connection may take

# -- watching and the verdict -------------------------------------------------
SETTLE = 1.0  # seconds after the load (or a test) before a zombie counts as leaked
INTERVAL = 0.01  # seconds between two samples of the process tree
OBSERVE = "auto"  # kernel events where they work, else sampling
MAX_LEAKED = 0  # zombies allowed to outlive the settle window (or a test)

# -- scan -----------------------------------------------------------------------
SCAN_WAIT = 1.0  # seconds a nudge or a kill may take to show its effect
MIN_COUNT = 1  # only parents holding at least this many zombies

# -- export ---------------------------------------------------------------------
EXPORT_LISTEN = "127.0.0.1:9577"  # where /metrics is served
EXPORT_EVERY = 15.0  # seconds between two writes of --textfile: Prometheus's usual interval
EXPORT_TOP = 10  # parents (name and user) labelled by name; the rest summed as "other"
