from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
import ttach
from scipy.stats import gmean

from ensemble.errors import ConfigError, UnknownNameError
from ensemble.predict.stacking import run_stacked, stack_views
from ensemble.predict.tta import MERGES, VIEWS, check_views, merge_views, parse_views


def batch(h: int = 8, w: int = 8, b: int = 2) -> torch.Tensor:
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(0))


def all_views():
    return parse_views(",".join(VIEWS.names()))


@pytest.mark.parametrize("view", all_views(), ids=lambda v: v.name)
def test_every_view_keeps_batch_channels_and_size(view):
    x = batch()
    y = view(x)
    factor = float(view.name.split("_")[1]) if view.name.startswith("scale_") else 1.0
    assert y.shape == (2, 3, round(8 * factor), round(8 * factor))
    assert y.dtype == x.dtype
    # a view acts on each image alone: the batch order is kept
    torch.testing.assert_close(view(x[1:]), y[1:])


def test_flip_and_rotation_round_trips():
    x = batch(6, 6)
    v = {view.name: view for view in parse_views("d4")}
    torch.testing.assert_close(v["hflip"](v["hflip"](x)), x, rtol=0, atol=0)
    torch.testing.assert_close(v["vflip"](v["vflip"](x)), x, rtol=0, atol=0)
    torch.testing.assert_close(v["rot270"](v["rot90"](x)), x, rtol=0, atol=0)
    torch.testing.assert_close(v["rot180"](x), v["hflip"](v["vflip"](x)), rtol=0, atol=0)
    torch.testing.assert_close(v["hflip"](x), x.flip(-1), rtol=0, atol=0)


def test_d4_is_the_closed_group_of_eight_distinct_views():
    x = batch(5, 5)
    views = parse_views("d4")
    outs = [vw(x) for vw in views]
    assert len(views) == 8 and views[0].name == "identity"
    for i in range(8):
        for j in range(i):
            assert not torch.equal(outs[i], outs[j]), (views[i].name, views[j].name)
    # composing with hflip or rot90 maps the set onto itself
    for extra in (lambda t: t.flip(-1), lambda t: torch.rot90(t, 1, (2, 3))):
        for o in outs:
            assert any(torch.equal(extra(o), p) for p in outs)


def test_d2_matches_ttach_flip_transform_views():
    x = batch()
    ours = [vw(x) for vw in parse_views("d2")]
    theirs = [t.augment_image(x) for t in ttach.aliases.flip_transform()]
    assert len(ours) == len(theirs) == 4
    for t in theirs:
        assert any(torch.equal(t, o) for o in ours)


def test_crops_against_slicing_and_interpolate():
    x = batch(8, 8)
    v = {view.name: view for view in parse_views("five_crop_0.5,center_crop_1")}
    up = lambda t: F.interpolate(t, size=(8, 8), mode="bilinear", align_corners=False)  # noqa: E731
    torch.testing.assert_close(v["crop_lt_0.5"](x), up(x[..., :4, :4]))
    torch.testing.assert_close(v["crop_rb_0.5"](x), up(x[..., 4:, 4:]))
    torch.testing.assert_close(v["crop_rt_0.5"](x), up(x[..., :4, 4:]))
    torch.testing.assert_close(v["crop_lb_0.5"](x), up(x[..., 4:, :4]))
    torch.testing.assert_close(v["center_crop_0.5"](x), up(x[..., 2:6, 2:6]))
    torch.testing.assert_close(v["center_crop_1"](x), x, rtol=0, atol=0)


def test_parse_views_identity_first_once_and_defaults():
    names = [v.name for v in parse_views("hflip, d2,hflip")]
    assert names == ["identity", "hflip", "vflip", "rot180"]
    assert [v.name for v in parse_views("none")] == ["identity"]
    assert [v.name for v in parse_views(())] == ["identity"]
    assert [v.name for v in parse_views(["center_crop", "scale"])] == ["identity", "center_crop_0.875", "scale_1.15"]
    assert [v.name for v in parse_views("five_crop")][-1] == "center_crop_0.875"


def test_unknown_view_lists_the_valid_ones():
    with pytest.raises(UnknownNameError) as e:
        parse_views("hflip,sharpen")
    assert str(e.value).startswith("unknown TTA view 'sharpen'; choose one of: none, identity, hflip")
    assert "center_crop[_F]" in str(e.value) and "d4" in str(e.value)
    with pytest.raises(UnknownNameError, match="unknown TTA view 'hflip_2'"):
        parse_views("hflip_2")


