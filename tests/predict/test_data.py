from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import create_transform
from torchvision import transforms as T
from torchvision.transforms import functional as TVF

from ensemble.errors import ConfigError, LabelError
from ensemble.labels import Columns
from ensemble.predict._card_fields import INTERPOLATIONS
from ensemble.predict.data import (
    ImageDataset,
    Preprocess,
    check_files,
    decode_error,
    make_loader,
    missing_error,
    normalise,
    read_data,
    resolve_workers,
)
from tests.predict._data_helpers import write_data, write_images

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def ours(img: Image.Image, pre: Preprocess) -> torch.Tensor:
    return normalise(pre(img)[None], MEAN, STD, torch.device("cpu"))[0]


@pytest.mark.parametrize(("img_size", "crop_pct", "interp"), [
    ((32, 32), 0.875, "bilinear"), ((32, 32), 1.0, "bicubic"), ((24, 40), 0.9, "bilinear"), ((32, 32), 0.95, "nearest"),
])
def test_crop_mode_matches_timm_eval_transform(tmp_path, img_size, crop_pct, interp):
    write_images(tmp_path, 3, size=(50, 37))
    expected_tf = create_transform(img_size, crop_pct=crop_pct, interpolation=interp, mean=MEAN, std=STD)
    pre = Preprocess(img_size, crop_pct, interp, "crop")
    for p in sorted((tmp_path / "img").iterdir()):
        img = Image.open(p).convert("RGB")
        got = ours(img, pre)
        assert got.shape == (3, *img_size)
        torch.testing.assert_close(got, expected_tf(img), atol=1e-5, rtol=0)


def _oracle(pre: Preprocess):
    """What `ens predict` used before its own resize: timm's eval transform, torchvision for squash."""
    if pre.resize_mode == "squash":
        mode = T.InterpolationMode(pre.interpolation)
        return lambda img: TVF.pil_to_tensor(TVF.resize(img, list(pre.img_size), interpolation=mode))
    return create_transform(pre.img_size, crop_pct=pre.crop_pct, interpolation=pre.interpolation,
                            crop_mode="center", normalize=False)


@pytest.mark.parametrize("interp", INTERPOLATIONS)
@pytest.mark.parametrize("resize_mode", ["crop", "squash"])
def test_preprocess_is_timm_and_torchvision_byte_for_byte(interp, resize_mode):
    rng = np.random.default_rng(len(interp))
    # sizes: landscape, portrait, square, smaller than the target (crop pads), odd/even margins
    sizes = [(50, 37), (37, 50), (33, 33), (20, 29), (31, 64), (129, 17)]
    settings = [((32, 32), 0.875), ((32, 32), 1.0), ((24, 40), 0.9), ((40, 24), 0.95), ((29, 31), 0.77), ((32, 32), 0.5)]
    for (w, h), (img_size, crop_pct) in zip(sizes, settings):
        for mode in ("RGB", "L", "P"):  # decoded images reach the resize as RGB (images.to_rgb)
            img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode).convert("RGB")
            pre = Preprocess(img_size, crop_pct, interp, resize_mode)
            got, expected = pre(img), _oracle(pre)(img)
            assert got.dtype == torch.uint8 and got.shape == (3, *img_size)
            assert torch.equal(got, expected), (w, h, img_size, crop_pct, mode)


