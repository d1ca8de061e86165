"""Progress reporting without printing: the library calls a hook, the CLI renders it."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """What long-running library functions report to (the CLI passes a rich progress bar)."""

    def start(self, description: str, total: int | None) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def stop(self) -> None: ...


class NoProgress:
    """The default hook: reports nothing."""

    def start(self, description: str, total: int | None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def stop(self) -> None:
        pass
