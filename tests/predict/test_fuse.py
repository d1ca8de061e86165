"""BatchNorm folding: the folded model against the eager one (the oracle), and what must not fold."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from ensemble.predict.card import resolve_config
from ensemble.predict.fuse import fold_batchnorm
from ensemble.predict.resume import part_key
from ensemble.predict.runners import TorchRunner
from tests.predict.conftest import normalised_batch, tiny_model


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.3)
            if m.affine:
                m.weight.data.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.data.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return model.eval()


def fold_against_eager(model: nn.Module, x: torch.Tensor, atol: float) -> tuple[nn.Module, int]:
    """Fold a copy of `model`; its output must equal the eager model's (the oracle) within `atol`."""
    with torch.inference_mode():
        expected = model(x)
    folded, n = fold_batchnorm(copy.deepcopy(model))
    with torch.inference_mode():
        got = folded(x)
    torch.testing.assert_close(got, expected, atol=atol, rtol=atol)
    if got.ndim == 2:  # logits: the probabilities too
        torch.testing.assert_close(got.softmax(-1), expected.softmax(-1), atol=1e-5, rtol=0)
    return folded, n


@pytest.mark.parametrize("arch", ["test_resnet", "test_efficientnet", "mobilenetv3_small_050"])
def test_folded_timm_models_compute_the_eager_function(arch):
    folded, n = fold_against_eager(randomise_bn(tiny_model(arch)), normalised_batch(6), atol=1e-4)
    assert n > 0 and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())


class Shapes(nn.Module):
    """A BatchNorm after a ReLU, one after a shared conv, one after weight standardisation."""

    def __init__(self) -> None:
        super().__init__()
        from timm.layers import StdConv2d

        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn_after_relu = nn.BatchNorm2d(4)
        self.shared = nn.Conv2d(4, 4, 1)
        self.bn_shared = nn.BatchNorm2d(4)
        self.std = StdConv2d(4, 4, 1)
        self.bn_std = nn.BatchNorm2d(4)
        self.plain = nn.Conv2d(4, 4, 1)
        self.bn_plain = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn_after_relu(torch.relu(self.conv(x)))
        x = self.bn_shared(self.shared(x)) + self.shared(x)
        x = self.bn_std(self.std(x))
        return self.bn_plain(self.plain(x))


def test_only_a_plain_conv_used_once_is_folded():
    folded, n = fold_against_eager(randomise_bn(Shapes()), normalised_batch(3), atol=1e-5)
    assert n == 1
    kept = {name for name, m in folded.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert kept == {"bn_after_relu", "bn_shared", "bn_std"}


class ConvBN(nn.Module):
    """conv -> BatchNorm, with one twist each: an output reused, weight norm, a weight shared with
    another conv, the weight read by the forward, the BatchNorm's weight read by the forward."""

    def __init__(self, twist: str) -> None:
        super().__init__()
        self.twist = twist
        self.conv, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.other, self.other_bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        if twist == "weight_norm":  # the hook version: recomputes conv.weight before each call
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                self.conv = torch.nn.utils.weight_norm(self.conv)
        if twist == "parametrized":
            self.conv = torch.nn.utils.parametrizations.weight_norm(self.conv)
        if twist == "shared_weight":
            self.other.weight = self.conv.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        out = self.bn(y) + self.other_bn(self.other(x))
        if self.twist == "output_reused":
            out = out + y
        if self.twist == "weight_read":
            out = out + nn.functional.conv2d(x, self.conv.weight, padding=1)
        if self.twist == "bn_read":
            out = out * self.bn.weight.view(1, -1, 1, 1)
        return out


@pytest.mark.parametrize("twist", ["output_reused", "weight_norm", "parametrized", "shared_weight", "weight_read", "bn_read"])
def test_convs_and_batchnorms_used_beyond_their_pair_are_not_folded(twist):
    _, n = fold_against_eager(randomise_bn(ConvBN(twist)), normalised_batch(3), atol=1e-5)
    # the untouched pair (other -> other_bn) still folds unless it shares the twisted weight
    assert n == (0 if twist == "shared_weight" else 1)


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)) if x.sum() > 0 else x  # data-dependent: fx cannot trace it


def test_untraceable_or_training_models_are_left_alone():
    m = Untraceable().eval()
    assert fold_batchnorm(m) == (m, 0)
    t = tiny_model("test_resnet").train()
    before = {k: v.clone() for k, v in t.state_dict().items()}
    assert fold_batchnorm(t) == (t, 0)
    assert all(torch.equal(before[k], v) for k, v in t.state_dict().items())


def test_runner_folds_by_default_and_matches_the_plain_model():
    model = randomise_bn(tiny_model("test_efficientnet", 3))
    x = normalised_batch(5, seed=2)
    with torch.inference_mode():
        expected = model(x).softmax(-1)
    fused = TorchRunner(copy.deepcopy(model), device=torch.device("cpu"), sha256="-")
    plain = TorchRunner(copy.deepcopy(model), device=torch.device("cpu"), sha256="-", fuse_bn=False)
    assert fused.folded > 0 and not hasattr(plain, "folded")
    torch.testing.assert_close(fused.logits(x).softmax(-1), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(plain.logits(x).softmax(-1), expected, atol=1e-6, rtol=0)


def test_folding_is_part_of_the_resume_key(tiny_card, tiny_onnx_card):
    cfg = resolve_config(tiny_card)
    args = ("sha", "rows", ["identity"], "mean", False, "float32")
    assert part_key(cfg, *args, True) != part_key(cfg, *args, False)
    onnx = resolve_config(tiny_onnx_card)  # ONNX Runtime folds by itself: the flag changes nothing
    assert part_key(onnx, *args, True) == part_key(onnx, *args, False)
