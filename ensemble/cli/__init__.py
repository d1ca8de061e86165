"""The `ens` command line: the only package that imports typer or rich."""

from ensemble.cli.app import app, main, run

__all__ = ["app", "main", "run"]
