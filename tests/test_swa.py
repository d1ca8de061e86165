"""Weight averaging against torch's own `AveragedModel`, selection, dtypes, errors and round trips."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ensemble.errors import ConfigError, DataError, ModelLoadError, OutputExistsError, UnknownNameError
from ensemble.predict.checkpoint import load_state_dict
from ensemble.swa import average_checkpoints, match_metrics, read_metrics, select_top_n, swa
from ensemble.swa.bn import bn_rows

timm = pytest.importorskip("timm")


def make_model(arch: str = "test_resnet", seed: int = 0, num_classes: int = 5) -> torch.nn.Module:
    """A tiny timm model with seeded random weights and BN buffers that differ between seeds."""
    torch.manual_seed(seed)
    m = timm.create_model(arch, pretrained=False, num_classes=num_classes)
    g = torch.Generator().manual_seed(seed + 1000)
    for mod in m.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=g))
            mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)
            mod.num_batches_tracked.fill_(100 * (seed + 1))
    return m


def save(sd: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        torch.save(sd, path)
    return path


def oracle(models: list[torch.nn.Module]) -> dict[str, torch.Tensor]:
    """torch's AveragedModel fed the models one by one, buffers averaged too (use_buffers=True)."""
    avg = torch.optim.swa_utils.AveragedModel(models[0], use_buffers=True)
    for m in models:
        avg.update_parameters(m)
    return avg.module.state_dict()


@pytest.fixture
def three(tmp_path):
    """Three seeded test_resnet checkpoints in three layouts (plain .pth, nested, .safetensors)."""
    models = [make_model(seed=s) for s in range(3)]
    paths = [
        save(models[0].state_dict(), tmp_path / "e1.pth"),
        save({"state_dict": models[1].state_dict(), "epoch": 2}, tmp_path / "e2.pth"),
        save(models[2].state_dict(), tmp_path / "e3.safetensors"),
    ]
    return models, paths


@pytest.mark.parametrize("arch", ["test_resnet", "test_efficientnet"])
def test_uniform_average_equals_averaged_model(tmp_path, arch):
    models = [make_model(arch, seed=s) for s in range(4)]
    paths = [save(m.state_dict(), tmp_path / f"{arch}_{i}.pth") for i, m in enumerate(models)]
    got = average_checkpoints(paths)
    want = oracle(models)
    assert list(got) == list(want)
    floats = [k for k, v in want.items() if v.is_floating_point()]
    assert any("running_mean" in k for k in floats) and any("weight" in k for k in floats)
    for k in floats:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6, msg=k)
        assert got[k].dtype == want[k].dtype


def test_integer_counters_take_the_max_not_a_floored_average(three):
    models, paths = three
    got = average_checkpoints(paths)
    counters = [k for k in got if k.endswith("num_batches_tracked")]
    assert counters
    for k in counters:
        assert got[k].dtype == torch.int64 and int(got[k]) == 300  # 100, 200, 300 -> max, not 200


def test_weighted_average_is_the_float64_weighted_mean(three):
    models, paths = three
    got = average_checkpoints(paths, weights=[1, 2, 5])
    sds = [m.state_dict() for m in models]
    for k, v in got.items():
        if v.is_floating_point():
            want = sum(w * sd[k].double() for w, sd in zip([1 / 8, 2 / 8, 5 / 8], sds)).float()
            torch.testing.assert_close(v, want, rtol=0, atol=1e-6)


def test_dtypes_are_preserved(tmp_path):
    models = [make_model(seed=s) for s in range(2)]
    half = [save({k: v.half() if v.is_floating_point() else v for k, v in m.state_dict().items()}, tmp_path / f"h{i}.pth")
            for i, m in enumerate(models)]
    got = average_checkpoints(half)
    ref = models[0].state_dict()
    for k, v in got.items():
        assert v.dtype == (torch.float16 if ref[k].is_floating_point() else ref[k].dtype), k
    # the float16 result is the float64 average rounded once
    k = "conv1.0.weight"
    want = ((ref[k].half().double() + models[1].state_dict()[k].half().double()) / 2).half()
    assert torch.equal(got[k], want)
    # float16 + float32 sources: the wider dtype
    full = save(models[1].state_dict(), tmp_path / "f1.pth")
    assert average_checkpoints([half[0], full])["conv1.0.weight"].dtype == torch.float32


