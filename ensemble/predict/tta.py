"""Test-time augmentation: a registry of views (tensor ops on a batch) and of merges.

A *view* maps a batch of normalised images (B, 3, H, W) to an augmented batch; views are applied
to the image only (a class label does not move when the image flips, so nothing is de-augmented).
`--tta` names view *sets*: `hflip` is one view, `d2` four, `d4` eight, `five_crop` five. The identity
view is always included and always first, as in ttach (`--tta hflip` = identity + hflip, `--tta
none` = identity only); names that denote the same view (`vflip` inside `d2` and alone) are kept once.

View sets:

- identity, hflip, vflip, rot90, rot180, rot270.
- d2: identity, hflip, vflip and both flips (= rot180): ttach's `aliases.flip_transform()` views.
- d4: the 8 symmetries of the square: the four rotations and their horizontal flips
  (ttach's `aliases.d4_transform()` views); needs a square image.
- center_crop[_F]: zoom in: keep the central fraction F (default 0.875) of each side, then resize
  back to (H, W) (bilinear); the view is named `center_crop_F`.
- five_crop[_F]: the four corner crops and the center crop of fraction F, each resized back.
- scale[_F]: resize the batch by F (default 1.15; bilinear) — the network sees a larger input, as
  ttach's `Scale`; only for networks that accept any input size (CNNs, not fixed-size ViTs/ONNX).

Merges turn per-view logits (V, B, C) into probabilities (B, C), by the model's task (`ensemble.task`):

- multiclass (a softmax over classes): merges act on *probabilities* (softmax first), except
  `logits_mean`, ttach's way (mean of logits, then softmax). `gmean` (geometric mean of
  probabilities, renormalised) equals `logits_mean` mathematically: exp(mean_v log softmax(z_v)) is
  proportional to exp(mean_v z_v); both are kept so either name reads as intended, and a test checks
  the identity. `max` takes each class's largest probability and renormalises the row.
- multilabel (a sigmoid per class, each class a yes/no of its own): `mean` is the mean of the
  views' sigmoid probabilities; `max` each class's largest probability over the views (not
  renormalised: rows sum to anything). `gmean` is the geometric mean renormalised *over each class's
  two outcomes* (p, 1 - p), as the multiclass gmean is over the classes:
  gm(p) / (gm(p) + gm(1 - p)) = sigmoid(mean_v z_v). The plain geometric mean of p alone is biased
  toward 0 (a class certain in one view and absent in another falls to 0, and "not the class"
  would not pool the same way); the renormalised pool is symmetric in p and 1 - p. So, as for
  multiclass, `gmean` equals `logits_mean` (a sigmoid of the mean logit).

`MERGES` holds each merge's function per task; `ACTIVATIONS` the per-view activation (what
`--save-views` keeps).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ensemble._registry import Registry
from ensemble.errors import ConfigError, unknown_name
from ensemble.task import MULTICLASS, MULTILABEL, check_task, sigmoid

if TYPE_CHECKING:  # torch loads when a view or merge runs on tensors: the ONNX path runs without it
    import torch

ArrayFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class View:
    """One named augmentation of a batch.

    Attributes:
        name: unique name, with its parameter when it has one (e.g. "center_crop_0.875").
        fn: maps (B, 3, H, W) to (B, 3, H', W'); H' = H and W' = W except for `scale` views.
        needs_square: the view swaps height and width (90-degree rotations), so only fits H == W.
        array_fn: the same map on numpy arrays, exact (flips and rotations move values only), or
            None where the view resamples (crops, scales): those views need torch.
    """

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    needs_square: bool = False
    array_fn: ArrayFn | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    import torch.nn.functional as F

    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _crop_back(x: torch.Tensor, where: str, frac: float) -> torch.Tensor:
    """Crop fraction `frac` of each side at `where` (lt/rt/lb/rb/c), resized back to x's size."""
    import ttach.functional as TF

    h, w = x.shape[-2:]
    ch, cw = max(1, round(h * frac)), max(1, round(w * frac))
    crop = {
        "lt": TF.crop_lt, "rt": TF.crop_rt, "lb": TF.crop_lb, "rb": TF.crop_rb, "c": TF.center_crop,
    }[where](x, ch, cw)
    return crop if (ch, cw) == (h, w) else _resize(crop, (h, w))


def _scale(x: torch.Tensor, factor: float) -> torch.Tensor:
    h, w = x.shape[-2:]
    return _resize(x, (max(1, round(h * factor)), max(1, round(w * factor))))


def _rot(k: int, flip: bool = False) -> tuple[Callable, ArrayFn]:
    """A rotation by k quarter turns in the (H, W) plane (then an hflip), on tensors and on arrays (ttach's ops)."""
    def on_tensor(x: torch.Tensor) -> torch.Tensor:
        y = x.rot90(k, (2, 3)) if k else x
        return y.flip(3) if flip else y

    def on_array(x: np.ndarray) -> np.ndarray:
        y = np.rot90(x, k, axes=(2, 3)) if k else x
        return y[..., ::-1] if flip else y

    return on_tensor, on_array


