"""The gather stage: the raw inputs of one chunk's cells, in the caller's thread or in worker processes.

A chunk's work (:class:`Work`) names its cells; :func:`gather` fills in each modality's raw inputs (chips,
coordinates). Reading and decoding Sentinel-2 chips is CPU work under the GIL, so one process gathers at most
about one core's worth; :class:`GatherPool` runs the gather in N worker processes instead (``embed-grid
--gather-workers N``) and feeds the one encoder in the main process, which owns the GPU.

Chips come back through shared memory: the main process owns a few slots (``multiprocessing.shared_memory``),
each big enough for one chunk's raw inputs; a worker decodes a chunk, copies its arrays into the slot it was
given and returns only their places, and the slot goes back to the pool once the chunk is encoded. The number
of slots bounds the chunks in flight (and the memory they hold). Workers never write the cache: commits, resume
and failure records stay in the main process, exactly as with one process.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import queue
import signal
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geoprom3e.engine.chunks import Chunk
from geoprom3e.engine.inputs import CellInput
from geoprom3e.errors import ConfigError, GeoProm3eError, SchedulerError
from geoprom3e.grid import GridSpec

log = logging.getLogger(__name__)


@dataclass
class Work:
    """One chunk's cells for the modalities still to embed, and what each stage made of them."""

    chunk: Chunk
    """The chunk."""
    todo: list[str]
    """Modalities to embed."""
    rows: np.ndarray
    """Grid rows of the cells."""
    cols: np.ndarray
    """Grid columns of the cells."""
    lat: np.ndarray | None = None
    """Cell-centre latitudes (filled by :func:`prepare`, so a gather process never builds the whole grid)."""
    lon: np.ndarray | None = None
    """Cell-centre longitudes."""
    retry: bool = False
    """Only the listed cells are fetched again; the chunk's other cells keep what the cache holds."""
    gathered: dict[str, Any] = field(default_factory=dict)
    """Modality -> :class:`~geoprom3e.engine.inputs.Gathered`."""
    encoded: dict[str, np.ndarray] = field(default_factory=dict)
    """Modality -> [k, 512] embeddings of the ``ok`` cells."""
    gather_seconds: float = 0.0
    """Busy time of the gather (in whichever process ran it)."""
    slot: int | None = None
    """Shared-memory slot holding the raw inputs (gather processes only)."""


@functools.lru_cache(maxsize=4)
def centres_and_mask(grid: GridSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell-centre latitudes, longitudes and the land mask of ``grid`` (kept for the few grids in use)."""
    lat, lon = grid.cell_centers()
    return lat, lon, grid.mask()


def prepare(grid: GridSpec, chunk: Chunk, todo: list[str], cells: Sequence[tuple[int, int]] | None = None) -> Work:
    """The work of one chunk: every masked-in cell, or only ``cells`` (grid row, col) when retrying failures."""
    lat, lon, mask = centres_and_mask(grid)
    if cells is not None:
        rc = np.asarray(sorted(cells), np.int64).reshape(-1, 2)
        rows, cols, retry = rc[:, 0], rc[:, 1], True
    else:
        rs, cs = chunk.slices
        rr, cc = np.nonzero(mask[rs, cs])
        rows, cols, retry = rr + chunk.r0, cc + chunk.c0, False
    return Work(chunk, todo, rows, cols, lat[rows, cols], lon[rows, cols], retry=retry)


def gather(work: Work, inputs: dict[str, CellInput]) -> None:
    """Fill ``work.gathered`` with each modality's raw inputs for the work's cells."""
    t = time.perf_counter()
    for m in work.todo:
        work.gathered[m] = inputs[m].gather(work.lat, work.lon)
    work.gather_seconds = time.perf_counter() - t


def gathers_remotely(inputs: Sequence[CellInput]) -> bool:
    """Whether any input reads its raw data over the network (``remote_gather``: Sentinel-2 chips do)."""
    return any(getattr(i, "remote_gather", False) for i in inputs)


def default_gather_workers(inputs: Sequence[CellInput]) -> int:
    """One gather process per core when an input reads over the network; 0 (a thread) when gathering is cheap."""
    return (os.cpu_count() or 1) if gathers_remotely(inputs) else 0


def slot_bytes(inputs: Sequence[CellInput], cells: int) -> int:
    """Bytes of one chunk's raw inputs, from each input's ``raw_bytes_per_cell()`` (0 when none declares it)."""
    per_cell = sum(int(i.raw_bytes_per_cell()) for i in inputs if hasattr(i, "raw_bytes_per_cell"))
    return per_cell * cells + 64 * len(inputs)


@dataclass(frozen=True)
class InSlot:
    """Where a raw input array lies in a shared-memory slot."""

    offset: int
    shape: tuple[int, ...]
    dtype: str


def _picklable(exc: BaseException) -> BaseException:
    """``exc`` itself when it survives pickling, else an error of the same kind carrying its message and trace."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any unpicklable exception is rebuilt from its text
        text = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, GeoProm3eError):
            return GeoProm3eError(text)
        return RuntimeError(f"{text}\n{''.join(traceback.format_exception(exc))}")


