"""Progress bars: only on a terminal, never in CI or under -q, and out of pytest's captured output."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

import pytest

from polyaudit.progress import progress_allowed, progress_bar, set_capture_suspender


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(("ci", "tty", "allowed"), [("", True, True), ("true", True, False), ("1", True, False),
                                                    ("false", True, True), ("", False, False)])
def test_progress_only_on_a_terminal_outside_ci(monkeypatch: pytest.MonkeyPatch, ci: str, tty: bool, allowed: bool) -> None:
    monkeypatch.setenv("CI", ci)
    assert progress_allowed(_Stream(tty)) is allowed


def test_disabled_bar_is_silent(capsys: pytest.CaptureFixture[str]) -> None:
    with progress_bar("capturing", total=5, enabled=False) as advance:
        for _ in range(5):
            advance(1)
    assert capsys.readouterr() == ("", "")


def test_enabled_bar_suspends_capture_and_advances() -> None:
    events: list[str] = []

    @contextlib.contextmanager
    def suspend() -> Iterator[None]:
        events.append("suspended")
        yield
        events.append("resumed")

    set_capture_suspender(suspend)
    try:
        with progress_bar("capturing", total=3, enabled=True) as advance:
            for _ in range(3):
                advance(1)
            events.append("work")
    finally:
        set_capture_suspender(None)
    assert events == ["suspended", "work", "resumed"]


def test_quiet_runs_have_no_progress(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from polyaudit.plugin.state import OPTIONS

        def test_progress_flag(request):
            assert request.config.stash[OPTIONS].progress is False
        """
    )
    assert pytester.runpytest("-q", "-p", "no:cacheprovider").ret == pytest.ExitCode.OK
