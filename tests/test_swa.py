"""Moved to tests/swa/ (it mirrors ensemble/swa/). Kept only so `from tests.test_swa import make_model,
save` in tests/cli/test_unwritable.py still works; import from `tests.swa.helpers` instead."""

from tests.swa.helpers import make_model, oracle, save, sha  # noqa: F401
