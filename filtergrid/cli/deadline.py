"""``--timeout``: a soft deadline for Python code and a hard one for native code that never returns.

The soft deadline is SIGALRM: :class:`TimeLimitError` is raised between Python steps and reported
as the usual one-line error. Native code stuck in a loop on a crafted file (libhdf5 has such bugs)
never gets back to Python, so where ``fork`` exists the command runs in a child process that the
parent kills ``GRACE`` seconds after the deadline, reporting the same kind of one-line error.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from ..errors import TimeLimitError

#: Seconds the soft deadline gets to stop the command before the child process is killed.
GRACE = 2.0
EXIT_USAGE = 2


def arm(seconds: float | None) -> None:
    """Bound the rest of the command to ``seconds`` of wall time (returns in the process that works)."""
    if not seconds:
        return
    if hasattr(os, "fork"):
        _supervise(seconds)
    if hasattr(signal, "setitimer"):
        def expired(signum, frame):
            raise TimeLimitError(f"gave up after --timeout {seconds:g} s")

        signal.signal(signal.SIGALRM, expired)
        # Repeats after firing: a library's broad ``except Exception`` cannot swallow it for good.
        signal.setitimer(signal.ITIMER_REAL, seconds, 0.2)


def disarm() -> None:
    """No alarm may interrupt the final report."""
    if hasattr(signal, "setitimer"):
        signal.setitimer(signal.ITIMER_REAL, 0)


def _supervise(seconds: float) -> None:
    """Fork; the child returns and does the work, the parent waits and exits with its status."""
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the child too, which reports it
    deadline = time.monotonic() + seconds + GRACE
    while True:
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)  # killed by a signal: the shell's convention
        if time.monotonic() > deadline:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
            sys.stderr.write(f"filtergrid: error: gave up after --timeout {seconds:g} s "
                             "(stuck in native code; the work was killed)\n")
            sys.stderr.flush()
            os._exit(EXIT_USAGE)
        time.sleep(0.02)
