"""The Typer app, its error mapping, and the registration of every sub-command."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
import typer.core

from ensemble import __version__
from ensemble.cli import _render
from ensemble.errors import EnsembleError

EXIT_USER_ERROR = 2


class EnsGroup(typer.core.TyperGroup):
    """Turns a library error (or an `OSError` that escaped it) into one red line on stderr and exit
    code 2, for every (sub-)command.

    Living in the group (not in `main`) makes the mapping hold under `typer.testing.CliRunner` too.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except EnsembleError as e:
            if os.environ.get("ENS_DEBUG") == "1":
                raise
            if not getattr(e, "silent", False):  # a distributed run's other ranks: rank 0 says it
                _render.error_line(" ".join(str(e).split()))
            raise typer.Exit(EXIT_USER_ERROR) from None
        except OSError as e:  # the backstop: a path the library did not check, e.g. a full disk mid-write
            if os.environ.get("ENS_DEBUG") == "1":
                raise
            where = f"{e.filename}: " if e.filename is not None else ""
            _render.error_line(f"{where}{(e.strerror or str(e)).lower()}; check the path, its permissions and free space")
            raise typer.Exit(EXIT_USER_ERROR) from None


app = typer.Typer(
    name="ens",
    cls=EnsGroup,
    help="Ensembling and submission toolbox for image-classification competitions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        _render.out().print(f"ens {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """ens: predict with TTA, score OOF, blend honestly, write and choose submissions.

    Set ENS_DEBUG=1 to see a traceback instead of the one-line error.
    """
    _render.setup_logging()


def _register() -> None:
    # One line per command module, in the order of DESIGN.md's flow.
    from ensemble.cli import blend, check, export_onnx, folds, predict, report, select, submissions, swa

    for module in (check, folds, predict, report, blend, swa, export_onnx, submissions, select):
        module.register(app)


_register()


def main() -> None:
    """Console-script entry point (`ens`, `python -m ensemble`)."""
    app(prog_name="ens")
