"""A program that never collects its children and exits after HOLD seconds:
its ZOMBIES zombies pass to an adopter (the runner as subreaper, or init),
which collects them. With ``spin`` it runs on the CPU for those seconds
instead of sleeping, as a process does that is held off the CPU on its way
to exit (a double fork's middle process on a busy host).

    python hand_off.py ZOMBIES HOLD [spin]
"""

import os
import sys
import time

for _ in range(int(sys.argv[1])):
    if os.fork() == 0:
        os._exit(0)
if sys.argv[3:] == ["spin"]:
    end = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < end:
        pass
else:
    time.sleep(float(sys.argv[2]))
