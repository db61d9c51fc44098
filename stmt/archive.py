"""Many files on every core and across machines: worker processes and shards.

:class:`Workers` runs one task per file (read and pose it) in worker processes forked
from the command's process and hands the results back **in the files' order**, so
what a command writes is the same with any number of workers. Each worker holds one
file at a time (the limits of :mod:`stmt.limits` bound what one file may take), and
at most :data:`AHEAD` files per worker are handed out beyond the next result the
command waits for, so memory stays bounded whatever the archive's size; a thread of the
command's process hands the files out and collects the results (:class:`_Pump`), so
the workers go on while the command uses a result (runs the model). A worker
that dies (killed, out of memory) fails the one file it held, as a :class:`Failed`
result naming the signal; a fresh worker takes its place and the other files
complete. ``workers=0`` runs the task in the command's own process, as before.

Why not a ``torch.utils.data.DataLoader`` or ``concurrent.futures``: both give up on
the whole run when one worker dies (``RuntimeError: DataLoader worker ... is killed``,
``BrokenProcessPool`` for every file in flight), so neither can fail one file and go
on. Here each worker has its own pipe (:mod:`multiprocessing`), and the command
process knows which file each one holds.

Workers are forked (``fork``): they start with what the command's process loaded
already (torch, imported before they start; the body's rig constants and the vertex
template, which the commands load first), instead of loading it once each. In a
worker torch uses one thread (as a DataLoader worker does), and Ctrl-C is left to
the command's process, which stops the workers.

``--shard K/N`` (:func:`parse_shard`, :func:`shard_range`): the K-th of N consecutive,
near-equal parts of a command's sorted file list, for a scheduler's job array; the
parts in order are the whole list.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import re
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait

from stmt.errors import InputError

WORKER_MEMORY = 1024**3  # memory planned per worker when --workers is not given
# files handed out per worker beyond the next result the command waits for: the results
# that may wait while the command runs the model (a file's windows, not its mesh)
AHEAD = 8
MAX_WORKERS = 1024


@dataclass(frozen=True)
class Failed:
    """A file's task that ended in an error instead of a result.

    ``kind``: "input" (``message`` is an :class:`~stmt.errors.InputError`'s line, which
    names the file), "error" (another exception: ``TypeName: text``) or "died" (the
    worker process holding the file died; ``message`` says how); a task may add its own.
    """

    message: str
    kind: str = "input"


class WorkerCrashed(RuntimeError):
    """A task raised an exception it does not turn into a :class:`Failed` (a bug): its
    traceback from the worker."""


def model_threads_yield() -> None:
    """Let the command's model threads sleep, not spin, while they wait for each other
    (``OMP_WAIT_POLICY=PASSIVE``, unless the environment sets it): beside busy workers
    a spinning thread holds a core a worker needs (600 realmix files, 2 cores,
    ``classify --workers 2``: 22.0 s passive vs 26.8 s spinning; in-process the same).
    OpenMP reads it when torch loads it, so this runs before anything imports torch."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