@pytest.mark.parametrize("channels_last", [False, True])
def test_normalise_matches_torchvision_in_either_layout(channels_last):
    u = torch.randint(0, 256, (2, 3, 7, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    got = normalise(u, MEAN, STD, torch.device("cpu"), channels_last=channels_last)
    assert got.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    expected = T.Normalize(MEAN, STD)(u.float() / 255)
    torch.testing.assert_close(got, expected, atol=0, rtol=0)


def test_square_crop_against_explicit_resize_and_crop(tmp_path):
    write_images(tmp_path, 1, size=(50, 37))
    img = Image.open(tmp_path / "img" / "0000.png").convert("RGB")
    # shorter side to floor(32 / 0.8) = 40, then the central 32x32
    expected = T.Compose([T.Resize(40), T.CenterCrop(32), T.ToTensor(), T.Normalize(MEAN, STD)])
    torch.testing.assert_close(ours(img, Preprocess((32, 32), 0.8, "bilinear", "crop")), expected(img), atol=1e-5, rtol=0)


def test_squash_mode_resizes_both_sides(tmp_path):
    write_images(tmp_path, 1, size=(50, 37))
    img = Image.open(tmp_path / "img" / "0000.png").convert("RGB")
    expected = T.Compose([T.Resize((20, 30), interpolation=T.InterpolationMode.BICUBIC), T.ToTensor(), T.Normalize(MEAN, STD)])
    torch.testing.assert_close(ours(img, Preprocess((20, 30), 0.5, "bicubic", "squash")), expected(img), atol=1e-5, rtol=0)


def test_preprocess_checks():
    # the card's checks, applied to a config built without a card
    with pytest.raises(ConfigError, match="model 'm': resize_mode: 'pad' is not one of: crop, squash"):
        Preprocess((8, 8), 1.0, "bilinear", "pad").check("m")
    with pytest.raises(ConfigError, match="model 'm': interpolation: 'cubic' is not one of: nearest, bilinear, bicubic"):
        Preprocess((8, 8), 1.0, "cubic", "crop").check("m")
    with pytest.raises(ConfigError, match=r"model 'm': crop_pct: must be a number in \(0, 1\] \(1.0 = no crop\), got 1.2"):
        Preprocess((8, 8), 1.2, "bilinear", "crop").check("m")


def test_read_data_ignores_labels_and_needs_folds_only_for_oof(tmp_path):
    write_images(tmp_path / "imgs", 2)
    (tmp_path / "test.csv").write_text("image_id,file,label\n007,img/0000.png,\n008,img/0001.png,\n")
    cols = Columns(id="image_id", path="file")
    d = read_data(tmp_path / "test.csv", columns=cols, root=tmp_path / "imgs")
    assert list(d.ids) == ["007", "008"] and d.folds is None
    assert d.paths[1] == str(tmp_path / "imgs" / "img" / "0001.png")
    assert len(check_files(d, np.arange(2))) == 0
    with pytest.raises(LabelError, match=r"test.csv: no fold column 'fold' \(columns: image_id, file, label\); name it with --fold-col"):
        read_data(tmp_path / "test.csv", columns=cols, need_folds=True)
    with pytest.raises(LabelError, match=r"no path column 'path' \(columns: image_id, file, label\); name it with --path-col"):
        read_data(tmp_path / "test.csv", columns=Columns(id="image_id"))


def test_missing_files_are_found_up_front(tmp_path):
    csv = write_data(tmp_path, 4)
    (tmp_path / "img" / "0001.png").unlink()
    (tmp_path / "img" / "0003.png").unlink()
    d = read_data(csv)
    bad = check_files(d, np.arange(4))
    assert list(bad) == [1, 3]
    assert str(missing_error(d, bad)) == (
        f"{csv}: 2 image files are missing, e.g. {tmp_path}/img/0001.png (id '00001'; ids \"00001\", \"00003\"); "
        "fix the paths (relative to the CSV's folder unless --root) or pass --skip-bad to predict without them"
    )


def test_dataset_reports_corrupt_and_missing_images_as_values(tmp_path):
    csv = write_data(tmp_path, 3)
    (tmp_path / "img" / "0001.png").write_bytes(b"not an image")
    (tmp_path / "img" / "0002.png").unlink()
    d = read_data(csv)
    ds = ImageDataset(list(d.paths), np.array([0, 1, 2]), Preprocess((16, 16)))
    row, img, err = ds[0]
    assert (row, err, img.dtype, tuple(img.shape)) == (0, "", torch.uint8, (3, 16, 16))
    row, img, err = ds[1]
    assert row == 1 and err.startswith("UnidentifiedImageError: cannot identify image file") and not img.any()
    assert ds[2][2].startswith("FileNotFoundError")
    msg = str(decode_error(d, 1, err))
    assert msg.startswith(f"{tmp_path}/img/0001.png: cannot decode the image of id '00001' (UnidentifiedImageError")
    assert msg.endswith("); replace the file or pass --skip-bad to predict without it")


def test_truncated_image_is_an_error(tmp_path):
    write_images(tmp_path, 1)
    p = tmp_path / "img" / "0000.jpg"
    Image.open(tmp_path / "img" / "0000.png").save(p, quality=90)
    p.write_bytes(p.read_bytes()[:200])
    ds = ImageDataset([str(p)], np.array([0]), Preprocess((16, 16)))
    assert ds[0][2].startswith("OSError")


def test_loader_with_workers_keeps_the_order_given(tmp_path):
    d = read_data(write_data(tmp_path, 7))
    order = np.array([5, 0, 6, 2, 1])
    pre = Preprocess((16, 16), 0.875)
    seen, images = [], []
    for rows, imgs, errs in make_loader(d, order, pre, batch_size=2, workers=1, device=torch.device("cpu")):
        assert imgs.dtype == torch.uint8 and all(e == "" for e in errs)
        seen += rows.tolist()
        images.append(imgs)
    assert seen == order.tolist()
    expected = pre(Image.open(d.paths[6]).convert("RGB"))
    torch.testing.assert_close(torch.cat(images)[2], expected, rtol=0, atol=0)


def test_batches_never_straddle_blocks(tmp_path):
    d = read_data(write_data(tmp_path, 9))
    order = np.arange(9)[::-1].copy()
    loader = make_loader(d, order, Preprocess((16, 16)), batch_size=3, workers=0, device=torch.device("cpu"), blocks=[4, 5])
    assert [rows.tolist() for rows, _, _ in loader] == [[8, 7, 6], [5], [4, 3, 2], [1, 0]]
    with pytest.raises(ValueError, match="blocks sum to 8, not to the 9 rows"):
        make_loader(d, order, Preprocess((16, 16)), batch_size=3, workers=0, device=torch.device("cpu"), blocks=[4, 4])


def test_resolve_workers(monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    monkeypatch.setattr("os.sched_getaffinity", lambda _: set(range(16)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert (resolve_workers("auto", cpu), resolve_workers("auto", gpu)) == (2, 8)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # 4 ranks on this machine share its 16 cores
    assert (resolve_workers("auto", cpu), resolve_workers("AUTO", gpu)) == (0, 3)
    monkeypatch.setattr("os.sched_getaffinity", lambda _: {0, 1}, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert (resolve_workers("auto", cpu), resolve_workers("auto", gpu)) == (0, 1)
    assert resolve_workers("3", cpu) == 3 and resolve_workers(0, gpu) == 0
    with pytest.raises(ConfigError, match=r"--workers 'x': give a number of decoding processes \(0: decode in the main process\) or auto"):
        resolve_workers("x", cpu)
    with pytest.raises(ConfigError, match=r"--workers -1: give a number of decoding processes >= 0"):
        resolve_workers(-1, cpu)
