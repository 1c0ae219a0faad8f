"""Interrupt an ``embed-grid`` run after its first commit, synchronised on the commit marker (never on a timer)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def ctrl_c_after_first_commit(args: list[str], cache: Path, modality: str, hold: Path) -> tuple[int, int, str]:
    """Run ``geoprom3e <args>`` in its own session, pausing after its first commit (test hook
    ``GEOPROM3E_TEST_HOLD_AFTER_COMMIT``), send SIGINT; returns (pid, exit code, stderr)."""
    hold.touch()  # the run pauses after its first commit while this file exists, so it cannot end early
    proc = subprocess.Popen([sys.executable, "-m", "geoprom3e", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "GEOPROM3E_TEST_HOLD_AFTER_COMMIT": str(hold)})
    markers = cache / "commits" / modality
    while proc.poll() is None and not (markers.is_dir() and any(markers.glob("*.json"))):
        time.sleep(0.05)  # waits on the marker, not on a timer
    assert proc.poll() is None, proc.communicate()
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return proc.pid, proc.returncode, err