# --------------------------------------------------------------------------- how many
def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a SLURM allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def available_memory() -> int | None:
    """Bytes of memory available to new processes (``MemAvailable``), None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def default_workers() -> int:
    """``--workers`` when not given: the usable cores, at most one per
    :data:`WORKER_MEMORY` of available memory."""
    memory = available_memory()
    by_memory = usable_cores() if memory is None else max(1, memory // WORKER_MEMORY)
    return int(min(usable_cores(), by_memory))


def resolve_workers(requested: int | None, files: int) -> int:
    """Worker processes for ``files`` files: ``requested`` (0: none, the command's own
    process), else :func:`default_workers`; never more than the files, and none for a
    single file unless asked for."""
    if requested is None:
        n = min(default_workers(), files)
        return n if n > 1 else 0
    if not 0 <= requested <= MAX_WORKERS:
        raise InputError(None, f"--workers must be 0 to {MAX_WORKERS}, got {requested}")
    return min(requested, files)


# --------------------------------------------------------------------------- shards
def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"K/N"`` -> ``(K, N)`` with 1 <= K <= N (one InputError line otherwise)."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d{1,7})\s*/\s*(\d{1,7})\s*", str(text))
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise InputError(None, f"--shard must be K/N with 1 <= K <= N (e.g. 3/16), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def shard_range(count: int, shard: tuple[int, int] | None) -> range:
    """The positions of shard ``(K, N)`` among ``count`` items: the K-th of N consecutive
    parts whose sizes differ by at most one (all of them for ``None``)."""
    if shard is None:
        return range(count)
    k, n = shard
    return range((k - 1) * count // n, k * count // n)


# --------------------------------------------------------------------------- workers
def _serve(conn, task: Callable, others: list) -> None:
    """A worker's life: take ``(i, item)`` from the pipe, send ``(i, task(item))``."""
    for other in others:  # the command's ends of the other workers' pipes: not ours
        other.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the command process's
    _one_thread()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the command's process went away
        if message is None:
            return
        i, item = message
        try:
            result = task(item)
        except BaseException:  # noqa: BLE001 (a bug: its traceback goes to the command)
            result = WorkerCrashed(traceback.format_exc())
        try:
            conn.send((i, result))
        except Exception:  # noqa: BLE001 (a result that cannot be pickled)
            conn.send((i, WorkerCrashed(traceback.format_exc())))


def _one_thread() -> None:
    """torch (imported or not) computes with one thread in a worker: the workers are the
    parallelism, and a forked process must not use the parent's OpenMP pool."""
    os.environ["OMP_NUM_THREADS"] = "1"
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def _import_torch() -> None:
    """Reading and posing use torch: imported before the workers fork, they start with it
    (each would take seconds to import it on a small machine)."""
    try:
        importlib.import_module("torch")
    except ImportError:
        pass


