"""The ``zombiewatch`` command's entry point, and ``python -m zombiewatch``.

Signals come first: SIGTERM is turned into an exception before the CLI
(click, psutil) is even imported, so that an interrupt at any moment ends
in exit 130 with one line, never a traceback or death by the signal.
SIGINT already raises KeyboardInterrupt once the interpreter is up
(unless the shell started us with it ignored, as for a background job,
which is respected). docs/DESIGN.md, Exit codes.
"""

import signal
import sys

from zombiewatch.errors import ExitCode, Interrupted


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signum)


def main() -> None:
    """Run the ``zombiewatch`` command; exit with its status."""
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        from zombiewatch import cli

        cli.main()
    except (KeyboardInterrupt, Interrupted):
        # Before cli.main took over (while importing), or after it chose
        # its exit status: either way the run is interrupted.
        try:
            sys.stderr.write("zombiewatch: interrupted\n")
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass
        code: str | int | None = ExitCode.INTERRUPTED
    except SystemExit as exit_:
        code = exit_.code
    # Nothing is left to stop: a signal now must not turn the status we
    # chose into a traceback while the interpreter shuts down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(code)


if __name__ == "__main__":
    main()
