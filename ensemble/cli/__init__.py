"""The `ens` command line: the only package that imports typer or rich."""

from ensemble.cli.app import app, main

__all__ = ["app", "main"]