def _dihedral(name: str, k: int, flip: bool = False) -> View:
    fn, array_fn = _rot(k, flip)
    return View(name, fn, needs_square=k % 2 == 1, array_fn=array_fn)


IDENTITY = View("identity", lambda x: x, array_fn=lambda x: x)
_DIHEDRAL = {
    "identity": IDENTITY,
    "hflip": _dihedral("hflip", 0, flip=True),
    "vflip": View("vflip", lambda x: x.flip(2), array_fn=lambda x: x[:, :, ::-1]),
    "rot90": _dihedral("rot90", 1),
    "rot180": _dihedral("rot180", 2),
    "rot270": _dihedral("rot270", 3),
    # hflip after a rotation; hflip after rot180 is vflip, so d4 needs only these two more
    "hflip_rot90": _dihedral("hflip_rot90", 1, flip=True),
    "hflip_rot270": _dihedral("hflip_rot270", 3, flip=True),
}

ViewSet = Callable[[float | None], list[View]]
VIEWS: Registry[ViewSet] = Registry("TTA view")
PARAM_DEFAULTS: dict[str, float] = {"center_crop": 0.875, "five_crop": 0.875, "scale": 1.15}


def _fixed(*names: str) -> ViewSet:
    return lambda _param: [_DIHEDRAL[n] for n in names]


for _name in ("identity", "hflip", "vflip", "rot90", "rot180", "rot270"):
    VIEWS.add(_name, _fixed(_name))
VIEWS.add("d2", _fixed("identity", "hflip", "vflip", "rot180"))
VIEWS.add("d4", _fixed("identity", "rot90", "rot180", "rot270", "hflip", "hflip_rot90", "vflip", "hflip_rot270"))


@VIEWS.register("center_crop")
def _center_crop(frac: float | None) -> list[View]:
    f = _fraction("center_crop", frac)
    return [View(f"center_crop_{f:g}", lambda x: _crop_back(x, "c", f))]


@VIEWS.register("five_crop")
def _five_crop(frac: float | None) -> list[View]:
    f = _fraction("five_crop", frac)
    corners = [View(f"crop_{w}_{f:g}", lambda x, w=w: _crop_back(x, w, f)) for w in ("lt", "rt", "lb", "rb")]
    return corners + _center_crop(f)


@VIEWS.register("scale")
def _scale_set(factor: float | None) -> list[View]:
    s = PARAM_DEFAULTS["scale"] if factor is None else factor
    if not 0 < s <= 4:
        raise ConfigError(f"TTA view scale_{s:g}: the factor must be in (0, 4]; e.g. scale_1.15")
    return [View(f"scale_{s:g}", lambda x: _scale(x, s))]


def _fraction(kind: str, frac: float | None) -> float:
    f = PARAM_DEFAULTS[kind] if frac is None else frac
    if not 0 < f <= 1:
        raise ConfigError(f"TTA view {kind}_{f:g}: the crop fraction must be in (0, 1]; e.g. {kind}_0.875")
    return f


def view_choices() -> list[str]:
    """The names `--tta` accepts (a parametric set shown as `name[_F]`), plus `none`."""
    return ["none"] + [f"{n}[_F]" if n in PARAM_DEFAULTS else n for n in VIEWS.names()]


def parse_views(spec: str | Sequence[str] | None) -> list[View]:
    """Resolve a TTA spec (`"hflip,center_crop_0.9"` or a list of names) into views.

    Args:
        spec: comma-separated names, a sequence of names, or None / "" / "none" for identity only.

    Returns:
        The views, identity first, each name once, in the order given.

    Raises:
        UnknownNameError: a name not in the registry (the message lists the valid ones).
        ConfigError: a parameter out of range.
    """
    names = spec.split(",") if isinstance(spec, str) else list(spec or [])
    views: dict[str, View] = {"identity": IDENTITY}
    for raw in (n.strip() for n in names):
        if raw in ("", "none"):
            continue
        base, param = _split_param(raw)
        for v in VIEWS.get(base)(param):
            views.setdefault(v.name, v)
    return list(views.values())


def _split_param(raw: str) -> tuple[str, float | None]:
    if raw in VIEWS:
        return raw, None
    base, _, tail = raw.rpartition("_")
    if base in PARAM_DEFAULTS:
        try:
            return base, float(tail)
        except ValueError:
            pass
    raise unknown_name("TTA view", raw, view_choices())


