from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import timm
import torch

from ensemble.errors import ConfigError
from ensemble.predict.card import DEFAULTS, FIELDS, format_card, load_card, resolve_config
from tests.predict.conftest import TINY_CLASSES, handmade_onnx, write_card


@pytest.fixture
def ckpts(tmp_path: Path) -> Path:
    """Folder with empty-but-present checkpoint files for folds 0 and 2 (resolve only checks existence)."""
    for f in (0, 2):
        (tmp_path / "w" / f"f{f}").mkdir(parents=True)
        (tmp_path / "w" / f"f{f}" / "best.pth").write_bytes(b"x")
    return tmp_path


def card(tmp: Path, **values) -> Path:
    values.setdefault("arch", "test_resnet")
    values.setdefault("classes", list(TINY_CLASSES))
    values.setdefault("checkpoints", "w/f{fold}/best.pth")
    return write_card(tmp / "m.toml", **values)


# ---- precedence: flags > card > model's own config > defaults, each level proven ----

def test_timm_pretrained_cfg_fills_what_the_card_does_not_say(ckpts):
    pc = timm.models.get_pretrained_cfg("test_resnet")
    cfg = resolve_config(card(ckpts))
    assert cfg.img_size == tuple(pc.input_size[1:])
    assert cfg.mean == tuple(pc.mean) and cfg.std == tuple(pc.std)
    assert cfg.crop_pct == pc.crop_pct and cfg.interpolation == pc.interpolation


def test_card_overrides_pretrained_cfg_and_flags_override_the_card(ckpts):
    c = card(ckpts, img_size=[40, 48], mean=[0.1, 0.2, 0.3], crop_pct=1.0, interpolation="bicubic")
    cfg = resolve_config(c)
    assert (cfg.img_size, cfg.mean, cfg.crop_pct, cfg.interpolation) == ((40, 48), (0.1, 0.2, 0.3), 1.0, "bicubic")
    std = timm.models.get_pretrained_cfg("test_resnet").std
    assert cfg.std == tuple(std)  # not in the card: still from timm
    cfg = resolve_config(c, img_size=64, mean="0.4,0.5,0.6", crop_pct=0.9, interpolation="nearest")
    assert (cfg.img_size, cfg.mean, cfg.crop_pct, cfg.interpolation) == ((64, 64), (0.4, 0.5, 0.6), 0.9, "nearest")


def test_defaults_when_nothing_else_says(tmp_path):
    handmade_onnx(tmp_path / "fold0.onnx", size=None)  # dynamic H, W: the model says nothing
    cfg = resolve_config(onnx=str(tmp_path / "fold{fold}.onnx"), classes="a,b,c")
    for key in ("img_size", "mean", "std", "crop_pct", "interpolation", "resize_mode"):
        assert getattr(cfg, key) == DEFAULTS[key], key
    assert cfg.backend == "onnx" and cfg.arch is None and cfg.name == tmp_path.name


def test_onnx_model_gives_its_input_size_and_classes(tmp_path):
    handmade_onnx(tmp_path / "fold0.onnx", size=(24, 20), classes=4)
    cfg = resolve_config(onnx=str(tmp_path / "fold0.onnx"))
    assert cfg.img_size == (24, 20) and cfg.classes == ("0", "1", "2", "3") and cfg.folds == [0]
    with pytest.raises(ConfigError) as e:
        resolve_config(onnx=str(tmp_path / "fold0.onnx"), img_size=32)
    assert "fold0.onnx: the ONNX model takes 24x20 images but img_size is 32x32; set img_size = [24, 20]" in str(e.value)
    with pytest.raises(ConfigError, match="the ONNX model has 4 outputs but 3 classes are given; use the classes it was trained on"):
        resolve_config(onnx=str(tmp_path / "fold0.onnx"), classes="a,b,c")


def test_unreadable_onnx_file(tmp_path):
    (tmp_path / "fold0.onnx").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match=r"fold0.onnx: not a readable ONNX model \(.*\); re-export it \(ens export-onnx\)"):
        resolve_config(onnx=str(tmp_path / "fold0.onnx"), classes="a,b")


def test_flag_weights_of_the_other_kind_win_over_the_card(ckpts):
    handmade_onnx(ckpts / "x.onnx", size=(32, 32))
    cfg = resolve_config(card(ckpts, img_size=32), onnx=str(ckpts / "x.onnx"))
    assert cfg.backend == "onnx" and cfg.checkpoints == {} and cfg.onnx == {0: ckpts / "x.onnx"}
    assert cfg.mean == tuple(timm.models.get_pretrained_cfg("test_resnet").mean)  # arch still informs


# ---- weights: patterns, lists, tables, folds; paths relative to the card ----