def test_ema_averages_the_ema_weights(tmp_path):
    raw = [make_model(seed=s) for s in range(2)]
    ema = [make_model(seed=10 + s) for s in range(2)]
    paths = [save({"state_dict": r.state_dict(), "state_dict_ema": e.state_dict()}, tmp_path / f"c{i}.pth")
             for i, (r, e) in enumerate(zip(raw, ema))]
    got, want = average_checkpoints(paths, ema=True), oracle(ema)
    torch.testing.assert_close(got["fc.weight"], want["fc.weight"], rtol=0, atol=1e-6)
    assert not torch.allclose(got["fc.weight"], oracle(raw)["fc.weight"])


def test_different_architectures_are_refused(tmp_path):
    a = save(make_model("test_resnet").state_dict(), tmp_path / "a.pth")
    b = save(make_model("test_efficientnet").state_dict(), tmp_path / "b.pth")
    with pytest.raises(ModelLoadError) as e:
        average_checkpoints([a, b])
    first_missing = next(iter(make_model("test_resnet").state_dict()))
    msg = str(e.value)
    assert f"{b} lacks" in msg and f'"{first_missing}"' in msg and f"that {a} has" in msg
    assert "average checkpoints of one architecture" in msg


def test_same_keys_different_shapes_are_refused(tmp_path):
    a = save(make_model(num_classes=5).state_dict(), tmp_path / "a.pth")
    b = save(make_model(num_classes=7).state_dict(), tmp_path / "b.pth")
    with pytest.raises(ModelLoadError, match=r"key 'fc\.weight' has shape \(5, \d+\) in .*a\.pth but \(7, \d+\) in .*b\.pth"):
        average_checkpoints([a, b])


def test_differing_integer_constants_are_refused(tmp_path):
    a = save({"w": torch.ones(2), "index": torch.arange(4)}, tmp_path / "a.pth")
    b = save({"w": torch.zeros(2), "index": torch.arange(4).flip(0)}, tmp_path / "b.pth")
    with pytest.raises(ModelLoadError, match=r"integer tensor 'index' differs between .*a\.pth and .*b\.pth"):
        average_checkpoints([a, b])
    c = save({"w": torch.zeros(2), "index": torch.arange(4)}, tmp_path / "c.pth")
    got = average_checkpoints([a, c])
    assert torch.equal(got["index"], torch.arange(4)) and torch.equal(got["w"], torch.full((2,), 0.5))


@pytest.mark.parametrize(
    "weights, message",
    [([1, 2], "2 weights for 3 checkpoints"), ([1, -1, 1], "must be finite and >= 0"), ([0, 0, 0], "weights sum to 0")],
)
def test_bad_weights(three, weights, message):
    with pytest.raises(ConfigError, match=message):
        average_checkpoints(three[1], weights=weights)


# --- selection ---------------------------------------------------------------------------------


def test_read_metrics_json_and_csv(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps({"a.pth": 0.5, "b.pth": 0.7}))
    assert read_metrics(tmp_path / "m.json") == ("m", {"a.pth": 0.5, "b.pth": 0.7})
    (tmp_path / "m.csv").write_text("checkpoint,val_loss\na.pth,0.5\nb.pth,0.25\n")
    assert read_metrics(tmp_path / "m.csv") == ("val_loss", {"a.pth": 0.5, "b.pth": 0.25})
    (tmp_path / "w.csv").write_text("checkpoint,loss,f1\na.pth,0.5,0.9\n")
    assert read_metrics(tmp_path / "w.csv", metric="f1") == ("f1", {"a.pth": 0.9})
    with pytest.raises(ConfigError, match="3 columns .*name the metric column with --metric"):
        read_metrics(tmp_path / "w.csv")
    with pytest.raises(ConfigError, match="no metric column 'acc'; choose one of: loss, f1"):
        read_metrics(tmp_path / "w.csv", metric="acc")
    (tmp_path / "nan.csv").write_text("checkpoint,f1\na.pth,nan\n")
    with pytest.raises(ConfigError, match="metric of 'a.pth' is 'nan', not a finite number"):
        read_metrics(tmp_path / "nan.csv")
    (tmp_path / "dup.csv").write_text("checkpoint,f1\na.pth,1\na.pth,2\n")
    with pytest.raises(ConfigError, match='checkpoints listed twice: "a.pth"'):
        read_metrics(tmp_path / "dup.csv")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="metrics file must hold a JSON object, not list; write an object of checkpoint -> number"):
        read_metrics(tmp_path / "list.json")
    with pytest.raises(ConfigError, match="no such metrics file"):
        read_metrics(tmp_path / "none.json")


