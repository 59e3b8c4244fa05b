"""Small helpers for concurrency: the event loop's clock, running two awaitables at once,
and reading the exception groups a task group raises."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio

A = TypeVar("A")
B = TypeVar("B")


def loop_clock() -> Callable[[], float]:
    """The running event loop's clock, the one `anyio.current_time` reads, as a function
    that reads it without finding out the backend on every call (for the hot paths).

    It belongs to this event loop: get it again in another.
    """
    trio = sys.modules.get("trio")  # not imported: not running (importing it costs time)
    if trio is not None and trio.lowlevel.in_trio_run():
        # The run's clock itself (a MockClock in tests): trio.current_time() finds it
        # through the run's context on every call, which costs more than the read.
        return trio.lowlevel.current_clock().current_time  # type: ignore[no-any-return]
    try:
        return asyncio.get_running_loop().time
    except RuntimeError:
        return anyio.current_time


async def together(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Await both at once; an error of either is raised as it is (not in a group)."""
    results: list[Any] = await gather([first, second])
    return results[0], results[1]


async def gather(awaitables: Sequence[Awaitable[A]]) -> list[A]:
    """Await all at once, results in order; the first error is raised as it is (not in a
    group), and cancels the others."""
    results: list[Any] = [None] * len(awaitables)
    errors: list[Exception] = []

    async def run(index: int, awaitable: Awaitable[Any]) -> None:
        try:
            results[index] = await awaitable
        except Exception as exc:
            errors.append(exc)
            tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        for index, awaitable in enumerate(awaitables):
            tg.start_soon(run, index, awaitable)
    if errors:
        raise errors[0]
    return results


def same_error(raised: BaseException, original: BaseException) -> bool:
    """Whether *raised* is *original*, or a copy of the group *original* (Trio's nursery
    splits groups, which copies them but keeps their leaves)."""
    if raised is original:
        return True
    return (
        isinstance(raised, BaseExceptionGroup)
        and isinstance(original, BaseExceptionGroup)
        and leaves(raised) == leaves(original)
    )


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions inside *group* and its nested groups, in order."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found