def _worker(inputs: list[CellInput], tasks: Any, results: Any, chunks: int) -> None:
    """A gather process: ``chunks`` threads each take (slot name, slot size, work), gather, move the arrays into
    the slot and send the work back. Two chunks at a time keep the core busy while one waits on the network."""
    import multiprocessing
    from multiprocessing import shared_memory

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle; it stops the workers
    by_name = {i.modality: i for i in inputs}
    attached: dict[str, Any] = {}
    lock = threading.Lock()

    def slot(name: str) -> memoryview:
        with lock:
            if name not in attached:
                attached[name] = shared_memory.SharedMemory(name)
            return attached[name].buf

    def loop() -> None:
        for name, size, work in iter(tasks.get, None):
            try:
                gather(work, by_name)
                if name is not None:
                    _to_slot(work, slot(name), size)
                results.put(("done", work, None))
            except BaseException as exc:  # noqa: BLE001 - sent to the main process, which raises it
                results.put(("done", work, _picklable(exc)))

    results.put(("ready", multiprocessing.current_process().name, None))
    threads = [threading.Thread(target=loop, name=f"gather-chunk-{k}") for k in range(chunks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for shm in attached.values():
        shm.close()


def _to_slot(work: Work, buf: memoryview, size: int) -> None:
    """Copy the work's raw arrays into ``buf`` while they fit (64-byte aligned); the rest travels pickled."""
    offset = 0
    for g in work.gathered.values():
        raw = g.raw
        if not isinstance(raw, np.ndarray) or raw.dtype.hasobject or offset + raw.nbytes > size:
            continue
        view = np.ndarray(raw.shape, raw.dtype, buffer=buf, offset=offset)
        view[...] = raw
        g.raw = InSlot(offset, raw.shape, raw.dtype.str)
        offset += -(-raw.nbytes // 64) * 64


class GatherPool:
    """N gather processes and the shared-memory slots their chunks come back in.

    Use as a context manager; :meth:`run` yields gathered works (in the order they finish) and :meth:`release`
    hands a work's slot back once its raw inputs are no longer needed (after encoding).
    """

    def __init__(self, grid: GridSpec, inputs: Sequence[CellInput], workers: int, *, slot_size: int,
                 queue_size: int = 2, chunks_per_worker: int = 2) -> None:
        if workers < 1:
            raise ConfigError(f"--gather-workers {workers}: must be >= 1 (0 gathers in the main process)")
        import multiprocessing

        self.grid, self.inputs, self.workers = grid, list(inputs), workers
        self.chunks_per_worker = chunks_per_worker
        self.in_flight = workers * chunks_per_worker + 1  # and one waiting, so no worker idles
        n_slots = self.in_flight + queue_size + 2  # + the chunks the encoder holds and has queued
        self.slot_size = slot_size if _shm_room(slot_size * n_slots) else 0
        self._slots: list[Any] = [None] * n_slots
        self._free: queue.Queue[int] = queue.Queue()
        for k in range(n_slots):
            self._free.put(k)
        ctx = multiprocessing.get_context("spawn")  # never fork a process that holds CUDA, threads or locks
        self._tasks, self._results = ctx.Queue(), ctx.Queue()
        self._ready: set[str] = set()
        args = (self.inputs, self._tasks, self._results, chunks_per_worker)
        self._procs = [ctx.Process(target=_worker, args=args, name=f"geoprom3e-gather-{k}", daemon=True)
                       for k in range(workers)]
        for p in self._procs:
            p.start()

    def __enter__(self) -> GatherPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(kill=exc[0] is not None)

    def _slot_name(self, k: int) -> str | None:
        if not self.slot_size:
            return None
        if self._slots[k] is None:
            from multiprocessing import shared_memory

            self._slots[k] = shared_memory.SharedMemory(create=True, size=self.slot_size)
        return self._slots[k].name

    def run(self, pending: Sequence[tuple[Chunk, list[str], Any]], stop: threading.Event) -> Iterator[Work]:
        """Gather every (chunk, modalities, cells or None) of ``pending`` in the workers; yield each finished work
        with its raw inputs readable (views into its slot) until :meth:`release`. Stops early when ``stop`` is set."""
        items = iter(pending)
        out, more = 0, True
        while True:
            while more and out < self.in_flight and not stop.is_set():
                try:
                    k = self._free.get(timeout=0.1) if out == 0 else self._free.get_nowait()
                except queue.Empty:
                    break
                item = next(items, None)
                if item is None:
                    self._free.put(k)
                    more = False
                    break
                work = prepare(self.grid, *item)
                work.slot = k
                self._tasks.put((self._slot_name(k), self.slot_size, work))
                out += 1
            if stop.is_set() or (not more and out == 0):
                return
            if out == 0:
                continue  # every slot is with the encoder: wait for one
            work = self._next_result(stop)
            if work is None:
                return
            out -= 1
            yield work

    def _next_result(self, stop: threading.Event) -> Work | None:
        while not stop.is_set():
            try:
                kind, work, exc = self._results.get(timeout=0.2)
            except queue.Empty:
                self._check_alive()
                continue
            if kind == "ready":
                self._ready.add(work)
                continue
            if exc is not None:
                self.release(work)
                raise exc
            self._attach(work)
            return work
        return None

    def _check_alive(self) -> None:
        dead = [p for p in self._procs if not p.is_alive()]
        if dead:
            p = dead[0]
            if p.name not in self._ready:
                raise SchedulerError(
                    f"gather process {p.name} could not start (exit code {p.exitcode}; its traceback is above): when "
                    "it shows your script running again, call embed_grid under `if __name__ == \"__main__\":` "
                    "(gather processes import the script), or pass gather_workers=0")
            how = (f"was killed by signal {-p.exitcode}" + (" (out of memory?)" if p.exitcode == -signal.SIGKILL
                                                             else "")
                   if p.exitcode is not None and p.exitcode < 0 else f"exited with code {p.exitcode}")
            raise SchedulerError(f"gather process {p.name} (pid {p.pid}) {how}: committed chunks are kept; rerun the "
                                 "same command to resume, with fewer --gather-workers if memory is short")

    def _attach(self, work: Work) -> None:
        for g in work.gathered.values():
            if isinstance(g.raw, InSlot):
                buf = self._slots[work.slot].buf
                g.raw = np.ndarray(g.raw.shape, np.dtype(g.raw.dtype), buffer=buf, offset=g.raw.offset)

    def release(self, work: Work) -> None:
        """The work's raw inputs are no longer needed: its slot takes the next chunk."""
        if work.slot is not None:
            for g in work.gathered.values():
                g.raw = None
            self._free.put(work.slot)
            work.slot = None

    def close(self, kill: bool = False) -> None:
        """Stop the workers (at once with ``kill``: their chunks are not committed, a rerun redoes them) and free
        the slots."""
        if not kill:
            for _ in range(len(self._procs) * self.chunks_per_worker):
                self._tasks.put(None)
        for p in self._procs:
            if not kill:
                p.join(timeout=30)
            if p.is_alive():
                p.terminate()
                p.join(timeout=10)
        for q in (self._tasks, self._results):
            q.cancel_join_thread()
            q.close()
        for shm in self._slots:
            if shm is not None:
                try:
                    shm.close()
                except BufferError:  # a view is still alive somewhere: the mapping goes with the process
                    pass
                shm.unlink()
        self._slots = [None] * len(self._slots)


def _shm_room(nbytes: int) -> bool:
    """Whether /dev/shm has room for ``nbytes`` of slots (a full /dev/shm kills a worker with SIGBUS instead of
    raising); when it has not, chips travel pickled through a pipe instead, which is slower but safe."""
    if nbytes <= 0:
        return False
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return True  # not Linux: shared memory is not a size-limited filesystem there
    room = st.f_bavail * st.f_frsize
    if room < nbytes * 1.1:
        log.warning("/dev/shm has %.1f GB free, gather slots need %.1f GB: chips travel through pipes instead "
                    "(slower); give the container more shared memory (docker --shm-size) or use fewer "
                    "--gather-workers", room / 1e9, nbytes / 1e9)
        return False
    return True
