from __future__ import annotations

import hashlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from ensemble.errors import ConfigError, ExportError, OutputExistsError, UnknownNameError
from ensemble.predict import export as export_mod
from ensemble.predict.card import resolve_config
from ensemble.predict.export import export_model, export_onnx
from tests.predict.conftest import TINY_CLASSES, normalised_batch, tiny_model


@pytest.fixture(scope="module")
def exported(tiny_effnet_card, tmp_path_factory):
    out = tmp_path_factory.mktemp("effnet_onnx")
    return out, export_onnx(resolve_config(tiny_effnet_card), out)


def test_each_fold_matches_torch_in_onnxruntime_with_a_dynamic_batch(exported):
    out, rows = exported
    assert [r["fold"] for r in rows] == [0, 1]
    x = normalised_batch(7, seed=5)  # a batch size the export never saw
    for r in rows:
        assert r["file"] == str(out / f"fold{r['fold']}.onnx") and r["exporter"] == "torchscript"
        assert 0 <= r["max_abs_diff"] <= 1e-4
        data = (out / f"fold{r['fold']}.onnx").read_bytes()
        assert r["sha256"] == hashlib.sha256(data).hexdigest()
        sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        (got,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
        with torch.no_grad():
            want = tiny_model("test_efficientnet", 10 + r["fold"])(x).numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
        model = onnx.load_from_string(data)
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == r["opset"] == 17
        props = {p.key: p.value for p in model.metadata_props}
        assert props["ens.classes"] == '["cat", "dog", "fox"]' and props["ens.fold"] == str(r["fold"])
        assert props["ens.checkpoint_sha256"] == r["checkpoint_sha256"]
        dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        assert dims == ["batch", 3, 32, 32]


def test_files_are_self_contained_and_the_card_runs_them(exported, tiny_effnet_card):
    out, rows = exported
    assert sorted(p.name for p in out.iterdir()) == ["fold0.onnx", "fold1.onnx", "tiny_effnet.toml"]
    for r in rows:
        model = onnx.load(r["file"], load_external_data=False)
        assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    cfg = resolve_config(out / "tiny_effnet.toml")
    src = resolve_config(tiny_effnet_card)
    assert cfg.backend == "onnx" and cfg.folds == [0, 1] and cfg.classes == TINY_CLASSES
    for key in ("name", "family", "img_size", "mean", "std", "crop_pct", "interpolation", "resize_mode"):
        assert getattr(cfg, key) == getattr(src, key), key
    text = (out / "tiny_effnet.toml").read_text()
    assert f"fold 0: checkpoint sha256 {rows[0]['checkpoint_sha256']}" in text


def test_parity_beyond_atol_is_an_error_and_writes_nothing(tiny_card, tmp_path, monkeypatch):
    real = export_mod.onnx_logits
    monkeypatch.setattr(export_mod, "onnx_logits", lambda data, x: real(data, x) + 0.01)
    out = tmp_path / "o"
    with pytest.raises(ExportError) as e:
        export_onnx(resolve_config(tiny_card, folds=[0]), out)
    msg = str(e.value)
    assert msg.startswith(f"{out / 'fold0.onnx'}: ONNX Runtime and torch disagree on fold 0 (max abs logit difference 0.01 > atol 0.0001")
    assert "nothing was written" in msg
    assert not out.exists()  # not even an empty folder


def test_failed_export_removes_the_folders_it_created_and_only_those(tiny_card, tmp_path, monkeypatch):
    monkeypatch.setattr(export_mod, "onnx_logits", lambda data, x: np.full((len(x), 3), np.inf, np.float32))
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "mine.txt").write_text("x")
    with pytest.raises(ExportError):
        export_onnx(resolve_config(tiny_card, folds=[0]), tmp_path / "kept" / "a" / "b" / "onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"] and [p.name for p in (tmp_path / "kept").iterdir()] == ["mine.txt"]


