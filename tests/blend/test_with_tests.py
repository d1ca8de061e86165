"""`with_tests`: test tables given after the fit give the blend `blend(..., test_tables=...)` gives."""

from __future__ import annotations

import numpy as np
import pytest

from ensemble.blend.core import blend, with_tests
from ensemble.errors import ConfigError


@pytest.mark.parametrize("options", [
    {"method": "weighted"}, {"method": "soft", "seed_average": True}, {"method": "greedy", "tune_bias": True},
])
def test_tests_given_after_the_fit_give_the_same_blend(small_tables, options):
    oof, test, labels, *_ = small_tables
    at_once = blend(oof, labels, test_tables=test, nested=False, **options)
    later = with_tests(blend(oof, labels, nested=False, **options), test)
    assert later.test is not None and later.test_members is not None
    np.testing.assert_array_equal(later.test.probs.view(np.uint32), at_once.test.probs.view(np.uint32))
    assert later.test.ids.tolist() == at_once.test.ids.tolist() and later.test.meta == at_once.test.meta
    np.testing.assert_array_equal(later.oof.probs, at_once.oof.probs)
    a, b = at_once.recipe.to_dict(), later.recipe.to_dict()
    a.pop("created"), b.pop("created")
    assert a == b


def test_with_tests_refuses_tests_of_other_members(small_tables):
    oof, test, labels, *_ = small_tables
    result = blend(oof, labels, method="soft", nested=False)
    with pytest.raises(ConfigError, match="test tables for"):
        with_tests(result, test[:-1])
