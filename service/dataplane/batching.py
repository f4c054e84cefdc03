"""Dynamic batching: concurrent requests for the same run (model, graph, parameters) are coalesced into one
run over their rows, and the outputs are split back per request.

A queue flushes on the next turn of the event loop (VAE_BATCH_WAIT_MS = 0) or after that wait, and at once
when it holds VAE_BATCH_MAX_POINTS rows. With no wait, an idle service answers a lone request without delay:
what coalesces is what arrived while the loop was busy. A request is never split across two runs.
"""

import asyncio
from collections.abc import Awaitable, Callable, Hashable

import numpy as np

from service.types import Result

Run = Callable[[np.ndarray], Result]  # rows (n, ...) -> arrays, each (n, ...)
Offload = Callable[[Callable[[], Result]], Awaitable[Result]]


class DynamicBatcher:
    """A run over at most `inline_work` values runs inside the flush itself (a task would cost more than the
    run); a larger one is handed to `offload` (a worker thread)."""

    def __init__(self, max_points: int, max_wait_s: float, inline_work: int, offload: Offload,
                 on_run: Callable[[str, int], None] | None = None):
        self.max_points, self.max_wait_s = max_points, max_wait_s
        self.inline_work, self.offload = inline_work, offload
        self.on_run = on_run  # (operation, requests coalesced): for metrics
        self._queues: dict[Hashable, _Queue] = {}  # only keys with requests waiting: bounded by concurrency
        self._running: set[asyncio.Task] = set()

    async def submit(self, key: Hashable, operation: str, rows: np.ndarray, run: Run, work_per_row: int) -> Result:
        """rows (n, ...) -> run's arrays for these rows; requests with equal keys must have equivalent runs."""
        queue = self._queues.get(key)
        if queue is not None and queue.rows + len(rows) > self.max_points:
            self._flush(key)  # this request would overfill the run: start it without, and a new queue
            queue = None
        if queue is None:
            queue = self._queues[key] = _Queue(operation, run, work_per_row)
        future = asyncio.get_running_loop().create_future()
        queue.items.append((rows, future))
        queue.rows += len(rows)
        if queue.rows >= self.max_points:
            self._flush(key)
        elif queue.timer is None:
            loop = asyncio.get_running_loop()
            queue.timer = (loop.call_later(self.max_wait_s, self._flush, key) if self.max_wait_s > 0
                           else loop.call_soon(self._flush, key))
        return await future

    def _flush(self, key: Hashable) -> None:
        queue = self._queues.pop(key, None)
        if queue is None:
            return  # flushed already, when it filled up
        if queue.timer is not None:
            queue.timer.cancel()
        queue.items = [(rows, future) for rows, future in queue.items if not future.done()]
        if not queue.items:
            return  # every client of this run has gone: nothing to compute
        arrays = [rows for rows, _ in queue.items]
        batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        if self.on_run is not None:
            self.on_run(queue.operation, len(queue.items))
        if len(batch) * queue.work_per_row <= self.inline_work:
            try:
                outputs = queue.run(batch)
            except Exception as exc:  # every request of the run gets the run's error
                self._fail(queue, exc)
            else:
                self._resolve(queue, outputs)
            return
        task = asyncio.ensure_future(self._offload(queue, batch))
        self._running.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._running.discard)

    async def _offload(self, queue: "_Queue", batch: np.ndarray) -> None:
        try:
            outputs = await self.offload(lambda: queue.run(batch))
        except Exception as exc:
            self._fail(queue, exc)
        except BaseException:  # cancelled (shutdown): nobody waits forever
            for _, future in queue.items:
                future.cancel()
            raise
        else:
            self._resolve(queue, outputs)

    @staticmethod
    def _fail(queue: "_Queue", exc: Exception) -> None:
        for _, future in queue.items:
            if not future.done():
                future.set_exception(exc)

    @staticmethod
    def _resolve(queue: "_Queue", result: Result) -> None:
        start = 0
        for rows, future in queue.items:
            if not future.done():  # a client that went away leaves a cancelled future
                future.set_result({name: array[start : start + len(rows)] for name, array in result.items()})
            start += len(rows)


class _Queue:
    def __init__(self, operation: str, run: Run, work_per_row: int):
        self.operation, self.run, self.work_per_row = operation, run, work_per_row
        self.items: list[tuple[np.ndarray, asyncio.Future]] = []
        self.rows = 0
        self.timer: asyncio.Handle | None = None