def test_top_n_respects_the_mode(tmp_path):
    ckpts = [tmp_path / "runs" / f"epoch{i}.pth" for i in range(5)]
    loss = [0.9, 0.2, 0.5, 0.1, 0.7]
    values = {f"runs/epoch{i}.pth": v for i, v in enumerate(loss)}  # relative to the metrics file
    metrics = match_metrics(ckpts, values, tmp_path / "m.json")
    assert metrics == loss
    assert select_top_n(ckpts, metrics, top_n=2, mode="min", metrics_path="m") == [3, 1]  # lowest loss first
    assert select_top_n(ckpts, metrics, top_n=2, mode="max", metrics_path="m") == [0, 4]
    assert sorted(select_top_n(ckpts, metrics, top_n=2, mode="min", metrics_path="m")) == sorted(np.argsort(loss)[:2].tolist())
    with pytest.raises(UnknownNameError, match="unknown selection mode 'best'; choose one of: max, min"):
        select_top_n(ckpts, metrics, top_n=2, mode="best", metrics_path="m")
    with pytest.raises(ConfigError, match="--top-n 6 but 5 checkpoints were given; choose 1 to 5"):
        select_top_n(ckpts, metrics, top_n=6, mode="min", metrics_path="m")
    with pytest.raises(ConfigError, match='m has no metric for ".*epoch2.pth"'):
        select_top_n(ckpts, [*metrics[:2], None, *metrics[3:]], top_n=2, mode="min", metrics_path="m")


def test_metrics_by_file_name_and_ambiguity(tmp_path):
    ckpts = [tmp_path / "f0" / "best.pth", tmp_path / "f1" / "last.pth"]
    assert match_metrics(ckpts, {"best.pth": 1.0, "last.pth": 2.0}, tmp_path / "m.json") == [1.0, 2.0]
    twins = [tmp_path / "f0" / "best.pth", tmp_path / "f1" / "best.pth"]
    with pytest.raises(ConfigError, match="'best.pth' fits several checkpoints.*name them by path"):
        match_metrics(twins, {"best.pth": 1.0}, tmp_path / "m.json")
    assert match_metrics(twins, {str(twins[0]): 1.0, "f1/best.pth": 2.0}, tmp_path / "m.json") == [1.0, 2.0]


def test_bn_rows_leave_the_fold_out_and_are_seeded():
    folds = np.array([0, 1, 2] * 10)
    rows = bn_rows(folds, 30, fold=1, limit=12, seed=3)
    assert len(rows) == 12 and len(set(rows)) == 12 and not (folds[rows] == 1).any()
    assert np.array_equal(rows, bn_rows(folds, 30, fold=1, limit=12, seed=3))
    assert len(bn_rows(None, 30, fold=None, limit=100, seed=0)) == 30
    assert len(bn_rows(None, 30, fold=None, limit=100, seed=0, batch_size=8)) == 24  # full batches only
    assert len(bn_rows(None, 5, fold=None, limit=100, seed=0, batch_size=8)) == 5  # one short batch is kept