@pytest.mark.parametrize(("opset", "exporter", "message"), [
    (5, "auto", "--opset 5: out of the range 7 to 23 that the exporters of torch "),
    (99, "auto", "--opset 99: out of the range 7 to 23 that the exporters of torch "),
    (21, "torchscript", "--opset 21: out of the range 7 to 20 that the torchscript exporter of torch "),
])
def test_opset_out_of_the_exporters_range_is_refused_before_any_model_loads(tiny_card, tmp_path, monkeypatch, opset, exporter, message):
    from ensemble.predict.exporters import EXPORTERS

    monkeypatch.setattr(export_mod, "load_model", lambda *a, **k: pytest.fail("no model may load"))
    with pytest.raises(ConfigError) as e:
        export_onnx(resolve_config(tiny_card, folds=[0]), tmp_path / "o", opset=opset, exporter=exporter)
    assert str(e.value).startswith(message) and str(e.value).endswith("can write; choose an opset in that range")
    # the range is the installed torch's own
    assert EXPORTERS.get("torchscript").opsets == (torch.onnx._constants.ONNX_MIN_OPSET,
                                                   torch.onnx._constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)
    assert not (tmp_path / "o").exists()


def test_a_graph_onnx_runtime_cannot_run_is_an_export_error_not_a_traceback():
    with pytest.raises(ExportError, match=r"^ONNX Runtime cannot run the exported model \(.+\); try another --opset or --exporter$"):
        export_mod.onnx_logits(b"not an onnx graph", torch.zeros(1, 3, 4, 4))


def test_existing_outputs_need_force(tiny_card, tmp_path):
    cfg = resolve_config(tiny_card, folds=[2])
    (tmp_path / "fold2.onnx").write_bytes(b"old")
    with pytest.raises(OutputExistsError, match=r"fold2.onnx exists; pass --force"):
        export_onnx(cfg, tmp_path)
    assert (tmp_path / "fold2.onnx").read_bytes() == b"old"
    rows = export_onnx(cfg, tmp_path, force=True)
    assert rows[0]["sha256"] == hashlib.sha256((tmp_path / "fold2.onnx").read_bytes()).hexdigest()


def test_argument_errors(tiny_card, tiny_onnx_card, tmp_path):
    with pytest.raises(ConfigError, match="model 'tiny_resnet' is already ONNX; export-onnx needs arch and checkpoints"):
        export_onnx(resolve_config(tiny_onnx_card), tmp_path)
    with pytest.raises(ConfigError, match=r"--batch must be >= 1 and --atol > 0 \(got batch=0, atol=0.0001\)"):
        export_onnx(resolve_config(tiny_card), tmp_path, batch=0)
    with pytest.raises(UnknownNameError, match="unknown ONNX exporter 'onnx2'; choose one of: auto, torchscript, dynamo"):
        export_onnx(resolve_config(tiny_card), tmp_path, exporter="onnx2")
    assert list(tmp_path.iterdir()) == []


class Antialiased(torch.nn.Module):
    """Uses an op TorchScript export lacks (antialiased bicubic resize) but dynamo handles."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.interpolate(x, size=(8, 8), mode="bicubic", antialias=True)
        return self.fc(x.mean((2, 3)))


def test_torchscript_failure_is_one_line_and_auto_falls_back_to_dynamo(capfd):
    model, sample = Antialiased().eval(), torch.randn(3, 3, 16, 16)
    with pytest.raises(ExportError) as e:
        export_model(model, sample, exporter="torchscript")
    assert str(e.value) == (
        "ONNX export failed (torchscript: UnsupportedOperatorError: Exporting the operator "
        "'aten::_upsample_bicubic2d_aa' to ONNX opset version 17 is not supported); try another --opset or --exporter dynamo"
    )
    data, used = export_model(model, sample)
    assert used == "dynamo"
    x = torch.randn(5, 3, 16, 16)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), rtol=0, atol=1e-5)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""  # exporters' graph dumps and warnings silenced


def test_a_config_without_a_family_exports_a_card_that_resolves(tmp_path):
    from tests.predict._data_helpers import make_config

    cfg = make_config(tmp_path, [0], name="plain")  # built without a card: family ""
    assert cfg.family == ""
    export_onnx(cfg, tmp_path / "onnx")
    back = resolve_config(tmp_path / "onnx" / "plain.toml")
    assert back.family == back.name == "plain" and back.task == "multiclass"
