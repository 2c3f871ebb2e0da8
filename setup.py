"""The one thing pyproject.toml cannot say: the optional C extension.

``zombiewatch._pump`` takes the event monitor's wake-ups on a native
thread (zombiewatch/_pump.c, zombiewatch/_feeds.py). It is optional: where
it cannot be built (no C compiler, no Python headers, not Linux) the
install goes on without it and the monitor reads the events in Python,
at a higher cost per child (docs/BENCHMARKS.md, "Kernel events against
sampling").
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

SCRIPTS = ("ci-zero-zombies.sh", "flood.sh")


class BuildPy(build_py):
    """Keep the shipped shell scripts executable: package data is copied
    without its mode."""

    def run(self) -> None:
        super().run()
        for script in SCRIPTS:
            path = os.path.join(self.build_lib, "zombiewatch", "scripts", script)
            if os.path.exists(path):
                os.chmod(path, 0o755)


ext_modules = []
if sys.platform.startswith("linux"):
    ext_modules.append(Extension("zombiewatch._pump", ["zombiewatch/_pump.c"], optional=True))

setup(ext_modules=ext_modules, cmdclass={"build_py": BuildPy})
