"""A virtual, auto-jumping clock for asyncio, as Trio's ``MockClock(autojump_threshold=0)``.

When every task is waiting and nothing is ready to read or write, the loop does not sleep:
it moves its clock straight to the next timer. An hour of token life passes in
milliseconds, and a test that sleeps sleeps for no real time.

It works through the one place asyncio waits: the selector's ``select(timeout)``. A poll
that finds nothing ready advances the loop's clock by *timeout* instead of blocking. With no
timer at all (``timeout=None``), the loop blocks for real, since only the outside world
(a thread, a signal) can wake it then.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any

__all__ = ["AutojumpEventLoop"]


class _JumpingSelector(selectors.BaseSelector):
    """A selector that polls its real selector and, when nothing is ready, jumps time."""

    def __init__(self, loop: AutojumpEventLoop) -> None:
        self._real = selectors.DefaultSelector()
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            return self._real.select(None)
        ready = self._real.select(0)
        if not ready and timeout > 0:
            self._loop.advance(timeout)
        return ready

    def close(self) -> None:
        self._real.close()

    def get_map(self) -> Any:
        return self._real.get_map()


class AutojumpEventLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop on a virtual clock that jumps to the next timer when idle.

    For anyio's pytest plugin::

        @pytest.fixture
        def anyio_backend():
            return "asyncio", {"loop_factory": AutojumpEventLoop}

    ``loop.time()`` (and so `anyio.current_time`) starts at 0 and advances only when the
    loop would otherwise wait. Keep tests that talk over real sockets on the real clock:
    time jumps past a socket's timeout while the peer is still answering.
    """

    def __init__(self) -> None:
        self._virtual_now = 0.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        """The virtual time, in seconds since the loop was made."""
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by *seconds* (the loop does this itself when idle)."""
        if seconds < 0:
            raise ValueError(f"time only moves forward, not by {seconds!r} s")
        self._virtual_now += seconds