# --- swa(): outputs ----------------------------------------------------------------------------


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_output_round_trips_through_the_loader(three, tmp_path, suffix):
    models, paths = three
    res = swa(paths, out=tmp_path / "out" / f"swa{suffix}")
    assert res.out.is_file() and res.sidecar == res.out.with_suffix(".json")
    loaded = load_state_dict(res.out)
    want = average_checkpoints(paths)
    assert sorted(loaded) == sorted(want) and all(torch.equal(loaded[k], want[k]) for k in want)
    if suffix == ".pth":  # a plain state dict, readable without unpickling code
        assert set(torch.load(res.out, weights_only=True)) == set(want)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=5)
    model.load_state_dict(loaded, strict=True)
    meta = json.loads(res.sidecar.read_text())
    assert meta["sha256"] == sha(res.out) == res.sha256
    assert [s["path"] for s in meta["sources"]] == [str(p) for p in paths]
    assert [s["sha256"] for s in meta["sources"]] == [sha(p) for p in paths]
    assert [s["weight"] for s in meta["sources"]] == pytest.approx([1 / 3] * 3)
    assert meta["ema"] is False and meta["bn_refresh"] is None


def test_top_n_output_records_metrics_and_selection(three, tmp_path):
    models, paths = three
    (tmp_path / "m.csv").write_text("checkpoint,val_loss\ne1.pth,0.3\ne2.pth,0.1\ne3.safetensors,0.2\n")
    res = swa(paths, out=tmp_path / "top.safetensors", top_n=2, metrics=tmp_path / "m.csv", mode="min")
    assert [s.path for s in res.used] == [paths[1], paths[2]]
    got = load_state_dict(res.out)
    torch.testing.assert_close(got["fc.weight"], oracle(models[1:])["fc.weight"], rtol=0, atol=1e-6)
    meta = res.meta
    assert meta["selection"] == {"top_n": 2, "mode": "min", "metrics": str(tmp_path / "m.csv"), "metric": "val_loss"}
    assert [s["metric"] for s in meta["sources"]] == [0.1, 0.2]
    assert meta["not_selected"] == [{"path": str(paths[0]), "metric": 0.3}]


def test_glob_with_fold(three, tmp_path, monkeypatch):
    models, paths = three
    monkeypatch.chdir(tmp_path)
    for i, m in enumerate(models[:2]):
        save(m.state_dict(), tmp_path / "runs" / "fold1" / f"epoch{i}.pth")
    res = swa(out="swa.pth", glob="runs/fold{fold}/epoch*.pth", fold=1)
    assert [str(s.path) for s in res.used] == ["runs/fold1/epoch0.pth", "runs/fold1/epoch1.pth"]
    with pytest.raises(ConfigError, match=r"has \{fold\} but no --fold was given"):
        swa(out="x.pth", glob="runs/fold{fold}/*.pth")
    with pytest.raises(ConfigError, match="'runs/fold7/\\*.pth' matches no files"):
        swa(out="x.pth", glob="runs/fold{fold}/*.pth", fold=7)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(out="o.pth", top_n=2), ConfigError, "--top-n needs --metrics FILE and --mode max|min"),
        (dict(out="o.pth", mode="max"), ConfigError, "--mode says which end of --metrics --top-n keeps"),
        (dict(out="o.txt"), ConfigError, "unknown checkpoint suffix '.txt'; end it in one of: .safetensors, .pth, .pt"),
        (dict(out="e1.pth", force=True), ConfigError, "--out e1.pth is one of the checkpoints being averaged"),
        (dict(out="o.pth", bn_data="d.csv"), ConfigError, "--bn-data needs --card CARD"),
    ],
)
def test_option_errors(three, tmp_path, monkeypatch, kwargs, error, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=message.replace("|", r"\|").replace("(", r"\(")):
        swa(["e1.pth", "e2.pth"], **kwargs)
    assert not (tmp_path / "o.pth").exists()


