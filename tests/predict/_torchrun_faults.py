"""`ens` under torchrun with a fault injected into one rank (for tests/predict/test_distributed.py).

Environment: ENS_TEST_RANK (which rank), ENS_TEST_FAULT ("kill": the rank SIGKILLs itself when it
loads its first model; "error": loading raises a ModelLoadError). Other ranks run `ens` unchanged.
"""

import os
import signal
import sys

from ensemble.errors import ModelLoadError
from ensemble.predict import engine


def _fault(*args: object, **kwargs: object) -> None:
    if os.environ["ENS_TEST_FAULT"] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise ModelLoadError("injected failure: cannot load the weights")


if os.environ.get("RANK") == os.environ.get("ENS_TEST_RANK"):
    engine.make_runner = _fault

if __name__ == "__main__":
    from ensemble.cli import main

    sys.argv[0] = "ens"
    main()
