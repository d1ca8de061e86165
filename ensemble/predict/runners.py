"""Runners: one fold's model behind one interface (`logits(x)`), in torch or ONNX Runtime.

Both take normalised float32 images (B, 3, H, W) and return float32 logits (B, C) on the device of
the input. The torch runner uses `inference_mode`, channels_last and, on CUDA, autocast (AMP); the
ONNX runner asks for the CUDA provider only when torch sees a usable GPU (asking without one makes
ONNX Runtime print errors), binds CUDA tensors in place, and checks the input size up front.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ensemble._io import sha256_file
from ensemble.errors import ConfigError
from ensemble.predict.config import ModelConfig, Runner
from ensemble.predict.onnx_model import OnnxModel
from ensemble.predict.options import AMP_MODES

log = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")


def resolve_device(spec: str = "auto") -> torch.device:
    """`auto` -> the first GPU when usable, else the CPU; `cpu`, `cuda`, `cuda:N` as asked.

    Raises:
        ConfigError: an unknown spec, or CUDA asked for where no GPU is usable.
    """
    s = str(spec).strip().lower()
    if s == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if s == "cpu":
        return torch.device("cpu")
    if s == "cuda" or (s.startswith("cuda:") and s[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {spec}: no usable GPU here (torch.cuda.is_available() is False); use --device cpu or auto")
        index = int(s[5:]) if ":" in s else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {spec}: only {torch.cuda.device_count()} GPU(s) visible (cuda:0..cuda:{torch.cuda.device_count() - 1})")
        return torch.device("cuda", index)
    raise ConfigError(f"--device {spec!r} is not a device; choose one of: {', '.join(DEVICE_CHOICES)}")


def amp_dtype(amp: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `amp` on `device` (None = float32).

    `None` and "auto" mean bf16 on a CUDA GPU that supports it, fp16 on older GPUs, and nothing on
    the CPU (CPU autocast is slower and less exact than float32 there).

    Raises:
        UnknownNameError: an unknown mode. ConfigError: bf16/fp16 asked for on the CPU.
    """
    mode = "auto" if amp is None else str(getattr(amp, "value", amp)).lower()
    name = AMP_MODES.get(mode)
    dtype = None if name is None else getattr(torch, name)
    if mode == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dtype is not None and device.type != "cuda":
        raise ConfigError(f"--amp {mode} runs on CUDA only (device is {device}); use --amp none or auto on the CPU")
    return dtype


class TorchRunner:
    """A timm model in eval mode: `inference_mode`, channels_last, CUDA autocast.

    Args:
        model: the loaded model (eval mode).
        device: where it runs.
        sha256: hash of its checkpoint file.
        amp: autocast dtype on CUDA, or None for float32.
        channels_last: run in NHWC memory format (faster convolutions on CPU and GPU).
        fuse_bn: fold BatchNorms into the convolutions before them (`fuse.fold_batchnorm`); the
            model's weights change in place.
    """

    def __init__(self, model: torch.nn.Module, *, device: torch.device, sha256: str,
                 amp: torch.dtype | None = None, channels_last: bool = True, fuse_bn: bool = True) -> None:
        self.device, self.sha256, self.amp, self.channels_last = device, sha256, amp, channels_last
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model = model.eval()
        if fuse_bn:
            from ensemble.predict.fuse import fold_batchnorm

            model, self.folded = fold_batchnorm(model)
        self.model = model.to(device=device, memory_format=fmt)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float32 normalised images -> (B, C) float32 logits on x's device."""
        with torch.inference_mode():
            xin = x.to(self.device, dtype=torch.float32, non_blocking=True)
            if self.channels_last:
                xin = xin.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
                out = self.model(xin)
            if isinstance(out, (tuple, list)):  # e.g. distilled heads in train-style forward
                out = out[0]
        # cloned outside inference_mode: a normal tensor that callers may update in place
        return out.to(x.device, torch.float32).clone()


