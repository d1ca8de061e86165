"""An ONNX file in an ONNX Runtime session, on numpy arrays: the part of the ONNX runner that needs no torch.

`runners.OnnxRunner` wraps it for torch tensors (and CUDA I/O binding); the torch-free ONNX path
(`lite.py`) calls it directly. Loading checks the input rank, the output width against the
classes and the task recorded in the file's metadata against the configured one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ensemble.errors import ConfigError, ModelLoadError
from ensemble.predict.config import ONNX_TASK_KEY, check_onnx_task

_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class OnnxModel:
    """An ONNX Runtime session of one ONNX file.

    Args:
        path: the .onnx file (self-contained, or with its external data beside it).
        providers: ONNX Runtime execution providers, in order.
        threads: intra-op threads on the CPU.
        num_classes: expected output width, checked against the model's.
        task: the configured task, checked against the one the file's metadata records (when it
            records one); None checks nothing.
    """

    def __init__(self, path: str | os.PathLike, *, providers: list[Any], threads: int,
                 num_classes: int | None = None, task: str | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"{self.path}: no such ONNX file; check the onnx entry of the card or --onnx")
        ort.set_default_logger_severity(3)  # errors only: no provider/optimizer chatter on stderr
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = threads
        if len(providers) == 1:
            # ORT's threads spin between runs by default, taking the cores from the decoding and the
            # pre/post-processing done between them: 1.3x slower `ens predict` on 2 cores
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
            msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise ModelLoadError(f"{self.path}: ONNX Runtime cannot load it ({msg}); re-export it with ens export-onnx") from None
        if task is not None:  # every fold's file, not only the one the card was resolved with
            recorded = self.session.get_modelmeta().custom_metadata_map.get(ONNX_TASK_KEY)
            check_onnx_task(self.path, recorded, task, "the model's task")
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        if len(inp.shape) != 4:
            raise ModelLoadError(f"{self.path}: input {inp.name!r} has shape {inp.shape}; expected an image batch (batch, 3, H, W)")
        self.input_name, self.output_name = inp.name, out.name
        self.input_shape = [d if isinstance(d, int) else None for d in inp.shape]  # None: dynamic axis
        self.input_dtype = _ORT_DTYPES.get(inp.type, np.float32)
        width = out.shape[-1] if out.shape and isinstance(out.shape[-1], int) else None
        if num_classes is not None and width is not None and width != num_classes:
            raise ConfigError(f"{self.path}: the ONNX model has {width} outputs but {num_classes} classes are configured; use the classes it was trained on")
        self.num_classes = width or num_classes

    def check_input(self, shape: tuple[int, ...]) -> None:
        """Raise a clear `ConfigError` when a (B, 3, H, W) batch does not fit the model's input."""
        want = self.input_shape[1:]
        got = tuple(shape[1:])
        if len(shape) != 4 or any(w is not None and w != g for w, g in zip(want, got)):
            fixed = "x".join("?" if w is None else str(w) for w in want)
            hint = f"set img_size = [{want[1]}, {want[2]}] in the card" if want[1] and want[2] else "check img_size"
            raise ConfigError(
                f"{self.path}: the ONNX model takes {fixed} inputs but got a batch of {'x'.join(map(str, got))} "
                f"(batch {shape[0]}); {hint}, re-export at the size you need, and avoid TTA views that resize (scale)"
            )

    def chunks(self, n: int) -> list[tuple[int, int, int]]:
        """(start, stop, padding) of the forwards a batch of n is fed in: one, or chunks of a fixed batch (the last zero-padded)."""
        fixed = self.input_shape[0]
        if fixed is None or n == fixed:
            return [(0, n, 0)]
        return [(s, min(s + fixed, n), fixed - (min(s + fixed, n) - s)) for s in range(0, n, fixed)]

    def run(self, x: np.ndarray) -> np.ndarray:
        """(B, 3, H, W) float32 normalised images -> (B, C) float32 logits (host arrays)."""
        self.check_input(tuple(x.shape))
        parts = []
        for start, stop, pad in self.chunks(x.shape[0]):
            chunk = x[start:stop]
            if pad:
                chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
            parts.append(self.run_once(chunk)[: stop - start])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def run_once(self, x: np.ndarray) -> np.ndarray:
        """One forward of a batch the model takes as is."""
        arr = np.ascontiguousarray(x.astype(self.input_dtype, copy=False))
        try:
            (out,) = self.session.run([self.output_name], {self.input_name: arr})
        except Exception as e:
            msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise ModelLoadError(f"{self.path}: ONNX Runtime failed on a batch of shape {tuple(x.shape)} ({msg})") from None
        return np.asarray(out, dtype=np.float32)