def test_fold_pattern_expands_to_existing_files_relative_to_the_card(ckpts, monkeypatch, tmp_path_factory):
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    cfg = resolve_config(card(ckpts))
    assert cfg.checkpoints == {0: ckpts / "w/f0/best.pth", 2: ckpts / "w/f2/best.pth"} and cfg.folds == [0, 2]
    assert resolve_config(card(ckpts), folds=[2]).folds == [2]
    with pytest.raises(ConfigError) as e:
        resolve_config(card(ckpts), folds="0,1,2")
    assert f"{ckpts / 'm.toml'}: checkpoints: 1 checkpoint file missing: \"{ckpts / 'w/f1/best.pth'}\"" in str(e.value)
    assert "(paths are relative to the card)" in str(e.value)


def test_flag_paths_are_relative_to_the_working_directory(ckpts, monkeypatch):
    monkeypatch.chdir(ckpts)
    for given in (["w/f0/best.pth", "w/f2/best.pth"], "w/f0/best.pth,w/f2/best.pth"):
        cfg = resolve_config(arch="test_resnet", classes="a,b", checkpoints=given)
        assert cfg.checkpoints == {0: Path("w/f0/best.pth"), 1: Path("w/f2/best.pth")} and cfg.name == "test_resnet"


def test_list_table_and_single_file(ckpts):
    assert resolve_config(card(ckpts, checkpoints={"3": "w/f0/best.pth"})).checkpoints == {3: ckpts / "w/f0/best.pth"}
    assert resolve_config(card(ckpts, checkpoints="w/f2/best.pth")).checkpoints == {0: ckpts / "w/f2/best.pth"}
    with pytest.raises(ConfigError, match=r'm.toml: checkpoints: 1 checkpoint file missing: ".*w/f1/best.pth"'):
        resolve_config(card(ckpts, checkpoints=["w/f0/best.pth", "w/f1/best.pth"]))
    with pytest.raises(ConfigError, match=r'no file for folds "4" \(files given for folds "0"\); fix folds or the list'):
        resolve_config(card(ckpts, checkpoints=["w/f0/best.pth"]), folds=[4])


def test_pattern_matching_nothing(ckpts):
    with pytest.raises(ConfigError) as e:
        resolve_config(card(ckpts, checkpoints="nowhere/f{fold}.pth"))
    assert "checkpoints: no file matches" in str(e.value) and "({fold} stands for the fold number)" in str(e.value)


# ---- classes ----

def test_classes_file_num_classes_and_their_errors(ckpts):
    (ckpts / "classes.txt").write_text("cat\ndog\n\nfox\n")
    c = card(ckpts, classes=None, classes_file="classes.txt")
    assert resolve_config(c).classes == ("cat", "dog", "fox")
    assert resolve_config(c, classes="x,y").classes == ("x", "y")  # the flag wins over the card's file
    assert resolve_config(c, num_classes=3).num_classes == 3
    with pytest.raises(ConfigError, match=r"--num-classes is 4 but 3 classes are listed; make them agree"):
        resolve_config(c, num_classes=4)
    bare = write_card(ckpts / "bare.toml", arch="test_resnet", checkpoints="w/f{fold}/best.pth")
    with pytest.raises(ConfigError) as e:
        resolve_config(bare)
    assert str(e.value) == (f"{bare}: no classes; set classes = [...] (in index order) or classes_file, "
                            "or num_classes for classes named 0..C-1")
    assert resolve_config(bare, num_classes=2).classes == ("0", "1")
    both = write_card(ckpts / "both.toml", arch="test_resnet", checkpoints="w/f{fold}/best.pth", classes=["a"], classes_file="classes.txt")
    with pytest.raises(ConfigError, match="both.toml: both classes and classes_file are given; give one"):
        resolve_config(both)
    with pytest.raises(ConfigError, match=r"^--classes-file: no such file .*missing.txt'; give a text file with one class name per line"):
        resolve_config(bare, classes_file=str(ckpts / "missing.txt"))


# ---- what is missing or contradictory ----

def test_backend_errors(ckpts):
    handmade_onnx(ckpts / "x.onnx")
    both = card(ckpts, onnx="x.onnx")
    with pytest.raises(ConfigError, match="m.toml: both onnx and checkpoints are given; give one"):
        resolve_config(both)
    nothing = write_card(ckpts / "n.toml", classes=["a"])
    with pytest.raises(ConfigError, match=r"n.toml: neither arch nor onnx is given; set arch \(a timm model name\) and checkpoints, or onnx files"):
        resolve_config(nothing)
    with pytest.raises(ConfigError, match=r"n.toml: arch 'test_resnet' has no checkpoints; set checkpoints"):
        resolve_config(nothing, arch="test_resnet")
    with pytest.raises(ConfigError, match=r"--arch: unknown timm architecture 'tset_resnet' \(did you mean test_resnet"):
        resolve_config(card(ckpts), arch="tset_resnet")


def test_unknown_keys_list_the_valid_ones(ckpts):
    c = card(ckpts, img_sz=32, chekpoints="x")
    with pytest.raises(ConfigError) as e:
        resolve_config(c)
    assert str(e.value) == f'{c}: unknown keys "img_sz", "chekpoints"; valid keys: {", ".join(FIELDS)}'


