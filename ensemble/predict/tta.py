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

import torch
import torch.nn.functional as F
import ttach.functional as TF

from ensemble._registry import Registry
from ensemble.errors import ConfigError, unknown_name
from ensemble.task import MULTICLASS, MULTILABEL, check_task


@dataclass(frozen=True)
class View:
    """One named augmentation of a batch.

    Attributes:
        name: unique name, with its parameter when it has one (e.g. "center_crop_0.875").
        fn: maps (B, 3, H, W) to (B, 3, H', W'); H' = H and W' = W except for `scale` views.
        needs_square: the view swaps height and width (90-degree rotations), so only fits H == W.
    """

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    needs_square: bool = False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _crop_back(x: torch.Tensor, where: str, frac: float) -> torch.Tensor:
    """Crop fraction `frac` of each side at `where` (lt/rt/lb/rb/c), resized back to x's size."""
    h, w = x.shape[-2:]
    ch, cw = max(1, round(h * frac)), max(1, round(w * frac))
    crop = {
        "lt": TF.crop_lt, "rt": TF.crop_rt, "lb": TF.crop_lb, "rb": TF.crop_rb, "c": TF.center_crop,
    }[where](x, ch, cw)
    return crop if (ch, cw) == (h, w) else _resize(crop, (h, w))


def _scale(x: torch.Tensor, factor: float) -> torch.Tensor:
    h, w = x.shape[-2:]
    return _resize(x, (max(1, round(h * factor)), max(1, round(w * factor))))


IDENTITY = View("identity", lambda x: x)
_DIHEDRAL = {
    "identity": IDENTITY,
    "hflip": View("hflip", TF.hflip),
    "vflip": View("vflip", TF.vflip),
    "rot90": View("rot90", lambda x: TF.rot90(x, 1), needs_square=True),
    "rot180": View("rot180", lambda x: TF.rot90(x, 2)),
    "rot270": View("rot270", lambda x: TF.rot90(x, 3), needs_square=True),
    # hflip after a rotation; hflip after rot180 is vflip, so d4 needs only these two more
    "hflip_rot90": View("hflip_rot90", lambda x: TF.hflip(TF.rot90(x, 1)), needs_square=True),
    "hflip_rot270": View("hflip_rot270", lambda x: TF.hflip(TF.rot90(x, 3)), needs_square=True),
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

Activation = Callable[[torch.Tensor], torch.Tensor]
ACTIVATIONS: dict[str, Activation] = {
    MULTICLASS: lambda z: z.softmax(-1),  # over the classes of a row
    MULTILABEL: torch.sigmoid,  # each class on its own
}
MergeFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Merge:
    """One TTA merge: a function per task from per-view logits (V, B, C) to probabilities (B, C)."""

    multiclass: MergeFn
    multilabel: MergeFn

    def __call__(self, logits: torch.Tensor, task: str = MULTICLASS) -> torch.Tensor:
        return self.multiclass(logits) if check_task(task, "TTA merge") == MULTICLASS else self.multilabel(logits)


MERGES: Registry[Merge] = Registry("TTA merge")


def _mean_mc(logits: torch.Tensor) -> torch.Tensor:
    return logits.softmax(-1).mean(0)


def _gmean_mc(logits: torch.Tensor) -> torch.Tensor:
    # geometric mean of probabilities, renormalised; log-space so tiny probabilities don't underflow
    return logits.log_softmax(-1).mean(0).softmax(-1)


def _max_mc(logits: torch.Tensor) -> torch.Tensor:
    p = logits.softmax(-1).amax(0)
    return p / p.sum(-1, keepdim=True)


def _logits_mean_mc(logits: torch.Tensor) -> torch.Tensor:
    return logits.mean(0).softmax(-1)


def _mean_ml(logits: torch.Tensor) -> torch.Tensor:
    return logits.sigmoid().mean(0)


def _sigmoid_of_mean(logits: torch.Tensor) -> torch.Tensor:
    # gmean: gm(p) / (gm(p) + gm(1 - p)) per class = sigmoid(mean z), since log p - log(1 - p) = z
    return logits.mean(0).sigmoid()


def _max_ml(logits: torch.Tensor) -> torch.Tensor:
    return logits.sigmoid().amax(0)


MERGES.add("mean", Merge(_mean_mc, _mean_ml))
MERGES.add("gmean", Merge(_gmean_mc, _sigmoid_of_mean))
MERGES.add("max", Merge(_max_mc, _max_ml))
MERGES.add("logits_mean", Merge(_logits_mean_mc, _sigmoid_of_mean))


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
