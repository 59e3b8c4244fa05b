"""Small helpers for task groups: running two awaitables at once, and reading the
exception groups a task group raises."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import anyio

A = TypeVar("A")
B = TypeVar("B")


async def together(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Await both at once; an error of either is raised as it is (not in a group)."""
    results: list[Any] = [None, None]
    errors: list[Exception] = []

    async def run(index: int, awaitable: Awaitable[Any]) -> None:
        try:
            results[index] = await awaitable
        except Exception as exc:
            errors.append(exc)
            tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, 0, first)
        tg.start_soon(run, 1, second)
    if errors:
        raise errors[0]
    return results[0], results[1]


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
