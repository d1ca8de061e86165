from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.csv
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ensemble
from ensemble import make_table, read_table, write_table
from ensemble.errors import (
    AlignmentError,
    ClassMismatchError,
    OutputExistsError,
    TableError,
)
from ensemble.tables import align, conform_classes, sidecar_path, views_path
from tests.conftest import random_probs, write_csv_table

# Class names: unicode, no leading/trailing spaces, not a number-looking or empty string that a CSV
# reader could reinterpret, and unique.
class_name = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters=',"\r\n'),
    min_size=1, max_size=8,
).filter(lambda s: s != "id" and not s.startswith("Unnamed"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(1, 30),
    classes=st.lists(class_name, min_size=1, max_size=50, unique=True),
    width=st.integers(1, 8),
    seed=st.integers(0, 2**16),
)
def test_round_trip_keeps_ids_classes_and_exact_probs(n, classes, width, seed):
    rng = np.random.default_rng(seed)
    ids = [str(i).zfill(width) for i in rng.choice(10**width, size=min(n, 10**width), replace=False)]
    probs = random_probs(rng, len(ids), len(classes))
    t = make_table(ids, classes, probs, meta={"model": "m", "family": "f"})
    with tempfile.TemporaryDirectory() as d:
        write_table(t, Path(d) / "oof.csv")
        back = read_table(Path(d) / "oof.csv")
    assert list(back.ids) == ids  # "00042" stays "00042"
    assert back.classes == list(classes)
    np.testing.assert_array_equal(back.probs, probs)  # float32 survives exactly
    assert back.probs.dtype == np.float32
    assert back.meta["model"] == "m" and back.meta["family"] == "f"
    assert back.meta["classes"] == list(classes)


def test_leading_zero_ids_read_from_a_hand_written_csv(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("id,a,b\n00042,0.25,0.75\n007,1,0\nNA,0.5,0.5\n")
    t = read_table(path)
    assert list(t.ids) == ["00042", "007", "NA"]
    assert t.probs.shape == (3, 2)


def test_views_round_trip(tmp_path, rng):
    probs = random_probs(rng, 5, 3)
    views = {"identity": random_probs(rng, 5, 3), "hflip": random_probs(rng, 5, 3)}
    t = make_table([f"{i:03d}" for i in range(5)], ["a", "b", "c"], probs, views=views)
    write_table(t, tmp_path / "oof.csv")
    back = read_table(tmp_path)  # a folder holding oof.csv
    assert set(back.views) == {"identity", "hflip"}
    np.testing.assert_array_equal(back.views["hflip"], views["hflip"])
    assert json.loads(sidecar_path(tmp_path / "oof.csv").read_text())["views_file"] == "oof.views.npz"
    # rows selected together with their views
    sub = back.take(np.array([4, 0]))
    np.testing.assert_array_equal(sub.views["identity"], views["identity"][[4, 0]])


def test_from_logits_applies_softmax(tmp_path):
    logits = np.array([[2.0, -1.0, 0.5], [0.0, 0.0, 0.0]])
    path = write_csv_table(tmp_path / "l.csv", ["1", "2"], ["a", "b", "c"], logits)
    with pytest.raises(TableError, match="pass --from-logits"):
        read_table(path)
    t = read_table(path, from_logits=True)
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(t.probs, expected, rtol=1e-6)


def test_name_comes_from_sidecar_then_folder(tmp_path, rng):
    t = make_table(["1"], ["a", "b"], random_probs(rng, 1, 2))
    write_table(t, tmp_path / "convnext_s0" / "oof.csv")
    assert read_table(tmp_path / "convnext_s0").name == "convnext_s0"
    write_csv_table(tmp_path / "plain.csv", ["1"], ["a", "b"], [[0.5, 0.5]])
    assert read_table(tmp_path / "plain.csv").name == "plain"


@pytest.mark.parametrize(
    "content, message",
    [
        ("id,a,b\n1,0.5,0.5\n1,0.5,0.5\n", r'duplicate ids "1"; each id must appear once — drop the repeated rows'),
        ("id,a,b\n,0.5,0.5\n", r"1 rows have an empty id \(rows \"0\"\); every row needs an id"),
        ("id,a,b\n1,nan,0.5\n", r"1 rows hold NaN or inf \(first: row 0, column 'a'\); fix the model output"),
        ("id,a,b\n1,inf,0.5\n", r"rows hold NaN or inf"),
        ("id,a,b\n1,-0.5,1.5\n", r"1 rows hold negative values \(first: row 0\); probabilities must be >= 0"),
        ("id,a,b\n1,0.5,0.4\n2,0.5,0.5\n", r"1 rows do not sum to 1 \(first: row 0 sums to 0.9\); rows must sum to 1 within 0.0001"),
        ("id,a,b\n1,x,0.5\n", r"class column 'a' holds a non-numeric value \(row 1: 'x'\); probabilities are numbers only — fix that cell"),
        ("name,a,b\n1,0.5,0.5\n", r"first column is 'name', expected 'id' followed by one column per class"),
        ("id\n1\n", r"no class columns; a table needs `id` then one column per class"),
        ("id,a,a\n1,0.5,0.5\n", r"column 'a' appears twice in the header; give every column its own name"),
        ("", r"not a readable CSV"),
    ],
)
def test_validation_errors_name_what_where_and_fix(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(TableError, match=message) as exc:
        read_table(path)
    assert str(path) in str(exc.value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    "content, message",
    [
        pytest.param("id,a,b\n1,0.5,0.5,0\n2,0.5,0.5,0\n", r"row 1 \(line 2\) has 4 fields, the header has 3",
                     id="long_first_row_silently_drops_its_last_field"),
        pytest.param("id,a,b\n1,0.5,0.5\n2,0.5,0.5,0\n", r"row 2 \(line 3\) has 4 fields, the header has 3",
                     id="long_row_further_down_is_named_not_a_parser_error"),
        pytest.param("id,a,b\n1,0.5,0.5\n2,1\n", r"row 2 \(line 3\) has 2 fields, the header has 3",
                     id="short_row_reported_as_nan"),
        pytest.param("id,a,b\n1,0.5,0.5,\n2,0.5,0.5,\n", r"every row ends with a trailing comma",
                     id="trailing_comma_on_data_rows_silently_dropped"),
        pytest.param("id,a,b,\n1,0.5,0.5,\n2,0.5,0.5,\n", r"every row ends with a trailing comma",
                     id="trailing_comma_on_every_line_reported_as_empty_column"),
        pytest.param("id,a,b\n", r"no rows \(only a header\); a table needs one row per sample",
                     id="header_only_table_passes_check"),
        pytest.param("id,a,b\n1,True,0\n", r"class column 'a' holds a non-numeric value \(row 1: 'True'\)",
                     id="true_read_as_one"),
        pytest.param("id,a,b\n1,0.5,0.5\n2,false,1\n", r"class column 'a' holds a non-numeric value \(row 2: 'false'\)",
                     id="false_read_as_zero"),
        pytest.param("id,a,b\n1,0x10,0\n", r"non-numeric value \(row 1: '0x10'\)", id="hex_number"),
        pytest.param("id,,b\n1,0.5,0.5\n", r"header column 2 has no name; name every class column",
                     id="empty_column_name_keyerror"),
    ],
)
def test_malformed_table_is_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(TableError, match=message) as exc:
        read_table(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_bom_before_id_is_accepted_as_labels_csvs_do(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffid,a,b\n007,0.25,0.75\n".encode("utf-8"))
    t = read_table(path)
    assert t.ids.tolist() == ["007"] and t.classes == ["a", "b"]
    np.testing.assert_allclose(t.probs, [[0.25, 0.75]])


def test_spaces_around_numbers_and_integer_columns_read_as_numbers(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,a,b\n1, 1 ,0\n2,0,1\n")
    np.testing.assert_array_equal(read_table(path).probs, [[1, 0], [0, 1]])


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"garbage, not a zip", id="garbage_bytes_valueerror_traceback"),
        pytest.param("pickled", id="pickled_object_array_valueerror_traceback"),
    ],
)
def test_corrupt_views_file_is_one_table_error(tmp_path, payload):
    path = write_csv_table(tmp_path / "oof.csv", ["1"], ["a", "b"], [[0.5, 0.5]])
    vp = tmp_path / "oof.views.npz"
    if payload == "pickled":
        np.savez(vp, identity=np.array([{"a": 1}], dtype=object))
    else:
        vp.write_bytes(payload)
    with pytest.raises(TableError, match=r"oof.views.npz: per-view probabilities are unreadable .*; delete the file"):
        read_table(path)


def test_missing_table_and_folder_without_oof(tmp_path):
    with pytest.raises(TableError, match="no such prediction table; give a CSV or a folder holding oof.csv"):
        read_table(tmp_path)
    with pytest.raises(TableError, match="folder holding test.csv"):
        read_table(tmp_path, kind="test")


def test_sidecar_classes_must_match_columns(tmp_path):
    path = write_csv_table(tmp_path / "oof.csv", ["1"], ["a", "b"], [[0.5, 0.5]])
    sidecar_path(path).write_text(json.dumps({"classes": ["b", "a"]}))
    with pytest.raises(ClassMismatchError, match=r'disagree with the sidecar\'s classes "b", "a"; rewrite the table or delete oof.json'):
        read_table(path)
    sidecar_path(path).write_text("{not json")
    with pytest.raises(TableError, match="sidecar is not valid JSON"):
        read_table(path)


def test_make_table_checks_shape(rng):
    with pytest.raises(TableError, match=r"table: probabilities have shape \(3, 2\), expected \(3, 3\)"):
        make_table(["1", "2", "3"], ["a", "b", "c"], random_probs(rng, 3, 2))


def test_write_refuses_to_overwrite_without_force(tmp_path, rng):
    t = make_table(["1"], ["a", "b"], random_probs(rng, 1, 2))
    path = write_table(t, tmp_path / "oof.csv")
    before = path.read_bytes()
    t2 = make_table(["1"], ["a", "b"], np.array([[0.1, 0.9]]))
    with pytest.raises(OutputExistsError, match=r"oof.(json|csv) exists; pass --force"):
        write_table(t2, path)
    assert path.read_bytes() == before
    write_table(t2, path, force=True)
    np.testing.assert_allclose(read_table(path).probs, [[0.1, 0.9]], rtol=1e-7)


def test_overwriting_a_table_with_views_by_one_without_drops_stale_views(tmp_path, rng):
    t = make_table(["1"], ["a", "b"], random_probs(rng, 1, 2), views={"hflip": random_probs(rng, 1, 2)})
    write_table(t, tmp_path / "oof.csv")
    write_table(make_table(["1"], ["a", "b"], random_probs(rng, 1, 2)), tmp_path / "oof.csv", force=True)
    assert not views_path(tmp_path / "oof.csv").exists()
    assert read_table(tmp_path / "oof.csv").views is None


def test_interrupted_write_leaves_nothing(tmp_path, rng, monkeypatch):
    t = make_table(["1", "2"], ["a", "b"], random_probs(rng, 2, 2), views={"hflip": random_probs(rng, 2, 2)})

    def boom(*args, **kwargs):
        raise KeyboardInterrupt  # the user hits Ctrl-C while the CSV is being written

    monkeypatch.setattr(pyarrow.csv, "write_csv", boom)
    with pytest.raises(KeyboardInterrupt):
        write_table(t, tmp_path / "out" / "oof.csv")
    assert sorted(os.listdir(tmp_path / "out")) == []


def test_interrupted_overwrite_keeps_the_old_table(tmp_path, rng, monkeypatch):
    old = make_table(["1"], ["a", "b"], np.array([[0.25, 0.75]]))
    path = write_table(old, tmp_path / "oof.csv")
    monkeypatch.setattr(pyarrow.csv, "write_csv", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        write_table(make_table(["1"], ["a", "b"], np.array([[0.5, 0.5]])), path, force=True)
    monkeypatch.undo()
    np.testing.assert_array_equal(read_table(path).probs, [[0.25, 0.75]])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["oof.csv", "oof.json"]


def test_align_reorders_rows_and_classes(rng):
    ids = np.array(["a", "b", "c", "d"], dtype=object)
    p = random_probs(rng, 4, 3)
    ref = make_table(ids, ["x", "y", "z"], p)
    perm = np.array([2, 0, 3, 1])
    other = make_table(ids[perm], ["z", "x", "y"], p[perm][:, [2, 0, 1]])
    a, b = align([ref, other])
    assert list(b.ids) == list(ids) and b.classes == ["x", "y", "z"]
    np.testing.assert_array_equal(b.probs, p)


def test_align_error_lists_a_few_ids_and_counts(rng):
    ref_ids = [f"{i:05d}" for i in range(20)]
    ref = make_table(ref_ids, ["x", "y"], random_probs(rng, 20, 2))
    other = make_table(ref_ids[:12] + ["zz1", "zz2"], ["x", "y"], random_probs(rng, 14, 2))
    with pytest.raises(AlignmentError) as exc:
        align([ref, other])
    msg = str(exc.value)
    assert '8 ids of table \'table\' are missing ("00012", "00013", "00014", "00015", "00016" and 3 more (8 in all))' in msg
    assert '2 ids are not in' in msg and '"zz1", "zz2"' in msg
    assert msg.endswith("predict on exactly the rows of table 'table'")


def test_class_mismatch_between_tables(rng):
    a = make_table(["1"], ["x", "y"], random_probs(rng, 1, 2))
    b = make_table(["1"], ["x", "w"], random_probs(rng, 1, 2))
    with pytest.raises(ClassMismatchError, match=r'classes differ from the reference \(lacks "y" and has extra "w"\)'):
        conform_classes([a, b])


def test_public_api_names_resolve():
    assert callable(ensemble.read_table) and callable(ensemble.write_table)
    assert ensemble.__version__
    with pytest.raises(AttributeError):
        ensemble.no_such_name  # noqa: B018


def test_a_class_named_id_is_refused_it_would_read_back_as_a_second_id_column(tmp_path):
    import numpy as np

    from ensemble.errors import TableError
    from ensemble.tables import make_table, read_table

    with pytest.raises(TableError, match="a class is named 'id', like the id column; rename that class"):
        make_table(["a"], ["id", "b"], np.array([[0.5, 0.5]]))
    (tmp_path / "t.csv").write_text("id,id,b\nx,0.0,1.0\n")
    with pytest.raises(TableError, match="a class is named 'id'|appears twice"):
        read_table(tmp_path / "t.csv")


def test_tables_built_in_memory_refuse_repeated_classes():
    import numpy as np

    from ensemble.errors import TableError
    from ensemble.tables import make_table

    with pytest.raises(TableError, match=r'class column\(s\) "a" appear twice; rename them'):
        make_table(["x"], ["a", "a"], np.array([[0.5, 0.5]]))


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def start(self, description: str, total: int | None) -> None:
        self.calls.append(("start", total))

    def advance(self, n: int = 1) -> None:
        self.calls.append(("advance", n))

    def stop(self) -> None:
        self.calls.append(("stop",))


def test_read_tables_reads_each_in_order_and_reports_large_reads(rng, tmp_path, monkeypatch):
    from ensemble import tables

    paths = []
    for k in range(3):
        write_table(make_table([f"{i:03d}" for i in range(20)], ["a", "b"], random_probs(rng, 20, 2)), tmp_path / f"m{k}" / "oof.csv")
        paths.append(tmp_path / f"m{k}")
    small = _Recorder()
    got = tables.read_tables(paths, kind="oof", progress=small)
    assert small.calls == []  # a few KB: no bar
    for t, p in zip(got, paths):
        np.testing.assert_array_equal(t.probs, read_table(p).probs)
    monkeypatch.setattr(tables, "_PROGRESS_BYTES", 0)
    large = _Recorder()
    tables.read_tables(paths, kind="oof", progress=large)
    assert large.calls == [("start", 3), ("advance", 1), ("advance", 1), ("advance", 1), ("stop",)]
    with pytest.raises(TableError, match="no such prediction table"):
        tables.read_tables([tmp_path / "nowhere.csv"], progress=large)


def test_read_tables_shares_the_ids_of_tables_that_hold_the_same_ones(rng, tmp_path):
    from ensemble import tables

    ids = [f"{i:03d}" for i in range(30)]
    orders = {"a": ids, "b": ids, "c": ids[::-1], "d": ids}  # c: the same ids in another order
    for name, order in orders.items():
        write_table(make_table(order, ["x", "y"], random_probs(rng, 30, 2)), tmp_path / name / "oof.csv")
    got = tables.read_tables([tmp_path / n for n in orders])
    assert got[1].ids is got[0].ids and got[2].ids is not got[1].ids and got[3].ids is not got[0].ids
    for t, order in zip(got, orders.values()):
        assert t.ids.tolist() == order
        np.testing.assert_array_equal(t.probs, read_table(t.path).probs)


def test_read_tables_can_read_into_one_stack_of_members(rng, tmp_path):
    from ensemble import tables

    ids = [f"{i:03d}" for i in range(25)]
    for name in "abc":
        write_table(make_table(ids, ["x", "y", "z"], random_probs(rng, 25, 3)), tmp_path / name / "oof.csv")
    write_table(make_table(ids[:10], ["x", "y", "z"], random_probs(rng, 10, 3)), tmp_path / "short" / "oof.csv")
    got = tables.read_tables([tmp_path / n for n in "abc"], stack=True)
    base = tables.stacked_probs(got)
    assert base is not None and base.shape == (25, 3, 3) and base.dtype == np.float32
    for i, t in enumerate(got):
        np.testing.assert_array_equal(t.probs, read_table(t.path).probs)
        assert np.shares_memory(t.probs, base[:, i])
    assert tables.stacked_probs(got[1:]) is None and tables.stacked_probs(got[::-1]) is None
    assert tables.stacked_probs(tables.read_tables([tmp_path / n for n in "abc"])) is None  # each its own array
    mixed = tables.read_tables([tmp_path / n for n in ("a", "short", "b")], stack=True)  # a table of another shape
    assert tables.stacked_probs(mixed) is None
    for t in mixed:
        np.testing.assert_array_equal(t.probs, read_table(t.path).probs)


def test_file_sha256_is_the_files_bytes_and_follows_a_rewrite(tmp_path):
    import hashlib

    p = write_table(make_table(["a", "b"], ["x", "y"], np.array([[0.25, 0.75], [0.5, 0.5]], np.float32)), tmp_path / "t.csv")
    t = read_table(p)
    assert t.file_sha256() == hashlib.sha256(p.read_bytes()).hexdigest()
    assert t.file_sha256() == hashlib.sha256(p.read_bytes()).hexdigest()  # kept, the same
    p.write_text(p.read_text() + "c,0.125,0.875\n")
    assert t.file_sha256() == hashlib.sha256(p.read_bytes()).hexdigest()  # the file changed: hashed again
    assert make_table(["a"], ["x"], np.ones((1, 1), np.float32)).file_sha256() is None
