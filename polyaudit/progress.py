"""Progress bars for long steps (activation capture, zoo training): rich, transient, on stderr.

    with progress_bar("capturing 8 sites", total=len(batches), enabled=options.progress) as advance:
        for batch in batches:
            ...
            advance(1)

`enabled` comes from `RunOptions.progress`, which the plugin sets only when the run is not quiet
(`-q`), stderr is a terminal and `CI` is not set; so CI logs never fill with bars. Inside a pytest run
output capture is suspended while a bar is shown (the plugin registers pytest's capture manager
here), otherwise the bar would land in the captured output of the test.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

_SUSPENDERS: list[Callable[[], contextlib.AbstractContextManager[Any]]] = []


def progress_allowed(stream: TextIO | None = None) -> bool:
    """False in CI (`CI` set to anything but 0/false) or when stderr is not a terminal."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        return False
    stream = stream if stream is not None else sys.__stderr__
    return bool(stream is not None and stream.isatty())


def set_capture_suspender(suspend: Callable[[], contextlib.AbstractContextManager[Any]] | None) -> None:
    """Register (or clear, with None) what suspends output capture while a bar is shown."""
    _SUSPENDERS.clear()
    if suspend is not None:
        _SUSPENDERS.append(suspend)


def _noop(n: int = 1) -> None:
    return None


@contextlib.contextmanager
def progress_bar(description: str, total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """Yield `advance(n=1)`; a no-op when disabled. The bar disappears when the step ends."""
    if not enabled or total <= 0:
        yield _noop
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with contextlib.ExitStack() as stack:
        if _SUSPENDERS:
            stack.enter_context(_SUSPENDERS[0]())
        console = Console(file=sys.stderr, stderr=True)
        bar = stack.enter_context(Progress(
            TextColumn("[bold]polyaudit[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeRemainingColumn(), console=console, transient=True,
        ))
        task = bar.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            bar.advance(task, n)

        yield advance
