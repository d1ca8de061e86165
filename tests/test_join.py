"""join_labels: one class order and one id order for every use case; integer labels never guessed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score
from typer.testing import CliRunner

from ensemble.cli.app import app
from ensemble.errors import ClassMismatchError, ConfigError
from ensemble.join import join_labels, parse_classes
from ensemble.labels import read_labels
from ensemble.tables import make_table, sidecar_path, write_table

ORDER = ["zebra", "apple", "mango"]  # the class-index order the labels' integers refer to


@pytest.fixture
def case(tmp_path):
    """Integer labels; table `a` in the true order (sidecar), table `b` re-saved with sorted columns and no sidecar."""
    rng = np.random.default_rng(0)
    n = 300
    y = rng.integers(0, 3, n)
    ids = np.array([f"{i:04d}" for i in range(n)], dtype=object)
    probs = np.full((n, 3), 0.05, dtype=np.float32)
    probs[np.arange(n), y] = 0.9
    flip = rng.random(n) < 0.1
    probs[flip] = probs[flip][:, ::-1]
    a = make_table(ids, ORDER, probs, meta={"model": "a"})
    write_table(a, tmp_path / "preds" / "a" / "oof.csv")
    srt = sorted(ORDER)
    b = pd.DataFrame(probs[:, [ORDER.index(c) for c in srt]][::-1], columns=srt)  # rows reversed too
    b.insert(0, "id", ids[::-1])
    (tmp_path / "preds" / "b").mkdir(parents=True)
    b.to_csv(tmp_path / "preds" / "b" / "oof.csv", index=False)
    pd.DataFrame({"id": ids, "label": y, "fold": np.arange(n) % 3}).to_csv(tmp_path / "train.csv", index=False)
    oracle = f1_score(y, probs.argmax(1), average="macro")
    return tmp_path, y, oracle


def _tables(root, order):
    from ensemble.tables import read_table

    return [read_table(root / "preds" / m / "oof.csv") for m in order]


def test_integer_labels_follow_the_recorded_class_order_not_the_first_tables_columns(case):
    root, y, oracle = case
    from ensemble.tables import read_table

    a = read_table(root / "preds" / "a" / "oof.csv")
    j = join_labels(read_labels(root / "train.csv", classes=a.classes), [a])
    assert j.classes == ORDER and np.array_equal(j.y, y)
    assert f1_score(j.y, j.tables[0].probs.argmax(1), average="macro") == pytest.approx(oracle)


@pytest.mark.parametrize("order", [["a", "b"], ["b", "a"], ["b"]])
def test_integer_labels_against_tables_without_one_recorded_order_are_refused(case, order):
    root, *_ = case
    tables = _tables(root, order)
    with pytest.raises(ClassMismatchError, match=r"labels are class indices but .* ambiguous; give the order with --classes"):
        join_labels(read_labels(root / "train.csv", classes=tables[0].classes), tables)


@pytest.mark.parametrize("order", [["a", "b"], ["b", "a"]])
def test_explicit_classes_give_the_same_join_whatever_the_argument_order(case, order):
    root, y, oracle = case
    tables = _tables(root, order)
    j = join_labels(read_labels(root / "train.csv", classes=tables[0].classes), tables, classes=ORDER)
    names = np.array(j.classes)[j.y]
    assert list(names) == list(np.array(ORDER)[y])
    for t in j.tables:  # every table, whatever its column and row order, scores as the oracle
        assert f1_score(j.y, t.probs.argmax(1), average="macro") == pytest.approx(oracle)


def test_name_labels_are_joined_by_name_whatever_the_column_order(case):
    root, y, oracle = case
    pd.DataFrame({"id": [f"{i:04d}" for i in range(len(y))], "label": np.array(ORDER)[y]}).to_csv(root / "named.csv", index=False)
    for order in (["a", "b"], ["b", "a"]):
        tables = _tables(root, order)
        j = join_labels(read_labels(root / "named.csv", classes=tables[0].classes), tables)
        assert [f1_score(j.y, t.probs.argmax(1), average="macro") for t in j.tables] == pytest.approx([oracle, oracle])


def test_labels_mixing_names_and_indices_are_refused(tmp_path):
    pd.DataFrame({"id": ["1", "2", "3"], "label": ["apple", "2", "zebra"]}).to_csv(tmp_path / "mixed.csv", index=False)
    with pytest.raises(ClassMismatchError, match="mixes class names and class indices"):
        read_labels(tmp_path / "mixed.csv", classes=ORDER)


def test_parse_classes_checks_the_names(tmp_path):
    assert parse_classes("a, b,c", None) == ["a", "b", "c"]
    (tmp_path / "classes.txt").write_text("\ufeffa\nb\n\nc\n")
    assert parse_classes(None, tmp_path / "classes.txt") == ["a", "b", "c"]
    with pytest.raises(ConfigError, match="class \"a\" given twice"):
        parse_classes("a,b,a", None)
    with pytest.raises(ConfigError, match="--classes and --classes-file both given"):
        parse_classes("a", tmp_path / "classes.txt")
    with pytest.raises(ConfigError, match="empty class name"):
        parse_classes("a,,b", None)
    pd.DataFrame({"id": ["x"], "label": ["p"]}).to_csv(tmp_path / "l.csv", index=False)
    with pytest.raises(ClassMismatchError, match="classes differ from the reference"):
        join_labels(tmp_path / "l.csv", [make_table(["x"], ["p", "q"], np.array([[0.5, 0.5]]))], classes=["p", "r"])


def _run(args):
    r = CliRunner().invoke(app, args)
    return r.exit_code, r.stdout, r.stderr


def test_cli_report_blend_and_check_refuse_ambiguous_integer_labels_and_agree_with_classes(case):
    root, y, oracle = case
    a, b, lab = str(root / "preds" / "a"), str(root / "preds" / "b"), str(root / "train.csv")
    for args in (["oof-report", a, b, "--labels", lab, "--n-boot", "0"],
                 ["blend", b, a, "--labels", lab, "--method", "soft", "--out", str(root / "bl"), "--no-nested"],
                 ["check", b, a, "--labels", lab]):
        code, out, err = _run(args)
        assert code == 2 and "ambiguous; give the order with --classes" in err and "Traceback" not in err
    assert not (root / "bl").exists()
    code, out, err = _run(["oof-report", b, a, "--labels", lab, "--n-boot", "0", "--classes", ",".join(ORDER),
                           "--json", str(root / "r.json")])
    assert code == 0, err
    import json

    rows = json.loads((root / "r.json").read_text())["models"]
    assert [m["macro_f1"] for m in rows if m["kind"] == "model"] == pytest.approx([oracle, oracle])
    assert not sidecar_path(root / "preds" / "b" / "oof.csv").exists()
