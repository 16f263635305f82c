"""Work for one trip to the database: a generator that yields statements and is sent their rows.

The work says what to run and decides what to do with each answer; it does no I/O itself. So one
description serves every backend: SQLite runs it whole on its worker thread (one hop, however many
statements), PostgreSQL drives it on one pooled connection. `Storage.run` is the entry point; the
collections' `steps` build the pieces, combined with `yield from`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

__all__ = ["Rows", "Statement", "Steps", "Versioned", "drive", "drive_async"]

T = TypeVar("T")
R = TypeVar("R")

Statement: TypeAlias = tuple[str, tuple[Any, ...]]  # SQL with `?` placeholders, and its arguments
Rows: TypeAlias = Sequence[Sequence[Any]]
Steps: TypeAlias = Generator[Statement, Rows, R]


@dataclass(frozen=True)
class Versioned(Generic[T]):
    """An object as read, with the row version a later compare-and-swap expects to find unchanged."""

    value: T
    version: int


def drive(execute: Callable[[str, tuple[Any, ...]], Rows], steps: Steps[R]) -> R:
    """Run `steps` to its end here and now, answering each statement with `execute`."""
    try:
        statement = next(steps)
        while True:
            statement = steps.send(execute(*statement))
    except StopIteration as done:
        result: R = done.value
        return result
    finally:
        # A statement that failed leaves the work suspended at its yield: end it without resuming it.
        steps.close()


async def drive_async(execute: Callable[[str, tuple[Any, ...]], Awaitable[Rows]], steps: Steps[R]) -> R:
    """`drive` for a driver whose statements are awaited (PostgreSQL, or one hop per statement)."""
    try:
        statement = next(steps)
        while True:
            statement = steps.send(await execute(*statement))
    except StopIteration as done:
        result: R = done.value
        return result
    finally:
        steps.close()
