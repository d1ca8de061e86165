from __future__ import annotations

import hashlib

import numpy as np
import onnxruntime as ort
import pytest
import torch

from ensemble.errors import ConfigError, ModelLoadError, UnknownNameError
from ensemble.predict.card import resolve_config
from ensemble.predict.runners import OnnxRunner, TorchRunner, amp_dtype, make_runner, onnx_providers, resolve_device
from tests.predict.conftest import handmade_onnx, normalised_batch, tiny_model

CPU = torch.device("cpu")
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")


def test_resolve_device():
    assert resolve_device("auto") == (torch.device("cuda", 0) if torch.cuda.is_available() else CPU)
    assert resolve_device("CPU") == CPU
    with pytest.raises(ConfigError, match=r"^--device 'gpu' is not a device; choose one of: auto, cpu, cuda, cuda:N$"):
        resolve_device("gpu")


@no_gpu
def test_cuda_without_a_gpu_is_a_config_error():
    for spec in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError) as e:
            resolve_device(spec)
        assert str(e.value) == f"--device {spec}: no usable GPU here (torch.cuda.is_available() is False); use --device cpu or auto"


def test_amp_modes_on_the_cpu():
    assert amp_dtype(None, CPU) is None and amp_dtype("auto", CPU) is None and amp_dtype("none", CPU) is None
    with pytest.raises(ConfigError, match=r"^--amp bf16 runs on CUDA only \(device is cpu\); use --amp none or auto on the CPU$"):
        amp_dtype("bf16", CPU)
    with pytest.raises(UnknownNameError, match="unknown AMP mode 'fp8'; choose one of: auto, bf16, fp16, none"):
        amp_dtype("fp8", CPU)


@no_gpu
def test_onnx_providers_without_a_gpu_are_cpu_only():
    assert onnx_providers(CPU) == ["CPUExecutionProvider"]
    # Even when CUDA is named: asking ONNX Runtime for it without a GPU prints errors.
    assert onnx_providers(torch.device("cuda", 0)) == ["CPUExecutionProvider"]


def test_onnx_providers_with_a_gpu_put_cuda_first(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert onnx_providers(torch.device("cuda", 1)) == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert onnx_providers(CPU) == ["CPUExecutionProvider"]


@pytest.mark.parametrize("channels_last", [True, False])
def test_torch_runner_matches_the_plain_model(tiny_card, channels_last):
    cfg = resolve_config(tiny_card)
    runner = make_runner(cfg, 1, device=CPU, channels_last=channels_last)
    assert isinstance(runner, TorchRunner) and runner.device == CPU
    assert runner.sha256 == hashlib.sha256(cfg.checkpoints[1].read_bytes()).hexdigest()
    x = normalised_batch(5, seed=3)
    with torch.no_grad():
        want = tiny_model("test_resnet", 1)(x)
    got = runner.logits(x)
    assert got.dtype == torch.float32 and got.shape == (5, 3) and not got.is_inference()
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_onnx_runner_matches_the_torch_runner(tiny_card, tiny_onnx_card):
    x = normalised_batch(6, seed=4)
    for fold in (0, 1):
        t = make_runner(resolve_config(tiny_card), fold, device=CPU)
        o = make_runner(resolve_config(tiny_onnx_card), fold, device=CPU)
        assert isinstance(o, OnnxRunner) and o.device == CPU
        assert o.session.get_providers() == ["CPUExecutionProvider"]
        torch.testing.assert_close(o.logits(x), t.logits(x), rtol=0, atol=1e-4)


def test_onnx_runner_reads_names_and_shapes_from_the_model(tmp_path, capfd):
    w = handmade_onnx(tmp_path / "dyn.onnx", size=None)
    r = OnnxRunner(tmp_path / "dyn.onnx", device=CPU, num_classes=3)
    assert (r.input_name, r.output_name, r.input_shape) == ("images", "scores", [None, 3, None, None])
    x = torch.rand(2, 3, 9, 7)
    np.testing.assert_allclose(r.logits(x).numpy(), x.mean((2, 3)).numpy() @ w, rtol=1e-5, atol=1e-6)
    assert capfd.readouterr().err == ""  # no provider or optimizer noise on stderr
    # on the CPU its threads sleep between runs instead of spinning against decoding and torch
    assert r.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_fixed_batch_models_run_in_padded_chunks(tmp_path):
    w = handmade_onnx(tmp_path / "b2.onnx", batch=2)
    r = OnnxRunner(tmp_path / "b2.onnx", device=CPU)
    x = normalised_batch(5)
    np.testing.assert_allclose(r.logits(x).numpy(), x.mean((2, 3)).numpy() @ w, rtol=1e-5, atol=1e-6)


def test_wrong_input_size_is_a_clear_error(tmp_path):
    handmade_onnx(tmp_path / "m.onnx", size=(32, 32))
    r = OnnxRunner(tmp_path / "m.onnx", device=CPU)
    with pytest.raises(ConfigError) as e:
        r.logits(torch.zeros(2, 3, 40, 40))
    assert str(e.value) == (
        f"{tmp_path / 'm.onnx'}: the ONNX model takes 3x32x32 inputs but got a batch of 3x40x40 (batch 2); "
        "set img_size = [32, 32] in the card, re-export at the size you need, and avoid TTA views that resize (scale)"
    )


def test_onnx_load_errors(tmp_path):
    handmade_onnx(tmp_path / "m.onnx", classes=4)
    with pytest.raises(ConfigError, match="m.onnx: the ONNX model has 4 outputs but 3 classes are configured"):
        OnnxRunner(tmp_path / "m.onnx", device=CPU, num_classes=3)
    (tmp_path / "bad.onnx").write_bytes(b"nonsense")
    with pytest.raises(ModelLoadError, match=r"bad.onnx: ONNX Runtime cannot load it \(.*\); re-export it with ens export-onnx"):
        OnnxRunner(tmp_path / "bad.onnx", device=CPU)
    with pytest.raises(ModelLoadError, match="nope.onnx: no such ONNX file; check the onnx entry of the card or --onnx"):
        OnnxRunner(tmp_path / "nope.onnx", device=CPU)


def test_a_model_that_does_not_take_images(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], "flat",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(np.ones((3, 2), np.float32), "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(tmp_path / "flat.onnx"))
    with pytest.raises(ModelLoadError, match=r"flat.onnx: input 'x' has shape \['batch', 3\]; expected an image batch \(batch, 3, H, W\)"):
        OnnxRunner(tmp_path / "flat.onnx", device=CPU)


def test_make_runner_errors(tiny_card, tiny_onnx_card):
    with pytest.raises(ConfigError, match=r"model 'tiny_resnet' has no ONNX file for fold 2 \(folds: 0, 1\)"):
        make_runner(resolve_config(tiny_onnx_card), 2, device=CPU)
    with pytest.raises(ConfigError, match="--amp fp16 runs on CUDA only"):
        make_runner(resolve_config(tiny_card), 0, device=CPU, amp="fp16")
