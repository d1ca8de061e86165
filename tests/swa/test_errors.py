"""User errors of `ens swa` (weights, checkpoint lists, metrics files, BatchNorm refresh): one
`error: ` line on stderr, exit code 2, before any checkpoint is averaged."""

from __future__ import annotations

import pytest

from ensemble.errors import ConfigError
from ensemble.swa.average import average_checkpoints
from tests._errors import ens, one_error_line


def swa(*args):
    return ens("swa", *args)


def test_weights_of_the_wrong_count_are_refused(three, tmp_path):
    _, paths = three
    one_error_line(swa(*paths, "--weights", "1,2", "--out", tmp_path / "o.safetensors"),
                   "2 weights for 3 checkpoints; give one weight per checkpoint (--weights)")


def test_weights_summing_to_zero_are_refused(three, tmp_path):
    _, paths = three
    one_error_line(swa(*paths, "--weights", "0,0,0", "--out", tmp_path / "o.safetensors"),
                   "weights sum to 0; give at least one positive weight (--weights)")


def test_weights_with_top_n_are_ambiguous(three, tmp_path):
    _, paths = three
    metrics = tmp_path / "m.csv"
    metrics.write_text("checkpoint,f1\ne1.pth,0.1\ne2.pth,0.2\ne3.safetensors,0.3\n")
    one_error_line(swa(*paths, "--top-n", "2", "--metrics", metrics, "--mode", "max", "--weights", "1,1",
                       "--out", tmp_path / "o.safetensors"),
                   "--weights with --top-n is ambiguous; use one or the other")


def test_a_glob_matching_nothing_is_refused(tmp_path):
    one_error_line(swa("--glob", str(tmp_path / "*.pth"), "--out", tmp_path / "o.safetensors"),
                   "matches no files (from", "); fix the pattern")


def test_a_checkpoint_given_twice_is_refused(three, tmp_path):
    _, paths = three
    one_error_line(swa(paths[0], paths[1], paths[0], "--out", tmp_path / "o.safetensors"),
                   "is given twice (also as", "); give each checkpoint once")


@pytest.mark.parametrize(("name", "text", "extra", "message"), [
    ("m.json", '{"e1.pth": 0.1}', ["--metric", "f1"], ": --metric picks a CSV column; a JSON metrics file holds one metric"),
    ("m.csv", "", [], ": not a readable CSV (No columns to parse from file)"),
    ("m.csv", "checkpoint,f1\ne1.pth,0.1\n", ["--metric", "loss"], ": no metric column 'loss'; choose one of: f1"),
    ("m.csv", "checkpoint,f1\ne1.pth,0.1\ne2.pth,high\ne3.safetensors,0.3\n", [],
     ": metric of 'e2.pth' is 'high', not a finite number; fix or drop that row"),
    ("m.csv", "checkpoint,f1\ne1.pth,0.1\ne2.pth,0.2\n", [],
     "e3.safetensors\"; add a row per checkpoint (path or file name)"),
])
def test_a_bad_metrics_file_is_named(three, tmp_path, name, text, extra, message):
    _, paths = three
    metrics = tmp_path / name
    metrics.write_text(text)
    one_error_line(swa(*paths, "--top-n", "2", "--metrics", metrics, "--mode", "max", *extra,
                       "--out", tmp_path / "o.safetensors"), message)


def test_zero_bn_batches_are_refused(bn_setup, tmp_path):
    paths, card, data = bn_setup
    one_error_line(swa(*paths, "--card", card, "--fold", "0", "--bn-data", data, "--bn-batches", "0",
                       "--out", tmp_path / "o.safetensors"),
                   "--bn-batches 0 and --batch-size", "must both be at least 1")


def test_averaging_no_checkpoints_is_refused():
    """The CLI refuses an empty list earlier (plan.py); the library function checks again."""
    with pytest.raises(ConfigError, match="no checkpoints to average; give checkpoint files or a --glob that matches some"):
        average_checkpoints([])