def check_views(views: Sequence[View], img_size: tuple[int, int], model: str) -> None:
    """Refuse 90-degree rotations on a non-square input (they would change the input shape).

    Raises:
        ConfigError: naming the views and the model.
    """
    bad = [v.name for v in views if v.needs_square]
    if bad and img_size[0] != img_size[1]:
        raise ConfigError(
            f"model {model!r}: TTA views {', '.join(bad)} rotate by 90 degrees, which needs a square image, "
            f"but img_size is {img_size[0]}x{img_size[1]}; drop them (use hflip/vflip/d2) or use a square img_size"
        )


# -- activations and merges: per-view logits (V, B, C) -> probabilities (B, C), by task ------------

Activation = Callable[["torch.Tensor"], "torch.Tensor"]
ACTIVATIONS: dict[str, Activation] = {
    MULTICLASS: lambda z: z.softmax(-1),  # over the classes of a row
    MULTILABEL: lambda z: z.sigmoid(),  # each class on its own
}
MergeFn = Callable[["torch.Tensor"], "torch.Tensor"]


def _np_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _np_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


ARRAY_ACTIVATIONS: dict[str, ArrayFn] = {MULTICLASS: _np_softmax, MULTILABEL: sigmoid}


@dataclass(frozen=True)
class Merge:
    """One TTA merge: per task, a function from per-view logits (V, B, C) to probabilities (B, C).

    `multiclass`/`multilabel` take torch tensors; `array_multiclass`/`array_multilabel` the same
    merge on float64 numpy arrays (the torch-free ONNX path, `lite.py`; equal up to float rounding).
    """

    multiclass: MergeFn
    multilabel: MergeFn
    array_multiclass: ArrayFn
    array_multilabel: ArrayFn

    def __call__(self, logits: torch.Tensor, task: str = MULTICLASS) -> torch.Tensor:
        return self.multiclass(logits) if check_task(task, "TTA merge") == MULTICLASS else self.multilabel(logits)

    def array(self, logits: np.ndarray, task: str = MULTICLASS) -> np.ndarray:
        """The merge on a numpy array of logits (V, B, C): float32 probabilities (B, C)."""
        z = np.asarray(logits, dtype=np.float64)
        fn = self.array_multiclass if check_task(task, "TTA merge") == MULTICLASS else self.array_multilabel
        return fn(z).astype(np.float32)


MERGES: Registry[Merge] = Registry("TTA merge")


def _max_mc(logits: torch.Tensor) -> torch.Tensor:
    p = logits.softmax(-1).amax(0)
    return p / p.sum(-1, keepdim=True)


def _np_max_mc(z: np.ndarray) -> np.ndarray:
    p = _np_softmax(z).max(0)
    return p / p.sum(-1, keepdims=True)


MERGES.add("mean", Merge(
    lambda z: z.softmax(-1).mean(0), lambda z: z.sigmoid().mean(0),
    lambda z: _np_softmax(z).mean(0), lambda z: sigmoid(z).mean(0),
))
# multiclass: the geometric mean of probabilities, renormalised (log-space: tiny ones don't underflow);
# multilabel: gm(p) / (gm(p) + gm(1 - p)) per class = sigmoid(mean z), since log p - log(1 - p) = z
MERGES.add("gmean", Merge(
    lambda z: z.log_softmax(-1).mean(0).softmax(-1), lambda z: z.mean(0).sigmoid(),
    lambda z: _np_softmax(_np_log_softmax(z).mean(0)), lambda z: sigmoid(z.mean(0)),
))
MERGES.add("max", Merge(_max_mc, lambda z: z.sigmoid().amax(0), _np_max_mc, lambda z: sigmoid(z).max(0)))
MERGES.add("logits_mean", Merge(
    lambda z: z.mean(0).softmax(-1), lambda z: z.mean(0).sigmoid(),
    lambda z: _np_softmax(z.mean(0)), lambda z: sigmoid(z.mean(0)),
))


def merge_views(logits: torch.Tensor, merge: str, task: str = MULTICLASS) -> torch.Tensor:
    """Merge per-view logits of shape (V, B, C) into float32 probabilities of shape (B, C).

    Args:
        logits: per-view logits.
        merge: a name of `MERGES`.
        task: "multiclass" (softmax) or "multilabel" (a sigmoid per class).
    """
    return MERGES.get(merge)(logits.float(), task)


def activate_views(logits: torch.Tensor, task: str = MULTICLASS) -> torch.Tensor:
    """Per-view probabilities, float32 (V, B, C): each view's softmax (multiclass) or sigmoid (multilabel)."""
    return ACTIVATIONS[check_task(task, "TTA views")](logits.float())


def activate_array(logits: np.ndarray, task: str = MULTICLASS) -> np.ndarray:
    """`activate_views` on a numpy array: float32 (V, B, C)."""
    return ARRAY_ACTIVATIONS[check_task(task, "TTA views")](np.asarray(logits, dtype=np.float64)).astype(np.float32)