def death(exitcode: int | None) -> str:
    """The line for a worker that ended while it held a file."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        why = "out of memory, or killed" if name == "SIGKILL" else "killed"
        return f"the worker process holding it died ({name}: {why}); nothing was kept of it"
    return f"the worker process holding it exited (status {exitcode}); nothing was kept of it"


class _Worker:
    def __init__(self, ctx, task: Callable, others: list):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, task, others), daemon=True)
        self.process.start()
        child.close()
        self.holds: int | None = None  # the position of the file it works on

    def give(self, i: int, item) -> None:
        self.holds = i
        self.conn.send((i, item))

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.conn.close()


class Workers:
    """``task`` over items in ``workers`` worker processes (module docstring).

    >>> with Workers(read_one, 4) as pool:                      # doctest: +SKIP
    ...     for result in pool.map(files):  # in the files' order
    ...         ...

    ``task(item)`` returns the item's result, or a :class:`Failed` for an error it
    caught; it runs in a forked copy of this process, so it may be a closure. A worker
    that dies gives its item ``Failed(..., kind="died")``; an exception the task lets
    through stops the run with :class:`WorkerCrashed`. With ``workers=0`` the task runs
    here, one item after another.
    """

    def __init__(self, task: Callable, workers: int):
        self.task = task
        self.count = int(workers)
        self._ctx = multiprocessing.get_context("fork") if self.count > 0 else None
        self._workers: list[_Worker] = []

    def __enter__(self):  # the pool itself
        if self.count > 0:
            _import_torch()  # once here, not once per worker
        for _ in range(self.count):
            self._start()
        return self

    def __exit__(self, *exc) -> None:
        for w in self._workers:
            w.stop()
        for w in self._workers:
            w.process.join(timeout=5)
            if w.process.is_alive():
                w.process.terminate()
                w.process.join()
        self._workers = []

    def _start(self) -> _Worker:
        others = [w.conn for w in self._workers]
        worker = _Worker(self._ctx, self.task, others)
        self._workers.append(worker)
        return worker

    def map(self, items: Sequence) -> Iterator:
        """The results of ``items``, in their order."""
        if self.count == 0:
            for item in items:
                yield self.task(item)
            return
        pump = _Pump(self, items)
        try:
            for i in range(len(items)):
                result = pump.take(i)
                if isinstance(result, WorkerCrashed):
                    raise WorkerCrashed(f"a worker failed on {items[i]!r}:\n{result}")
                yield result
        finally:
            pump.stop()

    def _hand_out(self, items: Sequence, sent: int, limit: int) -> int:
        for w in list(self._workers):
            if sent >= min(limit, len(items)):
                break
            if w.holds is not None:
                continue
            try:
                w.give(sent, items[sent])
            except OSError:  # it died between two files: a fresh one takes the file
                w.holds = None
                self._drop(w)
                self._start().give(sent, items[sent])
            sent += 1
        return sent

    def _collect(self, done: dict, timeout: float | None = None) -> None:
        """Wait (up to ``timeout`` s) for a result or a death; record it in ``done``."""
        busy = [w for w in self._workers if w.holds is not None]
        ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout))
        for w in busy:
            if w.conn in ready or (w.process.sentinel in ready and w.conn.poll()):
                try:
                    i, result = w.conn.recv()
                except (EOFError, OSError):
                    self._replace(w, done)
                    continue
                done[i] = result
                w.holds = None
            elif w.process.sentinel in ready:
                self._replace(w, done)

    def _replace(self, dead: _Worker, done: dict) -> None:
        """``dead`` ended while it held a file: the file fails, a fresh worker starts."""
        self._drop(dead)
        done[dead.holds] = Failed(death(dead.process.exitcode), kind="died")
        self._start()

    def _drop(self, dead: _Worker) -> None:
        dead.process.join()
        dead.conn.close()
        self._workers.remove(dead)


class _Pump:
    """Hands the files out and collects the results of ``pool``'s workers in a thread of
    the command's process, so the workers go on while the command uses a result (runs the
    model, which releases the GIL): collected only between two results, a worker whose
    file was done stood idle until the command came back for the next one. At most
    :data:`AHEAD` files per worker beyond the result the command waits for are handed
    out, so what waits to be taken stays bounded."""

    def __init__(self, pool: Workers, items: Sequence):
        self.pool, self.items = pool, items
        self.done: dict[int, object] = {}
        self.wanted = 0  # the result the command waits for next
        self.error: BaseException | None = None
        self.stopping = False
        self.cv = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="stmt-workers", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        sent = 0
        try:
            while not self.stopping:
                with self.cv:
                    limit = self.wanted + AHEAD * self.pool.count
                sent = self.pool._hand_out(self.items, sent, limit)
                if not any(w.holds is not None for w in self.pool._workers):
                    if sent >= len(self.items):
                        return  # every file handed out and its result collected
                    with self.cv:  # at the limit: until the command takes a result
                        self.cv.wait(0.05)
                    continue
                got: dict[int, object] = {}
                self.pool._collect(got, timeout=0.05)
                if got:
                    with self.cv:
                        self.done.update(got)
                        self.cv.notify_all()
        except BaseException as err:  # noqa: BLE001 (raised in the command's thread)
            with self.cv:
                self.error = err
                self.cv.notify_all()

    def take(self, i: int):
        """The result of item ``i``, once collected."""
        with self.cv:
            self.wanted = i
            self.cv.notify_all()
            while i not in self.done:
                if self.error is not None:
                    raise self.error
                if not self.thread.is_alive():
                    raise RuntimeError(f"stmt: the worker pool stopped before item {i}")
                self.cv.wait(0.1)
            return self.done.pop(i)

    def stop(self) -> None:
        self.stopping = True
        with self.cv:
            self.cv.notify_all()
        self.thread.join()
