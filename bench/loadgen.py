"""One closed-loop load generator for every HTTP server measured here (featureplane's gateway and Feast's
feature server): N clients, each sends its next request as soon as the previous answer arrived, until a
duration or a request count is reached. Bodies are prepared up front so the generator does little work."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.stats import latency_summary


@dataclass
class LoadResult:
    concurrency: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    marked: int = 0  # occurrences of the caller's marker in the answers (e.g. a serving status)

    def summary(self, items_per_request: int = 1) -> dict[str, Any]:
        ok = len(self.latencies_ms)
        result: dict[str, Any] = {"concurrency": self.concurrency, "requests": ok, "errors": self.errors,
                                  "seconds": round(self.seconds, 3),
                                  "requests_per_s": ok / self.seconds if self.seconds else 0.0,
                                  "items_per_s": ok * items_per_request / self.seconds if self.seconds else 0.0,
                                  "marked": self.marked}
        if ok:
            result.update(latency_summary(self.latencies_ms))
        if self.first_error:
            result["first_error"] = self.first_error
        return result


async def _client(http: aiohttp.ClientSession, url: str, bodies: Sequence[bytes], start: int, stride: int,
                  stop_at: float, budget: list[int], result: LoadResult, marker: bytes | None) -> None:
    index = start
    while time.perf_counter() < stop_at and budget[0] > 0:
        budget[0] -= 1
        body = bodies[index % len(bodies)]
        index += stride
        began = time.perf_counter()
        try:
            async with http.post(url, data=body) as response:
                answer = await response.read()
                ok = response.status == 200
                status = f"HTTP {response.status}"
        except aiohttp.ClientError as exc:
            ok, status = False, repr(exc)
        if ok:
            result.latencies_ms.append((time.perf_counter() - began) * 1000)
            if marker is not None:
                result.marked += answer.count(marker)
        else:
            result.errors += 1
            result.first_error = result.first_error or status


async def closed_loop(url: str, bodies: Sequence[bytes], concurrency: int, *, duration_s: float,
                      max_requests: int = sys.maxsize, headers: Mapping[str, str] | None = None,
                      marker: bytes | None = None) -> LoadResult:
    """`concurrency` clients post `bodies` round-robin to `url` for `duration_s` (or `max_requests` in all)."""
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    result = LoadResult(concurrency, 0.0)
    async with aiohttp.ClientSession(connector=connector, headers=all_headers) as http:
        began = time.perf_counter()
        budget = [max_requests]
        await asyncio.gather(*(_client(http, url, bodies, i, concurrency, began + duration_s, budget, result,
                                       marker)
                               for i in range(concurrency)))
        result.seconds = time.perf_counter() - began
    return result


def arrival_offsets(rate_per_s: float, duration_s: float) -> list[float]:
    """Seconds from the start at which an open-loop generator sends, evenly spaced at `rate_per_s`."""
    if rate_per_s <= 0:
        raise ValueError("the rate must be positive")
    return [i / rate_per_s for i in range(int(rate_per_s * duration_s))]


async def open_loop(url: str, bodies: Sequence[bytes], rate_per_s: float, *, duration_s: float,
                    headers: Mapping[str, str] | None = None) -> LoadResult:
    """Requests sent on a fixed schedule whatever the answers do; each latency counts from the request's
    scheduled time, so a server that falls behind shows it (no coordinated omission)."""
    result = LoadResult(0, 0.0)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512), headers=all_headers) as http:

        async def one(body: bytes, due: float) -> None:
            try:
                async with http.post(url, data=body) as response:
                    await response.read()
                    ok, status = response.status == 200, f"HTTP {response.status}"
            except aiohttp.ClientError as exc:
                ok, status = False, repr(exc)
            if ok:
                result.latencies_ms.append((time.perf_counter() - due) * 1000)
            else:
                result.errors += 1
                result.first_error = result.first_error or status

        began = time.perf_counter()
        tasks = []
        for index, offset in enumerate(arrival_offsets(rate_per_s, duration_s)):
            delay = began + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(bodies[index % len(bodies)], began + offset)))
        await asyncio.gather(*tasks)
        result.seconds = time.perf_counter() - began
    return result
