"""A program that never collects its children and exits after HOLD seconds:
its ZOMBIES zombies pass to an adopter (the runner as subreaper, or init),
which collects them.

    python hand_off.py ZOMBIES HOLD
"""

import os
import sys
import time

for _ in range(int(sys.argv[1])):
    if os.fork() == 0:
        os._exit(0)
time.sleep(float(sys.argv[2]))
