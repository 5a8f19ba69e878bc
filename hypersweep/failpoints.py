"""Crash on purpose at a named point, so reliability tests can kill the driver exactly there.

Set `HYPERSWEEP_FAILPOINT=<point>@<trial number>` (e.g. `after_tell@2`) and the process
SIGKILLs itself when it reaches that point for that trial. Unset, this does nothing.
"""
from __future__ import annotations

import os
import signal


def reached(point: str, trial: int) -> None:
    if os.environ.get("HYPERSWEEP_FAILPOINT") == f"{point}@{trial}":
        os.kill(os.getpid(), signal.SIGKILL)