def test_existing_output_needs_force_and_nothing_partial(three, tmp_path, caplog):
    models, paths = three
    out = tmp_path / "swa.safetensors"
    swa(paths, out=out)
    before = sha(out)
    with pytest.raises(OutputExistsError, match="swa.safetensors exists; pass --force"):
        swa(paths[:2], out=out)
    assert sha(out) == before
    bad = save({"other": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ModelLoadError):
        swa([paths[0], bad], out=out, force=True)
    assert sha(out) == before and not list(tmp_path.glob(".*.tmp"))
    swa(paths[:2], out=out, force=True)
    assert sha(out) != before
    with caplog.at_level(logging.WARNING):
        swa(paths[:1], out=tmp_path / "one.pth")
    assert "only one checkpoint" in caplog.text
    with pytest.raises(ConfigError, match="is given twice"):
        swa([paths[0], paths[0]], out=tmp_path / "twice.pth")
    with pytest.raises(ConfigError, match="no such checkpoint file"):
        swa([tmp_path / "none.pth"], out=tmp_path / "n.pth")


# --- with a card: strict fit, BatchNorm refresh, `ens predict` round trip -------------------------

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


@pytest.fixture
def bn_setup(tmp_path):
    """Two 3-class test_resnet checkpoints, a card whose own checkpoints do not exist yet (the SWA
    outputs), and a data CSV of 12 random 32x32 images in 3 folds."""
    from PIL import Image

    from tests.predict.conftest import write_card

    paths = [save(make_model(seed=s, num_classes=3).state_dict(), tmp_path / f"ep{s}.pth") for s in range(2)]
    card = write_card(
        tmp_path / "swa.toml", arch="test_resnet", classes=["cat", "dog", "fox"], img_size=[32, 32],
        mean=list(MEAN), std=list(STD), crop_pct=1.0, checkpoints="swa_fold{fold}.safetensors",
    )
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"img{i}.png")
        rows.append(f"{i:03d},img{i}.png,{i % 3}")
    data = tmp_path / "train.csv"
    data.write_text("id,path,fold\n" + "\n".join(rows) + "\n")
    return paths, card, data


def images(data: Path, fold_out: int) -> torch.Tensor:
    """The rows outside `fold_out`, read with PIL and normalised by hand: (B, 3, 32, 32)."""
    from PIL import Image

    lines = [line.split(",") for line in data.read_text().split()[1:]]
    arr = np.stack([np.asarray(Image.open(data.parent / p).convert("RGB")) for _, p, f in lines if int(f) != fold_out])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def test_bn_refresh_matches_update_bn_by_hand(bn_setup, tmp_path):
    paths, card, data = bn_setup
    res = swa(paths, out=tmp_path / "swa_fold0.safetensors", card=card, fold=0, bn_data=data,
              bn_batches=1, batch_size=8, device="cpu", workers=0)
    got = load_state_dict(res.out)
    plain = average_checkpoints(paths)
    # oracle: update_bn run by hand on the same (single) batch: the 8 rows outside fold 0
    model = timm.create_model("test_resnet", pretrained=False, num_classes=3)
    model.load_state_dict(plain)
    torch.optim.swa_utils.update_bn([images(data, fold_out=0)], model)
    want = model.state_dict()
    stats = [k for k in want if k.endswith(("running_mean", "running_var"))]
    assert stats
    for k in want:
        if k in stats:
            torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-5, msg=k)
            assert not torch.allclose(got[k], plain[k], atol=1e-3), k  # the refresh changed them
        elif want[k].is_floating_point():
            assert torch.equal(got[k], plain[k]), k  # weights untouched
    assert res.meta["bn_refresh"] == {"data": str(data), "batches": 1, "images": 8, "batch_size": 8,
                                      "excluded_fold": 0, "seed": 42}


