"""Fold eval-mode BatchNorm into the convolution before it, for inference.

In eval mode a BatchNorm is a per-channel affine map of its input, so after a convolution it can be
folded into the convolution's weights and bias: W' = W * s, b' = (b - mean) * s + beta with
s = gamma / sqrt(var + eps). ONNX Runtime and TensorRT do the same at load time; in eager PyTorch
the separate BatchNorm passes cost 25-45% of a MobileNet/EfficientNet forward on the CPU
(`benchmarks/bench_predict.py`). The folded model computes the same function up to float rounding
(max |probability difference| ~1e-7 on the tiny test models).

The graph comes from `torch.fx`; only a plain convolution whose single use is a BatchNorm is
folded, and only when both modules are called once, carry no hooks or parametrizations (weight or
spectral norm), share no parameter with another module and have no parameter read by the forward
directly. Weight standardisation, shared modules or a BatchNorm after anything else are left as
they are; a model fx cannot trace runs unfused.
"""

from __future__ import annotations

import logging

import torch
from torch import fx, nn
from torch.nn.utils import parametrize

log = logging.getLogger(__name__)


def _kinds() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """Convolutions whose forward is linear in (weight, bias), and BatchNorms with eval semantics."""
    convs: tuple[type, ...] = (nn.Conv2d,)
    norms: tuple[type, ...] = (nn.BatchNorm2d,)
    try:
        from timm.layers import BatchNormAct2d, Conv2dSame

        convs, norms = (*convs, Conv2dSame), (*norms, BatchNormAct2d)
    except ImportError:  # timm moved them: fold plain torch layers only
        pass
    return convs, norms


class _Tracer(fx.Tracer):
    """Keeps convolutions and BatchNorms as single nodes (timm's are not torch.nn leaves)."""

    def __init__(self, leaves: tuple[type, ...]) -> None:
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return type(m) in self.leaves or super().is_leaf_module(m, qualname)


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, int]:
    """Fold each eval-mode BatchNorm that follows a convolution into it.

    Args:
        model: an eval-mode model; its convolution weights are changed in place when folding
            happens (pass a copy to keep the original).

    Returns:
        The folded model (an `fx.GraphModule`) and how many BatchNorms were folded; the model
        itself and 0 when nothing could be folded or fx cannot trace it.
    """
    convs, norms = _kinds()
    if model.training or not any(type(m) in norms for m in model.modules()):
        return model, 0
    try:
        graph = _Tracer(convs + norms).trace(model)
    except Exception as e:  # data-dependent control flow etc.: eager is always correct
        log.debug("BatchNorm folding skipped: fx cannot trace %s (%s)", type(model).__name__, e)
        return model, 0
    gm = fx.GraphModule(model, graph)
    modules = dict(gm.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    read = [str(n.target) for n in graph.nodes if n.op == "get_attr"]  # parameters the forward reads itself
    owners: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        owners[id(p)] = owners.get(id(p), 0) + 1

    def plain(name: str) -> bool:
        """Only the module's own forward uses its weights, unchanged, and nothing else holds them."""
        m = modules[name]
        return (calls[name] == 1 and not m._forward_hooks and not m._forward_pre_hooks  # weight/spectral norm
                and not parametrize.is_parametrized(m)
                and not any(r == name or r.startswith(name + ".") for r in read)
                and all(owners.get(id(p), 0) <= 1 for p in m.parameters(recurse=False)))

    pairs = []
    for node in graph.nodes:
        bn = modules.get(node.target) if node.op == "call_module" else None
        if type(bn) not in norms or bn.training or bn.running_mean is None or bn.running_var is None:
            continue
        prev = node.args[0] if node.args else None
        if not isinstance(prev, fx.Node) or prev.op != "call_module" or len(prev.users) != 1:
            continue
        if type(modules[prev.target]) in convs and plain(prev.target) and plain(node.target):
            pairs.append((prev.target, node.target))
    if not pairs:
        return model, 0
    for conv_name, bn_name in pairs:
        _fold(modules[conv_name], modules[bn_name])
        parent, _, name = bn_name.rpartition(".")
        # what the BatchNorm did after normalising (timm's BatchNormAct2d: dropout, activation)
        rest = [m for m in (getattr(modules[bn_name], "drop", None), getattr(modules[bn_name], "act", None)) if m is not None]
        setattr(gm.get_submodule(parent) if parent else gm, name, nn.Sequential(*rest) if rest else nn.Identity())
    gm.recompile()
    return gm, len(pairs)


@torch.no_grad()
def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    scale = torch.rsqrt(bn.running_var.float() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.float()
    shift = -bn.running_mean.float() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.float()
    bias = conv.bias.float() * scale + shift if conv.bias is not None else shift
    conv.weight.copy_((conv.weight.float() * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype))
    conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)