def onnx_providers(device: torch.device) -> list[Any]:
    """ONNX Runtime providers for `device`: CUDA (then CPU) only when torch sees a usable GPU.

    Asking ONNX Runtime for CUDA where there is none makes it print errors, so the CPU provider is
    the only one unless the device is a CUDA device and the GPU build of ONNX Runtime is installed.
    """
    import onnxruntime as ort

    if device.type == "cuda" and torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers():
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxRunner:
    """An ONNX model in an ONNX Runtime session (`onnx_model.OnnxModel`), on torch tensors.

    Args:
        path: the .onnx file (self-contained, or with its external data beside it).
        device: CUDA runs on the CUDA provider when usable; anything else on the CPU provider.
        sha256: hash of the file (computed when None).
        num_classes: expected output width, checked against the model's.
        threads: intra-op threads on the CPU (default: torch's thread count, so torch and ONNX runs
            use the same cores).
        task: the configured task, checked against the one the file's metadata records (when it
            records one); None checks nothing.
    """

    def __init__(self, path: str | os.PathLike, *, device: torch.device, sha256: str | None = None,
                 num_classes: int | None = None, threads: int | None = None, task: str | None = None) -> None:
        import onnxruntime as ort

        providers = onnx_providers(device)
        if len(providers) > 1 and hasattr(ort, "preload_dlls") and Path(path).is_file():
            try:  # CUDA/cuDNN from the pip packages torch uses, so the CUDA provider finds them
                ort.preload_dlls()
            except Exception as e:  # the provider may still load from the system libraries
                log.debug("onnxruntime.preload_dlls failed: %s", e)
        self.model = OnnxModel(path, providers=providers, threads=threads or torch.get_num_threads(),
                               num_classes=num_classes, task=task)
        m = self.model
        self.path = m.path
        on_cuda = "CUDAExecutionProvider" in self.session.get_providers()
        if device.type == "cuda" and not on_cuda:
            log.warning("%s: ONNX Runtime's CUDA provider is not usable; running on the CPU", self.path.name)
        self.device = device if on_cuda else torch.device("cpu")
        self.sha256 = sha256 or sha256_file(self.path)
        self.input_name, self.output_name = m.input_name, m.output_name
        self.input_shape, self.input_dtype, self.num_classes = m.input_shape, m.input_dtype, m.num_classes
        self._binding_ok = on_cuda

    @property
    def session(self) -> Any:
        """The ONNX Runtime session (the model's; replacing it replaces the model's)."""
        return self.model.session

    @session.setter
    def session(self, value: Any) -> None:
        self.model.session = value

    def check_input(self, shape: tuple[int, ...]) -> None:
        """Raise a clear `ConfigError` when a (B, 3, H, W) batch does not fit the model's input."""
        self.model.check_input(shape)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float32 normalised images -> (B, C) float32 logits on x's device."""
        self.check_input(tuple(x.shape))
        parts = []
        for start, stop, pad in self.model.chunks(x.shape[0]):  # a fixed-batch model: chunks, the last zero-padded
            chunk = x[start:stop]
            if pad:
                chunk = torch.cat([chunk, chunk.new_zeros((pad, *chunk.shape[1:]))])
            parts.append(self._run(chunk)[: stop - start])
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if self._binding_ok and x.is_cuda:
            try:
                return self._run_bound(x)
            except Exception as e:  # keep predicting through the host copy rather than fail a long run
                log.warning("%s: CUDA I/O binding failed (%s); copying through the host instead", self.path.name, e)
                self._binding_ok = False
        out = self.model.run_once(x.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(out).to(x.device)

    def _run_bound(self, x: torch.Tensor) -> torch.Tensor:
        """Run on CUDA tensors in place: no host round trip for inputs or outputs."""
        tdtype = torch.float16 if self.input_dtype == np.float16 else torch.float32
        xin = x.to(tdtype).contiguous()
        out = torch.empty((x.shape[0], self.num_classes), dtype=tdtype, device=x.device)
        binding = self.session.io_binding()
        dev = x.device.index or 0
        binding.bind_input(self.input_name, "cuda", dev, self.input_dtype, tuple(xin.shape), xin.data_ptr())
        binding.bind_output(self.output_name, "cuda", dev, self.input_dtype, tuple(out.shape), out.data_ptr())
        torch.cuda.current_stream(x.device).synchronize()  # x is written on torch's stream; ORT uses its own
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return out.float()


def make_runner(cfg: ModelConfig, fold: int, *, device: torch.device, amp: str | None = None,
                channels_last: bool = True, threads: int | None = None, fuse_bn: bool = True) -> Runner:
    """The runner of fold `fold` of `cfg`: ONNX Runtime for ONNX models, torch otherwise.

    Args:
        cfg: the resolved model configuration.
        fold: which fold's weights.
        device: from `resolve_device`.
        amp: "auto" (None), "bf16", "fp16" or "none"; torch on CUDA only.
        channels_last: NHWC memory format for the torch model.
        threads: ONNX Runtime intra-op threads on the CPU.
        fuse_bn: fold BatchNorms into convolutions (torch models; ONNX Runtime does it itself).

    Raises:
        ConfigError: no weights for `fold`, AMP asked for on the CPU. ModelLoadError: unloadable weights.
    """
    if cfg.backend == "onnx":
        if fold not in cfg.onnx:
            raise ConfigError(f"model {cfg.name!r} has no ONNX file for fold {fold} (folds: {', '.join(map(str, cfg.folds)) or 'none'})")
        return OnnxRunner(cfg.onnx[fold], device=device, num_classes=cfg.num_classes, threads=threads, task=cfg.task)
    from ensemble.predict.checkpoint import load_model

    dtype = amp_dtype(amp, device)  # checked before the (slow) checkpoint load
    model, sha = load_model(cfg, fold, device=device)
    return TorchRunner(model, device=device, sha256=sha, amp=dtype, channels_last=channels_last, fuse_bn=fuse_bn)


__all__ = ["AMP_MODES", "OnnxRunner", "TorchRunner", "amp_dtype", "make_runner", "onnx_providers", "resolve_device"]