def test_card_checks_the_average_fits_and_bn_needs_batchnorm(bn_setup, tmp_path):
    paths, card, data = bn_setup
    five = [save(make_model(seed=s, num_classes=5).state_dict(), tmp_path / f"five{s}.pth") for s in range(2)]
    with pytest.raises(ModelLoadError, match="classifier has 5 outputs but num_classes is 3"):
        swa(five, out=tmp_path / "x.pth", card=card, fold=0)
    from tests.predict.conftest import write_card

    vit = write_card(tmp_path / "vit.toml", arch="test_vit", classes=["a", "b"], img_size=[32, 32], checkpoints="v{fold}.pth")
    with pytest.raises(ConfigError, match="test_vit has no BatchNorm layers, so there is nothing to refresh; drop --bn-data"):
        swa(paths, out=tmp_path / "x.pth", card=vit, bn_data=data)
    onnx = write_card(tmp_path / "o.toml", onnx="m{fold}.onnx", classes=["a", "b"])
    with pytest.raises(ConfigError, match="is an ONNX model card; ens swa averages torch checkpoints"):
        swa(paths, out=tmp_path / "x.pth", card=onnx)
    only0 = tmp_path / "only0.csv"
    only0.write_text("id,path,fold\n1,img0.png,0\n")
    with pytest.raises(ConfigError, match="no rows outside fold 0 to refresh BatchNorm on"):
        swa(paths, out=tmp_path / "x.pth", card=card, fold=0, bn_data=only0, device="cpu", workers=0)
    gone = tmp_path / "gone.csv"
    gone.write_text("id,path,fold\n1,img0.png,1\n2,nothere.png,1\n")
    with pytest.raises(DataError, match="gone.csv: 1 image files are missing, e.g. .*nothere.png"):
        swa(paths, out=tmp_path / "x.pth", card=card, fold=0, bn_data=gone, device="cpu", workers=0)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    broken = tmp_path / "broken.csv"
    broken.write_text("id,path,fold\n1,img0.png,1\n2,bad.png,1\n")
    with pytest.raises(DataError, match="bad.png: cannot decode the image of id '2'.*drop its row from the --bn-data CSV"):
        swa(paths, out=tmp_path / "x.pth", card=card, fold=0, bn_data=broken, device="cpu", workers=0)
    assert not (tmp_path / "x.pth").exists()


def test_averaged_checkpoint_round_trips_through_predict(bn_setup, tmp_path):
    from ensemble.predict import predict

    paths, card, data = bn_setup
    swa(paths, out=tmp_path / "swa_fold0.safetensors", card=card, fold=0)
    tables = predict(card, data, split="test", out_dir=tmp_path / "preds", device="cpu", workers=0, batch_size=8)
    table = tables["swa/test"]
    model = timm.create_model("test_resnet", pretrained=False, num_classes=3).eval()
    model.load_state_dict(average_checkpoints(paths))
    with torch.no_grad():
        x = images(data, fold_out=-1)
        want = torch.softmax(model(x), dim=1).numpy()
    order = np.argsort(table.ids)
    np.testing.assert_allclose(table.probs[order], want, rtol=0, atol=1e-5)
    assert table.meta["checkpoints"] == {"0": sha(tmp_path / "swa_fold0.safetensors")}


def test_tied_weights_are_scaled_once(tmp_path):
    shared = torch.tensor([1.0, 3.0], dtype=torch.float64)
    a = save({"emb": shared, "head": shared}, tmp_path / "a.pth")  # torch.save keeps the tie
    b = save({"emb": torch.zeros(2, dtype=torch.float64), "head": torch.zeros(2, dtype=torch.float64)}, tmp_path / "b.pth")
    got = average_checkpoints([a, b])
    assert torch.equal(got["emb"], torch.tensor([0.5, 1.5], dtype=torch.float64)) and torch.equal(got["head"], got["emb"])


def test_bn_refresh_over_several_batches_matches_update_bn_by_hand(bn_setup, tmp_path):
    paths, card, data = bn_setup
    res = swa(paths, out=tmp_path / "swa.pth", card=card, fold=2, bn_data=data, bn_batches=2, batch_size=3,
              device="cpu", workers=0, seed=7)
    # the rows are a seeded sample (bn_rows, tested above); the batches are what update_bn must see
    rows = bn_rows(np.arange(12) % 3, 12, fold=2, limit=6, seed=7, batch_size=3)
    x = images(data, fold_out=-1)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=3)
    model.load_state_dict(average_checkpoints(paths))
    torch.optim.swa_utils.update_bn([x[rows[:3]], x[rows[3:]]], model)
    got = load_state_dict(res.out)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(got[k], v, rtol=1e-4, atol=1e-5, msg=k)
    assert res.meta["bn_refresh"]["batches"] == 2 and res.meta["bn_refresh"]["images"] == 6