def test_trust_cannot_come_from_a_card(ckpts):
    c = card(ckpts, trust_checkpoint=True)
    with pytest.raises(ConfigError, match="trust_checkpoint cannot be set in a card; pass --trust-checkpoint on the command line"):
        load_card(c)
    assert resolve_config(card(ckpts), trust_checkpoint=True).trust_checkpoint is True


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("img_size", "big", "img_size: must be a positive integer, got 'big'"),
        ("img_size", [1, 2, 3], "img_size: must be one integer or [height, width], got [1, 2, 3]"),
        ("mean", [0.5, 0.5], "mean: must be 3 numbers (R, G, B on the 0..1 scale), got [0.5, 0.5]"),
        ("std", [0.5, 0.0, 0.5], "std: must be 3 positive numbers"),
        ("crop_pct", 1.5, "crop_pct: must be a number in (0, 1] (1.0 = no crop), got 1.5"),
        ("interpolation", "cubic", "interpolation: 'cubic' is not one of: nearest, bilinear, bicubic, lanczos, box, hamming"),
        ("resize_mode", "fit", "resize_mode: 'fit' is not one of: crop, squash"),
        ("name", "a/b", "name: 'a/b' is used as a folder name (preds/<name>/); drop the path separators"),
        ("classes", ["a", "b", "a"], 'classes: duplicate class names "a"; each class once, in index order'),
        ("ema", "yes", "ema: must be true or false, got 'yes'"),
        ("num_classes", 0, "num_classes: must be a positive integer, got 0"),
        ("folds", ["x"], "folds: must be a list of fold numbers, got ['x']"),
        ("checkpoints", 5, "checkpoints: must be a file, a list of files (one per fold), a table fold -> file"),
        ("checkpoints", {"best": "w/f0/best.pth"}, "checkpoints: table keys must be fold numbers, got ['best']"),
        ("model_kwargs", 3, "model_kwargs: must be a table of keyword arguments, got 3"),
        ("arch", " ", "arch: must be a non-empty string, got ' '"),
        ("folds", [-1], "folds: must be a list of fold numbers >= 0, got [-1]"),
        ("classes", {"a": 1}, "classes: must be a non-empty list of class names, got {'a': 1}"),
    ],
)
def test_bad_values_name_the_card_and_key(ckpts, key, value, message):
    c = card(ckpts, **{key: value})
    with pytest.raises(ConfigError) as e:
        resolve_config(c)
    assert str(e.value).startswith(f"{c}: ") and message in str(e.value)


def test_bad_flag_values_name_the_flag(ckpts):
    with pytest.raises(ConfigError, match=r"^--crop-pct: must be a number in \(0, 1\]"):
        resolve_config(card(ckpts), crop_pct=0)
    with pytest.raises(TypeError, match="unknown flags"):
        resolve_config(card(ckpts), image_size=3)


def test_card_file_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.toml: no such model card; give the path of a .toml card"):
        load_card(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("arch = \n")
    with pytest.raises(ConfigError, match=r"bad.toml: invalid TOML \(.*\); fix the card's syntax"):
        load_card(tmp_path / "bad.toml")


def test_names_and_flags_pass_through(ckpts):
    cfg = resolve_config(card(ckpts, family="resnets", ema=True, model_kwargs=None), name="r1")
    assert (cfg.name, cfg.family, cfg.ema, cfg.card_path) == ("r1", "resnets", True, ckpts / "m.toml")
    assert resolve_config(card(ckpts, ema=True), ema=False).ema is True  # a switch left off defers to the card
    cfg = resolve_config(card(ckpts))
    assert (cfg.name, cfg.family, cfg.arch) == ("m", "m", "test_resnet")


def test_format_card_round_trips_through_tomllib():
    values = {"name": 'we"ird\\name', "folds": [0, 2], "classes": ["a b", "ç"], "crop_pct": 0.875,
              "ema": False, "img_size": [32, 48], "model_kwargs": {"drop_rate": 0.1, "global_pool": "avg"}}
    text = format_card(values, ["made by a test"])
    assert text.startswith("# made by a test\n")
    assert tomllib.loads(text) == values
    assert isinstance(torch.tensor(0), torch.Tensor)  # torch imported for the fixtures' models


def test_non_utf8_card_and_classes_file_are_one_config_error_naming_the_file(tmp_path):
    card = tmp_path / "cp1252.toml"
    card.write_bytes(b'name = "na\x96me"\n')
    with pytest.raises(ConfigError) as e:
        load_card(card)
    assert str(e.value) == f"{card}: the model card is not UTF-8 text (byte 0x96 at offset 10); save it as UTF-8"
    (tmp_path / "classes.txt").write_bytes(b"cat\ncaf\xe9\n")
    (tmp_path / "w.pth").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"classes.txt: the classes file is not UTF-8 text \(byte 0xe9 at offset 7\)"):
        resolve_config(None, arch="test_resnet", checkpoints=str(tmp_path / "w.pth"), classes_file=str(tmp_path / "classes.txt"))
