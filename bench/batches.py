"""Batches for the batch benchmark of bench/http_speed.py: request bodies of rows drawn from a pool, and
closed-loop timing (each caller calls, waits for the answer, calls again) for in-process and HTTP calls alike."""

import io
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import orjson


def closed_loop(call, seconds: float, threads: int) -> tuple[list[float], list]:
    """call(thread_index) from `threads` threads at once, each calling until `seconds` have passed and finishing
    its last call -> the seconds of every call, and what every call returned."""
    timings, results = [], []

    def worker(index: int, until: float) -> None:
        while time.perf_counter() < until:
            began = time.perf_counter()
            results.append(call(index))
            timings.append(time.perf_counter() - began)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads), [time.perf_counter() + seconds] * threads))
    return timings, results


class RowPool:
    """The rows every batch draws from, 4 decimals each, so a JSON body and a .npy body carry the same numbers;
    each caller (thread or client, by index) picks its rows with its own generator."""

    def __init__(self, size: int, width: int, callers: int):
        self.rows = np.round(np.random.default_rng(0).uniform(size=(size, width)), 4).astype(np.float32)
        self.json_rows = [orjson.dumps(np.round(row.astype(np.float64), 4).tolist()) for row in self.rows]
        self.generators = [np.random.default_rng(index + 1) for index in range(callers)]

    def pick(self, caller: int, count: int) -> np.ndarray:
        """`count` row numbers: fresh data each call (a pool of R rows makes R**count batches)."""
        return self.generators[caller].integers(len(self.rows), size=count)

    def json_body(self, picked: np.ndarray, fields: dict) -> bytes:
        return orjson.dumps(fields)[:-1] + b',"x":[' + b",".join(self.json_rows[i] for i in picked) + b"]}"

    def npy_body(self, picked: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, self.rows[picked])
        return buffer.getvalue()