def test_bad_view_parameters():
    with pytest.raises(ConfigError, match=r"TTA view center_crop_1.5: the crop fraction must be in \(0, 1\]"):
        parse_views("center_crop_1.5")
    with pytest.raises(ConfigError, match=r"TTA view scale_0: the factor must be in \(0, 4\]"):
        parse_views("scale_0")


def test_rotations_refused_on_non_square_inputs():
    check_views(parse_views("d4"), (32, 32), "m")
    check_views(parse_views("d2"), (32, 48), "m")  # flips and rot180 keep the shape
    with pytest.raises(ConfigError) as e:
        check_views(parse_views("d4"), (32, 48), "m")
    assert str(e.value) == (
        "model 'm': TTA views rot90, rot270, hflip_rot90, hflip_rot270 rotate by 90 degrees, which needs a "
        "square image, but img_size is 32x48; drop them (use hflip/vflip/d2) or use a square img_size"
    )


# -- merges ------------------------------------------------------------------------------------------

def logits(v: int = 4, b: int = 5, c: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(v, b, c, generator=torch.Generator().manual_seed(seed)) * 3


def test_merges_against_numpy_and_scipy():
    z = logits()
    p = torch.softmax(z.double(), -1).numpy()
    np.testing.assert_allclose(merge_views(z, "mean").numpy(), p.mean(0), atol=1e-6)
    g = gmean(p, axis=0)
    np.testing.assert_allclose(merge_views(z, "gmean").numpy(), g / g.sum(-1, keepdims=True), atol=1e-6)
    mx = p.max(0)
    np.testing.assert_allclose(merge_views(z, "max").numpy(), mx / mx.sum(-1, keepdims=True), atol=1e-6)
    mz = z.double().mean(0).numpy()
    e = np.exp(mz - mz.max(-1, keepdims=True))
    np.testing.assert_allclose(merge_views(z, "logits_mean").numpy(), e / e.sum(-1, keepdims=True), atol=1e-6)


def test_gmean_of_probabilities_equals_softmax_of_mean_logits():
    z = logits(seed=3)
    torch.testing.assert_close(merge_views(z, "gmean"), merge_views(z, "logits_mean"), atol=1e-6, rtol=0)


@pytest.mark.parametrize("merge", MERGES.names())
def test_merge_invariances(merge):
    z = logits(seed=1)
    out = merge_views(z, merge)
    assert out.dtype == torch.float32 and out.shape == (5, 3)
    torch.testing.assert_close(out.sum(-1), torch.ones(5), atol=1e-6, rtol=0)
    assert (out >= 0).all()
    # view order does not matter; class permutation permutes the output; rows are independent
    torch.testing.assert_close(merge_views(z[[2, 0, 3, 1]], merge), out, atol=1e-6, rtol=0)
    perm = [2, 0, 1]
    torch.testing.assert_close(merge_views(z[..., perm], merge), out[:, perm], atol=1e-6, rtol=0)
    torch.testing.assert_close(merge_views(z[:, [4, 1]], merge), out[[4, 1]], atol=1e-6, rtol=0)
    # a single view is just its softmax
    torch.testing.assert_close(merge_views(z[:1], merge), z[0].softmax(-1), atol=1e-6, rtol=0)


def test_unknown_merge_lists_the_valid_ones():
    with pytest.raises(UnknownNameError, match="unknown TTA merge 'median'; choose one of: mean, gmean, max, logits_mean"):
        merge_views(logits(), "median")


# -- against ttach's wrapper (the oracle), on a model that outputs probabilities -----------------------

class _Runner:
    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.device, self.sha256 = model, torch.device("cpu"), ""

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@pytest.mark.parametrize(("spec", "transform"), [
    ("hflip", ttach.aliases.hflip_transform()),
    ("d2", ttach.aliases.flip_transform()),
    ("d4", ttach.aliases.d4_transform()),
])
def test_flip_tta_matches_ttach_wrapper(spec, transform):
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=4).eval()
    x = torch.randn(6, 3, 32, 32)
    softmax_model = torch.nn.Sequential(model, torch.nn.Softmax(-1))
    with torch.inference_mode():
        expected = ttach.ClassificationTTAWrapper(softmax_model, transform, merge_mode="mean")(x)
        ours = merge_views(run_stacked(_Runner(model), stack_views(x, parse_views(spec)), 5), "mean")
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
