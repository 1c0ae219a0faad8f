"""Small helpers shared by the benchmarks: device choice, peak memory sampling, JSON results."""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import torch

RESULTS = Path(__file__).resolve().parents[2] / "bench-results"


def bench_device() -> torch.device:
    """Device named by ``GEOPROM3E_BENCH_DEVICE`` (default cpu)."""
    return torch.device(os.environ.get("GEOPROM3E_BENCH_DEVICE", "cpu"))


def sync(device: torch.device) -> None:
    """Wait for queued GPU work so timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakRSS:
    """Context manager sampling this process's resident memory; ``peak_mb`` is the rise above the start."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRSS:
        self._proc = psutil.Process()
        self._base = self._proc.memory_info().rss
        self._peak = self._base
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._proc.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._proc.memory_info().rss)
        self.peak_mb = (self._peak - self._base) / 2**20


def best_time(fn: Callable[[], Any], device: torch.device, repeats: int = 3, min_time: float = 0.0) -> float:
    """Best wall time of ``fn`` over ``repeats`` runs (after one warm-up run)."""
    fn()
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
        if min_time and best > min_time:
            break
    return best


def write_results(name: str, data: dict[str, Any]) -> Path:
    """Write ``bench-results/<name>.json`` with machine facts added."""
    RESULTS.mkdir(exist_ok=True)
    data = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        **data,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=1))
    return path


class RemoteFiles:
    """The COG file server (``geoprom3e.testing.faults``, with injected latency) in its own process: in-process,
    its Python threads would share the GIL with the client being measured."""

    def __init__(self, root: Path | str, latency_s: float) -> None:
        import subprocess
        import sys

        self.proc = subprocess.Popen([sys.executable, "-m", "geoprom3e.testing.faults", str(root), str(latency_s)],
                                     stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()

    def stats(self, reset: bool = False) -> dict[str, Any]:
        """Requests served (this stats request excluded) and their HTTP statuses; ``reset`` zeroes the counters."""
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/_faults/stats{'?reset=1' if reset else ''}") as r:
            c = json.loads(r.read())
        total = sum(c.get("requests", {}).values()) - 1
        return {"file_requests": total, "status": c.get("status", {})}

    def reset_stats(self) -> None:
        """Zero the counters."""
        self.stats(reset=True)

    def stop(self) -> None:
        """Stop the server process."""
        self.proc.terminate()
        self.proc.wait(10)
