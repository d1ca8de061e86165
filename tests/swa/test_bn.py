"""BatchNorm refresh against `update_bn` by hand, the card's strict fit, and the `ens predict` round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ensemble.errors import ConfigError, DataError, ModelLoadError
from ensemble.predict.checkpoint import load_state_dict
from ensemble.swa import average_checkpoints, swa
from ensemble.swa.bn import bn_rows
from tests.swa.helpers import images, make_model, save, sha

timm = pytest.importorskip("timm")


def test_bn_rows_leave_the_fold_out_and_are_seeded():
    folds = np.array([0, 1, 2] * 10)
    rows = bn_rows(folds, 30, fold=1, limit=12, seed=3)
    assert len(rows) == 12 and len(set(rows)) == 12 and not (folds[rows] == 1).any()
    assert np.array_equal(rows, bn_rows(folds, 30, fold=1, limit=12, seed=3))
    assert len(bn_rows(None, 30, fold=None, limit=100, seed=0)) == 30
    assert len(bn_rows(None, 30, fold=None, limit=100, seed=0, batch_size=8)) == 24  # full batches only
    assert len(bn_rows(None, 5, fold=None, limit=100, seed=0, batch_size=8)) == 5  # one short batch is kept


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
