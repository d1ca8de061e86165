"""`python -m ensemble` (and `torchrun -m ensemble`) runs the `ens` CLI."""

from ensemble.cli import main

if __name__ == "__main__":
    main()
