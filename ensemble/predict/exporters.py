"""The ONNX exporters (a registry, each with the opsets the installed torch writes) and `export_model`.

"torchscript" (`torch.onnx.export(dynamo=False)`: fast, offline, opsets 7 to 20 in torch 2.x) and
"dynamo" (`torch.export` + onnxscript: slower, handles what TorchScript tracing cannot, writes
opset 18 or later, up to 23 in torch 2.x). "auto" tries TorchScript, then dynamo; an opset neither
writes is refused before any model loads.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from ensemble._registry import Registry
from ensemble.errors import ConfigError, ExportError, unknown_name

log = logging.getLogger(__name__)

INPUT_NAME, OUTPUT_NAME = "input", "logits"


@dataclass(frozen=True)
class Exporter:
    """One way to export: fn(model, sample, opset) -> serialized ONNX, and the opsets it takes."""

    fn: Callable[[torch.nn.Module, torch.Tensor, int], bytes]
    opsets: tuple[int, int]  # lowest and highest accepted --opset (as the installed torch has them)


EXPORTERS: Registry[Exporter] = Registry("ONNX exporter")
_NOISY_LOGGERS = ("torch.onnx", "torch.export", "torch._dynamo", "torch._export", "torch.fx", "onnxscript")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters: warnings, log lines, and prints at the file-descriptor level (the
    TorchScript exporter dumps whole graphs to stderr from C++ when it fails); the library never prints."""
    levels = {n: logging.getLogger(n).level for n in _NOISY_LOGGERS}
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        for n in _NOISY_LOGGERS:
            logging.getLogger(n).setLevel(logging.CRITICAL)
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            for n, lvl in levels.items():
                logging.getLogger(n).setLevel(lvl)


def _export_torchscript(model: torch.nn.Module, sample: torch.Tensor, opset: int) -> bytes:
    buf = io.BytesIO()  # in memory: one self-contained file, nothing written before the check
    torch.onnx.export(
        model, (sample,), buf, dynamo=False, opset_version=opset, do_constant_folding=True,
        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
    )
    return buf.getvalue()


def _export_dynamo(model: torch.nn.Module, sample: torch.Tensor, opset: int) -> bytes:
    # The dynamo exporter has no kernels below opset 18 and its down-conversion fails on common
    # ops (Resize with antialias, Reduce* axes), so it exports at 18 or later.
    program = torch.onnx.export(
        model, (sample,), dynamo=True, opset_version=max(opset, 18), verbose=False,
        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
    )
    return program.model_proto.SerializeToString()


# the installed exporter's own bounds (private constants, so with torch 2.x's values as a fallback)
_C = getattr(torch.onnx, "_constants", None)
MIN_OPSET, MAX_OPSET = getattr(_C, "ONNX_MIN_OPSET", 7), getattr(_C, "ONNX_MAX_OPSET", 23)
EXPORTERS.add("torchscript", Exporter(_export_torchscript, (MIN_OPSET, getattr(_C, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20))))
# below 18 the dynamo exporter writes opset 18 (the opset written is reported per file)
EXPORTERS.add("dynamo", Exporter(_export_dynamo, (MIN_OPSET, MAX_OPSET)))
EXPORTER_CHOICES = ("auto", *EXPORTERS.names())  # "auto": each registered exporter in turn


def check_opset(opset: int, exporter: str = "auto") -> None:
    """Refuse an opset the exporter(s) cannot write, naming the range (before any model is loaded).

    Raises:
        UnknownNameError: an unknown exporter. ConfigError: `opset` out of range.
    """
    if exporter not in EXPORTER_CHOICES:
        raise unknown_name("ONNX exporter", exporter, EXPORTER_CHOICES)
    ranges = [e.opsets for n, e in EXPORTERS.items() if exporter in ("auto", n)]
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    if isinstance(opset, bool) or not isinstance(opset, int) or not lo <= opset <= hi:
        which = "the exporters" if exporter == "auto" else f"the {exporter} exporter"
        raise ConfigError(
            f"--opset {opset}: out of the range {lo} to {hi} that {which} of torch {torch.__version__} can write; "
            "choose an opset in that range"
        )


def export_model(model: torch.nn.Module, sample: torch.Tensor, *, opset: int = 17, exporter: str = "auto") -> tuple[bytes, str]:
    """Serialize `model` to ONNX.

    Args:
        model: in eval mode, on the CPU.
        sample: an example input (B, 3, H, W); H and W are fixed in the graph, the batch is not.
        opset: ONNX opset (the dynamo exporter uses at least 18).
        exporter: "auto" (TorchScript, then dynamo if that fails), "torchscript" or "dynamo".

    Returns:
        (the ONNX model's bytes, the exporter that made it).

    Raises:
        ExportError: every exporter tried failed. UnknownNameError: an unknown exporter.
        ConfigError: an opset out of the exporters' range.
    """
    check_opset(opset, exporter)
    names = [n for n, e in EXPORTERS.items() if exporter in ("auto", n) and e.opsets[0] <= opset <= e.opsets[1]]
    errors = []
    for n in names:
        try:
            with _quiet(), torch.no_grad():
                return EXPORTERS.get(n).fn(model, sample, opset), n
        except Exception as e:  # exporters raise many types (UnsupportedOperatorError, torch.export errors, ...)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            errors.append(f"{n}: {type(e).__name__}: {first}")
            log.debug("ONNX exporter %s failed: %s", n, e)
    other = " or --exporter dynamo" if names == ["torchscript"] else ""
    raise ExportError(f"ONNX export failed ({'; '.join(errors)}); try another --opset{other}")
