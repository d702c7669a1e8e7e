"""Running sub-net evaluations: in-process or in a process pool, logged to a resumable file.

A :class:`Runner` scores many sub-nets and yields each result as it finishes; an
:class:`EvaluationLog` appends each to a JSON-lines file at once, so an interrupted run
finds every finished evaluation again and computes only the rest.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from defslice.errors import InputError
from defslice.nas.space import SubNet
from defslice.nas.stats import pack_correct, unpack_correct

__all__ = ["EvaluationLog", "PoolRunner", "Runner", "SerialRunner", "log_key"]

#: Format of the log's records; a log of another format is not resumed.
LOG_FORMAT = 1

#: Result of one evaluation: per-image correctness (bool array) or an accuracy.
Result = Any


def log_key(header: dict) -> str:
    """Short hash of ``header`` (what the evaluations depend on): the log's file name."""
    blob = json.dumps({"format": LOG_FORMAT, **header}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class EvaluationLog:
    """``folder / f"evaluations-{key}.jsonl"``: a header line, then one line per sub-net.

    Lines: ``{"header": {...}}``, then ``{"subnet": [Hs, Ws, O], "correct": hex,
    "accuracy": a, "seconds": s}`` (``correct``: :func:`pack_correct` of the per-image
    results; ``None`` when the objective gives only an accuracy). The key hashes the
    header, so evaluations of other weights or images go to another file. A last line cut
    short by an interruption is dropped on opening; any other bad line is an error.
    """

    def __init__(self, folder: str | Path, header: dict, images: int | None) -> None:
        self.header, self.images = header, images
        self.key = log_key(header)
        self.path = Path(folder) / f"evaluations-{self.key}.jsonl"
        self.records: dict[SubNet, Result] = {}
        self.seconds: dict[SubNet, float] = {}
        if self.path.is_file():
            self._load()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"header": header}, default=str) + "\n")

    def _load(self) -> None:
        raw = self.path.read_bytes()
        end = raw.rfind(b"\n") + 1
        if end < len(raw):  # an interrupted append: keep the complete lines only
            with self.path.open("r+b") as f:
                f.truncate(end)
        lines = raw[:end].decode().splitlines()
        for i, line in enumerate(lines):
            try:
                rec = json.loads(line)
                if i == 0:
                    rec["header"]
                    continue
                x = SubNet(*(int(v) for v in rec["subnet"]))
                self.records[x] = (rec["accuracy"] if rec["correct"] is None
                                   else unpack_correct(rec["correct"], self.images))
                self.seconds[x] = float(rec.get("seconds", 0.0))
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError(f"{self.path}, line {i + 1}: not an evaluation record "
                                 f"({exc}); remove the file to start again") from None

    def append(self, x: SubNet, result: Result, seconds: float) -> None:
        """Record ``result`` of ``x`` (one line, flushed)."""
        correct = None
        if isinstance(result, np.ndarray):
            correct = pack_correct(result)
            acc = float(result.mean())
        else:
            acc = float(result)
        line = json.dumps({"subnet": [x.slice_h, x.slice_w, x.overlap], "correct": correct,
                           "accuracy": acc, "seconds": round(seconds, 4)})
        with self.path.open("a") as f:
            f.write(line + "\n")
        self.records[x] = result
        self.seconds[x] = seconds


class Runner:
    """Scores sub-nets; :meth:`run` yields ``(sub-net, result, seconds)`` as each finishes."""

    workers = 1

    def run(self, xs: Iterable[SubNet]) -> Iterator[tuple[SubNet, Result, float]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the workers (a no-op in-process)."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SerialRunner(Runner):
    """Evaluates in this process, one sub-net after the other (``workers`` = 0)."""

    workers = 0

    def __init__(self, fn: Callable[[SubNet], Result]) -> None:
        self.fn = fn

    def run(self, xs: Iterable[SubNet]) -> Iterator[tuple[SubNet, Result, float]]:
        for x in xs:
            t0 = time.perf_counter()
            result = self.fn(x)
            yield x, result, time.perf_counter() - t0


_WORKER_FN: Callable[[SubNet], Result] | None = None


def _init_worker(build: Callable[..., Callable[[SubNet], Result]], args: tuple) -> None:
    global _WORKER_FN
    _WORKER_FN = build(*args)


def _call_worker(x: SubNet) -> tuple[SubNet, Result, float]:
    t0 = time.perf_counter()
    result = _WORKER_FN(x)
    return x, result, time.perf_counter() - t0


class PoolRunner(Runner):
    """A pool of ``workers`` processes (``spawn``), each holding the objective built by
    ``build(*args)`` once (``build`` must be importable: a module-level function)."""

    def __init__(self, build: Callable[..., Callable[[SubNet], Result]], args: tuple,
                 workers: int) -> None:
        if workers < 1:
            raise InputError(f"a process pool needs at least 1 worker, got {workers}")
        self.workers = workers
        self.pool = cf.ProcessPoolExecutor(workers, multiprocessing.get_context("spawn"),
                                           initializer=_init_worker, initargs=(build, args))

    def run(self, xs: Iterable[SubNet]) -> Iterator[tuple[SubNet, Result, float]]:
        futures = [self.pool.submit(_call_worker, x) for x in xs]
        try:
            for fut in cf.as_completed(futures):
                yield fut.result()
        finally:
            for fut in futures:
                fut.cancel()

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)
