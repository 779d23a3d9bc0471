"""The one error type of polyaudit, carrying context (claim, model, site, shape) when re-raised."""

from __future__ import annotations

from typing import Any


class PolyauditCacheWarning(RuntimeWarning):
    """A cache entry could not be used (corrupt, foreign) or written: it is recomputed and the run
    goes on (one line)."""


class PolyauditError(Exception):
    """A problem the user can act on: the message says what, why and what to do.

    Context (claim, model, site, shape, ...) is added as the error travels up, and rendered after
    the message on the same line, so a user-facing error stays one line.
    """

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context: dict[str, Any] = {k: v for k, v in context.items() if v is not None}

    def with_context(self, **context: Any) -> PolyauditError:
        """Return the same error with more context (existing keys are kept)."""
        merged = {k: v for k, v in context.items() if v is not None}
        merged.update(self.context)
        err = type(self)(self.message, **merged)
        err.__cause__ = self.__cause__
        return err

    def __str__(self) -> str:
        if not self.context:
            return self.message
        ctx = " ".join(f"{k}={v}" for k, v in self.context.items())
        return f"{self.message} [{ctx}]"
