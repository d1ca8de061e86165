"""The Typer app, its error mapping, and the registration of every sub-command."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Annotated, Any

import typer
import typer.core

from ensemble import __version__
from ensemble.cli import _render
from ensemble.errors import EnsembleError

EXIT_USER_ERROR = 2

# command -> the module of ensemble.cli whose `register` adds it, in the order `ens --help` lists them.
# A command's module (and what it imports: torch, numba, pandas...) loads only when that command runs
# or its own help page is asked for, so `ens check` does not pay for `ens predict`'s imports.
COMMANDS = {
    "check": "check", "folds": "folds", "predict": "predict", "oof-report": "report", "blend": "blend",
    "swa": "swa", "export-onnx": "export_onnx", "select": "select", "submissions": "submissions",
}

# command -> the first paragraph of its help, which `ens --help` lists: listing the commands from here
# instead of loading their nine modules halves the start-up of `ens --help` (~150 ms of imports and
# Typer's parameter introspection). tests/cli/test_app.py keeps each line equal to the command's own help.
SUMMARIES = {
    "check": "Check tables: ids, classes, probabilities, their task, and (with --labels) that they cover the "
             "labelled ids.",
    "folds": "Make folds with scikit-learn's splitters, or --check an existing fold column.",
    "predict": "Predict OOF or test probabilities with TTA; each image decoded once for every model and fold.",
    "oof-report": "Score OOF tables: macro-F1 with CI and per-fold spread, per-class, confusion, correlation.",
    "blend": "Blend members' OOF and test probabilities; print in-sample and nested scores and an honest verdict.",
    "swa": "Average checkpoints of one model into one (SWA): uniform, --weights, --top-n by a metric, --ema.",
    "export-onnx": "Export each fold checkpoint to ONNX (dynamic batch) and check it against torch in ONNX Runtime.",
    "select": "Pick N finals: the best honest (nested) OOF estimate, then hedges that raise the expected best-of-N.",
    "submissions": "The ledger of submissions: record, list, score and compare them; identical files are flagged.",
}


class EnsGroup(typer.core.TyperGroup):
    """Turns a library error (or an `OSError` that escaped it) into one red line on stderr and exit
    code 2, for every (sub-)command.

    Living in the group (not in `main`) makes the mapping hold under `typer.testing.CliRunner` too.
    Sub-commands are loaded on first use (`COMMANDS`); the group's own help lists them by their
    summaries (`SUMMARIES`) without loading them.
    """

    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, name: str) -> Any:
        if name not in self.commands and name in COMMANDS:
            if self._listing:  # a row of the group's help page: the summary is all it shows
                return typer.core.TyperCommand(name, help=SUMMARIES[name])
            self.add_command(_load_command(name), name)
        return super().get_command(ctx, name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

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
        finally:  # early parses a command did not read (it failed first): an in-process caller keeps none
            if (tables := sys.modules.get("ensemble._csv_table")) is not None:
                tables.forget_prefetched()


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


def _load_command(name: str) -> Any:
    """The click command `name`, registered by its module on an app of its own."""
    sub = typer.Typer(rich_markup_mode="rich", pretty_exceptions_enable=False, add_completion=False)
    importlib.import_module(f"ensemble.cli.{COMMANDS[name]}").register(sub)
    return typer.main.get_group(sub).commands[name]


def main() -> None:
    """Run the command line (raises SystemExit with the status, as Typer apps do)."""
    app(prog_name="ens")


def run() -> None:
    """Console-script entry point (`ens`, `python -m ensemble`): `main`, then a quick exit.

    A finished command's work is on disk and its messages flushed, yet tearing the interpreter down
    (numba's and pandas' modules, every array) took ~0.3 s of a 2.3 s `ens blend` (bench_cli.py's
    problem, 2-core machine). So the process leaves with `os._exit` once the exit handlers have run
    (they join multiprocessing children, flush logging, remove temporary folders). With another
    non-daemon thread still running, it exits the normal way, which waits for that thread.
    """
    try:
        main()
        status: object = 0
    except SystemExit as e:
        status = e.code
    import atexit
    import threading

    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(status)
    if status is None:
        status = 0
    elif not isinstance(status, int):  # as sys.exit("text") does: the text on stderr, status 1
        print(status, file=sys.stderr)
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(status)
