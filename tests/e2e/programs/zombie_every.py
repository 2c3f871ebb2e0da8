"""A program that makes a zombie every PERIOD seconds and never collects
any: at any moment its youngest zombie is at most PERIOD old.

    python zombie_every.py PERIOD

Bounded: at most 300 zombies, then it sleeps until stopped.
"""

import os
import sys
import time

for _ in range(300):
    if os.fork() == 0:
        os._exit(0)
    time.sleep(float(sys.argv[1]))
time.sleep(120)
