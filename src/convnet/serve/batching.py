"""Micro-batching: requests that arrive close together share one forward pass.

One worker thread owns the model. It waits for a first job, then keeps collecting until it
holds ``max_batch`` jobs or ``max_wait_s`` has passed since that first one, and runs them as one
batch (Clipper, Crankshaw et al., NSDI 2017, and TensorFlow Serving's batching scheduler use
the same two knobs). On a CPU a batch of 16 costs much less than 16 batches of one: the weights
of each layer are read once per batch instead of once per image.

Requests wait on an ``asyncio`` future, so the event loop stays free while the model runs; the
worker hands results back with ``loop.call_soon_threadsafe``. A job whose request has already
timed out is skipped instead of computed. If a batch fails, its jobs are run again one by one, so
one bad input fails only its own request.

The queue itself is bounded by admission (``Admission``): the server admits at most ``limit``
prediction requests at once and answers 503 to the next one before reading its body, so waiting
work, memory and latency all stay bounded however hard clients push.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Admission", "Job", "MicroBatcher"]

log = logging.getLogger("convnet.serve")


@dataclass
class Job:
    """One request's work: ``payload`` for the batch function, and where its answer goes."""

    payload: Any
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.perf_counter)
    batch_size: int = 0  # how many jobs shared its forward pass (set by the worker)

    def abandoned(self) -> bool:
        """Its request has been answered already (timed out, client gone)."""
        return self.future.done()


class MicroBatcher:
    """A worker thread that runs ``run_batch(payloads) -> results`` on up to ``max_batch`` jobs
    at a time, waiting at most ``max_wait_s`` after a batch's first job for more.

    Args:
        run_batch: payloads -> one result per payload, in order; runs on the worker thread.
        max_batch: the largest batch (1: no batching).
        max_wait_s: how long a first job waits for company.
        on_batch: called with every batch's size (metrics).
    """

    def __init__(self, run_batch: Callable[[list[Any]], Sequence[Any]], max_batch: int = 16,
                 max_wait_s: float = 0.005, on_batch: Callable[[int], None] | None = None):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self.run_batch, self.max_batch, self.max_wait_s = run_batch, max_batch, max_wait_s
        self.on_batch = on_batch
        self._jobs: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def __len__(self) -> int:
        """Jobs waiting for the worker."""
        return len(self._jobs)

    async def submit(self, payload: Any) -> tuple[Any, Job]:
        """Queue ``payload`` and wait for its result; returns (result, job). Cancelling the
        waiting coroutine (a timeout) leaves the job abandoned: the worker skips it.

        Raises:
            Exception: whatever ``run_batch`` raised for this payload run alone.
        """
        loop = asyncio.get_running_loop()
        job = Job(payload, loop.create_future(), loop)
        with self._cond:
            if self._stopping:
                raise RuntimeError("the batching worker has stopped")
            self._start_locked()
            self._jobs.append(job)
            self._cond.notify()
        return await job.future, job

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker after the batch it is running."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    # ------------------------------------------------------------------ the worker thread
    def _start_locked(self) -> None:
        if self._thread is None:  # started on first use, so a test client needs no lifespan
            self._thread = threading.Thread(target=self._work, name="convnet-serve-batcher", daemon=True)
            self._thread.start()

    def _next_batch(self) -> list[Job] | None:
        with self._cond:
            while not self._jobs and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            batch = [self._jobs.popleft()]
            deadline = time.perf_counter() + self.max_wait_s
            while len(batch) < self.max_batch:
                if self._jobs:
                    batch.append(self._jobs.popleft())
                    continue
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or self._stopping:
                    break
                self._cond.wait(remaining)
        return [job for job in batch if not job.abandoned()]

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                self._run(batch)

    def _run(self, batch: list[Job]) -> None:
        try:
            results = list(self.run_batch([job.payload for job in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} inputs")
        except Exception as e:
            if len(batch) > 1:  # find the culprit: each job alone
                for job in batch:
                    self._run([job])
                return
            self._deliver(batch[0], error=e)
            return
        if self.on_batch is not None:
            self.on_batch(len(batch))
        for job, result in zip(batch, results):
            job.batch_size = len(batch)
            self._deliver(job, result=result)

    @staticmethod
    def _deliver(job: Job, result: Any = None, error: BaseException | None = None) -> None:
        def settle() -> None:
            if job.future.done():  # timed out meanwhile: nobody is waiting
                return
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)

        try:
            job.loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the event loop has closed (server shutting down)
            log.debug("dropped a result: event loop closed")


class Admission:
    """At most ``limit`` requests inside at once; the next is refused at the door. Used from
    the event loop only, so a plain counter is enough."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError(f"the queue bound must be >= 1, got {limit}")
        self.limit = limit
        self.inside = 0

    def try_enter(self) -> bool:
        if self.inside >= self.limit:
            return False
        self.inside += 1
        return True

    def leave(self) -> None:
        self.inside -= 1
