"""`average_checkpoints` against torch's own `AveragedModel`: uniform, weighted, EMA, dtypes, refusals."""

from __future__ import annotations

import pytest
import torch

from ensemble.errors import ConfigError, ModelLoadError
from ensemble.swa import average_checkpoints
from tests.swa.helpers import make_model, oracle, save


@pytest.mark.parametrize("arch", ["test_resnet", "test_efficientnet"])
def test_uniform_average_equals_averaged_model(tmp_path, arch):
    models = [make_model(arch, seed=s) for s in range(4)]
    paths = [save(m.state_dict(), tmp_path / f"{arch}_{i}.pth") for i, m in enumerate(models)]
    got = average_checkpoints(paths)
    want = oracle(models)
    assert list(got) == list(want)
    floats = [k for k, v in want.items() if v.is_floating_point()]
    assert any("running_mean" in k for k in floats) and any("weight" in k for k in floats)
    for k in floats:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6, msg=k)
        assert got[k].dtype == want[k].dtype


def test_integer_counters_take_the_max_not_a_floored_average(three):
    models, paths = three
    got = average_checkpoints(paths)
    counters = [k for k in got if k.endswith("num_batches_tracked")]
    assert counters
    for k in counters:
        assert got[k].dtype == torch.int64 and int(got[k]) == 300  # 100, 200, 300 -> max, not 200


def test_weighted_average_is_the_float64_weighted_mean(three):
    models, paths = three
    got = average_checkpoints(paths, weights=[1, 2, 5])
    sds = [m.state_dict() for m in models]
    for k, v in got.items():
        if v.is_floating_point():
            want = sum(w * sd[k].double() for w, sd in zip([1 / 8, 2 / 8, 5 / 8], sds)).float()
            torch.testing.assert_close(v, want, rtol=0, atol=1e-6)


def test_dtypes_are_preserved(tmp_path):
    models = [make_model(seed=s) for s in range(2)]
    half = [save({k: v.half() if v.is_floating_point() else v for k, v in m.state_dict().items()}, tmp_path / f"h{i}.pth")
            for i, m in enumerate(models)]
    got = average_checkpoints(half)
    ref = models[0].state_dict()
    for k, v in got.items():
        assert v.dtype == (torch.float16 if ref[k].is_floating_point() else ref[k].dtype), k
    # the float16 result is the float64 average rounded once
    k = "conv1.0.weight"
    want = ((ref[k].half().double() + models[1].state_dict()[k].half().double()) / 2).half()
    assert torch.equal(got[k], want)
    # float16 + float32 sources: the wider dtype
    full = save(models[1].state_dict(), tmp_path / "f1.pth")
    assert average_checkpoints([half[0], full])["conv1.0.weight"].dtype == torch.float32


def test_ema_averages_the_ema_weights(tmp_path):
    raw = [make_model(seed=s) for s in range(2)]
    ema = [make_model(seed=10 + s) for s in range(2)]
    paths = [save({"state_dict": r.state_dict(), "state_dict_ema": e.state_dict()}, tmp_path / f"c{i}.pth")
             for i, (r, e) in enumerate(zip(raw, ema))]
    got, want = average_checkpoints(paths, ema=True), oracle(ema)
    torch.testing.assert_close(got["fc.weight"], want["fc.weight"], rtol=0, atol=1e-6)
    assert not torch.allclose(got["fc.weight"], oracle(raw)["fc.weight"])


def test_different_architectures_are_refused(tmp_path):
    a = save(make_model("test_resnet").state_dict(), tmp_path / "a.pth")
    b = save(make_model("test_efficientnet").state_dict(), tmp_path / "b.pth")
    with pytest.raises(ModelLoadError) as e:
        average_checkpoints([a, b])
    first_missing = next(iter(make_model("test_resnet").state_dict()))
    msg = str(e.value)
    assert f"{b} lacks" in msg and f'"{first_missing}"' in msg and f"that {a} has" in msg
    assert "average checkpoints of one architecture" in msg


def test_same_keys_different_shapes_are_refused(tmp_path):
    a = save(make_model(num_classes=5).state_dict(), tmp_path / "a.pth")
    b = save(make_model(num_classes=7).state_dict(), tmp_path / "b.pth")
    with pytest.raises(ModelLoadError, match=r"key 'fc\.weight' has shape \(5, \d+\) in .*a\.pth but \(7, \d+\) in .*b\.pth"):
        average_checkpoints([a, b])


def test_differing_integer_constants_are_refused(tmp_path):
    a = save({"w": torch.ones(2), "index": torch.arange(4)}, tmp_path / "a.pth")
    b = save({"w": torch.zeros(2), "index": torch.arange(4).flip(0)}, tmp_path / "b.pth")
    with pytest.raises(ModelLoadError, match=r"integer tensor 'index' differs between .*a\.pth and .*b\.pth"):
        average_checkpoints([a, b])
    c = save({"w": torch.zeros(2), "index": torch.arange(4)}, tmp_path / "c.pth")
    got = average_checkpoints([a, c])
    assert torch.equal(got["index"], torch.arange(4)) and torch.equal(got["w"], torch.full((2,), 0.5))


@pytest.mark.parametrize(
    "weights, message",
    [([1, 2], "2 weights for 3 checkpoints"), ([1, -1, 1], "must be finite and >= 0"), ([0, 0, 0], "weights sum to 0")],
)
def test_bad_weights(three, weights, message):
    with pytest.raises(ConfigError, match=message):
        average_checkpoints(three[1], weights=weights)
