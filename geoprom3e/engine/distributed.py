"""Run the per-chunk function on a ``dask.distributed`` cluster: a scheduler address or a LocalCluster.

Each task opens the cache itself and writes its own chunk region plus commit marker, so results are the
same as a single-process run and a failed or killed worker only loses uncommitted chunks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from geoprom3e.engine.chunks import Chunk
from geoprom3e.engine.inputs import CellInput
from geoprom3e.errors import ConfigError, SchedulerError

log = logging.getLogger(__name__)


def _client(scheduler: str | None, workers: int | None) -> tuple[Any, Any]:
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError(
            "Dask is not installed: `pip install 'geoprom3e[distributed]'` to use --scheduler/--workers"
        ) from None
    if scheduler:
        try:
            return Client(scheduler, timeout="10s"), None
        except (OSError, TimeoutError) as exc:
            raise SchedulerError(
                f"cannot reach the Dask scheduler at {scheduler!r} ({type(exc).__name__}): check the address "
                "(tcp://HOST:8786) and that `dask scheduler` runs there, or use --workers N for a local cluster"
            ) from None
    if workers is None or workers < 1:
        raise ConfigError(f"--workers {workers}: must be >= 1")
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None)
    return Client(cluster), cluster


def run_on_dask(cache_path: str, chunks: Sequence[tuple[Chunk, list[str], Any]], inputs: list[CellInput],
                *, scheduler: str | None = None, workers: int | None = None) -> Iterator[dict[str, Any]]:
    """Submit one task per (chunk, modalities to do, cells to redo or None) and yield each task's counts."""
    from dask.distributed import as_completed

    from geoprom3e.engine.pipeline import process_chunk

    client, cluster = _client(scheduler, workers)
    try:
        log.info("running %d chunks on %s", len(chunks), client.dashboard_link or client.scheduler.address)
        futures = [client.submit(process_chunk, cache_path, ch, inputs, todo, cells,
                                 key=f"embed-{ch.id}-{'-'.join(todo)}-{id(inputs)}", pure=False)
                   for ch, todo, cells in chunks]
        for fut in as_completed(futures):
            yield fut.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
