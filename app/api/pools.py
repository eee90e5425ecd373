"""Fair, bounded pools for the heavy work, so one account's flood never queues another's calls.

Synchronous endpoints run on one shared thread pool (anyio's, 40 threads), authentication
included. Left there, 45 concurrent detections of one account held every thread and another
account's `/info/api` waited 16.7 s. So heavy work runs elsewhere: each kind (inference, url
fetch, matching) has its own threads and a fixed number of slots, and a request waits for a
slot *without holding a thread*. Free slots go to the waiting keys (accounts) in turn, round
robin, so an account with one call waits behind at most one call of each other account, however
many that account has queued. Reading the bodies of requests whose credentials are not in the
query string is bounded the same way, keyed by client address.

Slots are per worker process (README, "Fair sharing").
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TypeVar

from app.config import get_settings
from app.media.fetch import download_timeout, fetch_image

T = TypeVar("T")


class FairSlots:
    """A semaphore that grants free slots to its waiting keys in turn (round robin).

    Each wait makes its future on the running loop, so one instance serves whichever loop a
    worker (or a test client) runs.
    """

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._free = slots
        # key -> its waiters in arrival order; the dict's order is the round-robin turn.
        self._waiting: OrderedDict[Hashable, deque[asyncio.Future[None]]] = OrderedDict()

    def queued(self) -> int:
        return sum(len(waiters) for waiters in self._waiting.values())

    async def acquire(self, key: Hashable) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, deque()).append(granted)
        try:
            await granted
        except BaseException:
            if granted.done() and not granted.cancelled():
                self.release()  # granted just as the wait was cancelled: pass the slot on
            else:
                self._forget(key, granted)
            raise

    def release(self) -> None:
        """Hand the slot to the next key in turn; that key goes to the back of the turn."""
        while self._waiting:
            key, waiters = next(iter(self._waiting.items()))
            granted = waiters.popleft()
            del self._waiting[key]
            if waiters:
                self._waiting[key] = waiters
            if not granted.done():
                granted.set_result(None)
                return
        self._free += 1

    @asynccontextmanager
    async def held(self, key: Hashable, wait_s: float | None = None) -> AsyncIterator[None]:
        """Hold a slot for the block; TimeoutError when none came within `wait_s`."""
        async with asyncio.timeout(wait_s):
            await self.acquire(key)
        try:
            yield
        finally:
            self.release()

    def _forget(self, key: Hashable, granted: asyncio.Future[None]) -> None:
        waiters = self._waiting.get(key)
        if waiters is not None and granted in waiters:
            waiters.remove(granted)
            if not waiters:
                del self._waiting[key]


class FairPool:
    """`slots` concurrent jobs on their own threads, granted round robin across accounts."""

    def __init__(self, name: str, slots: int) -> None:
        self.name = name
        self.slots = FairSlots(slots)
        self._executor = ThreadPoolExecutor(max_workers=slots, thread_name_prefix=f"pool-{name}")

    async def run(
        self, account_id: int, work: Callable[[], T], *, wait_s: float | None = None
    ) -> T:
        """Wait for a slot (fairly, on the event loop), then run `work` on this pool's threads.

        `wait_s` bounds the wait for a slot (TimeoutError). Once running, `work` is never cut
        short, and its slot is only given back when its thread is done with it, even if the
        request was cancelled meanwhile.
        """
        async with asyncio.timeout(wait_s):
            await self.slots.acquire(account_id)
        context = contextvars.copy_context()  # the request id reaches the worker's logs
        job = asyncio.get_running_loop().run_in_executor(self._executor, context.run, work)
        job.add_done_callback(lambda _: self.slots.release())
        return await asyncio.shield(job)


class Pools:
    """The process's pools, built once per worker (at the first request that needs one)."""

    def __init__(self, inference: int, fetch: int, matching: int, reads: int) -> None:
        self.inference = FairPool("inference", inference)
        self.fetch = FairPool("fetch", fetch)
        self.matching = FairPool("matching", matching)
        self.unauthenticated_reads = FairSlots(reads)

    async def download(self, account_id: int, url: str) -> bytes:
        """`fetch_image` on the fetch pool; its deadline counts the wait for a slot too."""
        settings = get_settings()
        work = functools.partial(
            fetch_image,
            url,
            allowlist=settings.url_allowlist,
            timeout_s=settings.fetch_timeout_s,
            max_bytes=settings.max_image_bytes,
            started_at=time.monotonic(),
        )
        try:
            return await self.fetch.run(account_id, work, wait_s=settings.fetch_timeout_s)
        except TimeoutError:
            raise download_timeout() from None


@functools.cache
def get_pools() -> Pools:
    settings = get_settings()
    return Pools(
        settings.inference_slots,
        settings.fetch_slots,
        settings.matching_slots,
        settings.unauthenticated_reads,
    )
