import pytest

from ensemble._registry import Registry
from ensemble.errors import UnknownNameError


def test_unknown_name_lists_the_choices():
    reg: Registry[int] = Registry("blend method")
    reg.add("soft", 1)
    reg.register("hard")(2)
    assert reg.get("hard") == 2 and reg.names() == ["soft", "hard"] and "soft" in reg
    with pytest.raises(UnknownNameError, match=r"unknown blend method 'sotf'; choose one of: soft, hard"):
        reg.get("sotf")
    with pytest.raises(ValueError):
        reg.add("soft", 3)


def test_api_subpackages_stay_callable_as_their_functions():
    import ensemble
    import ensemble.blend
    import ensemble.swa

    # once imported, `ensemble.blend` is the subpackage; it must still call the function
    assert callable(ensemble.blend) and callable(ensemble.swa)
    with pytest.raises(TypeError):
        ensemble.blend()  # the function's required arguments, not "module is not callable"
