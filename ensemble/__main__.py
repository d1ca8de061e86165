"""`python -m ensemble` (and `torchrun -m ensemble`) runs the `ens` CLI."""

from ensemble.cli import run

if __name__ == "__main__":
    run()
