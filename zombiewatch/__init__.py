"""zombiewatch: find the zombie processes a forking program leaves behind.

Importing the package does nothing else: the server process imports it on
every start, and pytest imports it through the plugin entry point.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
