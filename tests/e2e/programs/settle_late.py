"""A program that makes one zombie after DELAY seconds and never collects it.

    python settle_late.py DELAY

A sleeping child keeps the tree from looking empty, so a settle window
runs to its end. Run with a long settle window and a DELAY inside it, the
zombie is born during the window.
"""

import os
import sys
import time

if os.fork() == 0:
    time.sleep(120)
    os._exit(0)
time.sleep(float(sys.argv[1]))
if os.fork() == 0:
    os._exit(0)
time.sleep(120)
