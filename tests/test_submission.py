from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ensemble import make_table
from ensemble.errors import ConfigError, LabelError, OutputExistsError, TableError, UnknownNameError
from ensemble.submission import TARGET_FORMATS, SubmissionFormat, TargetFormat, read_submission, write_submission


@pytest.fixture
def table():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]])
    return make_table(["003", "001", "002"], ["cat", "dog", "fox"], probs)


def test_names_and_indices_in_the_competition_columns(tmp_path, table):
    write_submission(table, tmp_path / "a.csv", SubmissionFormat("image_id", "breed", "name"))
    a = pd.read_csv(tmp_path / "a.csv", dtype=str)
    assert list(a.columns) == ["image_id", "breed"]
    assert a.values.tolist() == [["003", "cat"], ["001", "fox"], ["002", "dog"]]  # argmax, ids as strings
    write_submission(table, tmp_path / "b.csv", SubmissionFormat(target_format="index"))
    assert pd.read_csv(tmp_path / "b.csv", dtype=str)["label"].tolist() == ["0", "2", "1"]


def test_read_back_sorted_by_id(tmp_path, table):
    fmt = SubmissionFormat("image_id", "breed")
    write_submission(table, tmp_path / "a.csv", fmt)
    back = read_submission(tmp_path / "a.csv", fmt)
    assert back.values.tolist() == [["001", "fox"], ["002", "dog"], ["003", "cat"]]


def test_refuses_to_overwrite_without_force(tmp_path, table):
    write_submission(table, tmp_path / "a.csv")
    with pytest.raises(OutputExistsError, match="a.csv exists; pass --force"):
        write_submission(table, tmp_path / "a.csv")
    write_submission(table, tmp_path / "a.csv", force=True)


def test_format_errors():
    with pytest.raises(UnknownNameError, match="unknown target format 'label'; choose one of: name, index"):
        SubmissionFormat(target_format="label")
    with pytest.raises(ConfigError, match="--submission-id-col and --target-col are both 'id'; give two different column names"):
        SubmissionFormat("id", "id")


@pytest.mark.parametrize(
    "content, message",
    [
        ("id,target\n1,cat\n", r"no column 'label' \(columns: id, target\); name it with --target-col"),
        ("image,label\n1,cat\n", r"no column 'id' .*; name it with --submission-id-col"),
        ("id,label\n1,\n", r"1 rows have an empty 'label'; every id needs a prediction"),
        ("", r"not a readable CSV"),
    ],
)
def test_read_errors(tmp_path, content, message):
    (tmp_path / "s.csv").write_text(content)
    with pytest.raises(LabelError, match=message):
        read_submission(tmp_path / "s.csv")
    with pytest.raises(LabelError, match="no such submission file; give the CSV you would upload"):
        read_submission(tmp_path / "none.csv")


def test_target_format_enum_is_the_one_list_of_choices():
    assert TARGET_FORMATS == tuple(f.value for f in TargetFormat) == ("name", "index", "probs", "labels")
    assert SubmissionFormat(target_format=TargetFormat.INDEX) == SubmissionFormat(target_format="index")
    assert SubmissionFormat(target_format=TargetFormat.INDEX).target_format == "index"


@pytest.mark.parametrize(
    "content, message",
    [
        pytest.param("id,label\n1,a,extra\n", r"row 1 \(line 2\) has 3 fields, the header has 2",
                     id="ragged_row_shifts_columns_id_a_label_extra"),
        pytest.param("id,label\n1,a\n2\n", r"row 2 \(line 3\) has 1 fields, the header has 2",
                     id="short_row_padded_with_empty_cell"),
        pytest.param("id,label\n1,a,\n2,b,\n", r"every row ends with a trailing comma",
                     id="trailing_comma_reported_as_duplicate_ids"),
        pytest.param("id,label\n", r"no rows \(only a header\)", id="header_only_file_records_an_empty_submission"),
    ],
)
def test_malformed_submission_is_one_line_naming_the_file(tmp_path, content, message):
    (tmp_path / "s.csv").write_text(content)
    with pytest.raises(LabelError, match=message) as exc:
        read_submission(tmp_path / "s.csv")
    assert "s.csv: " in str(exc.value) and "\n" not in str(exc.value)


def test_duplicate_ids_are_the_table_checker_s_error(tmp_path):
    (tmp_path / "s.csv").write_text("id,label\n1,cat\n1,dog\n")
    with pytest.raises(TableError, match=r's.csv: duplicate ids "1"; each id must appear once'):
        read_submission(tmp_path / "s.csv")


def test_probability_submissions_are_written_losslessly_and_read_as_decisions(tmp_path):
    import numpy as np

    from ensemble.errors import LabelError
    from ensemble.submission import SubmissionFormat, read_submission, write_submission
    from ensemble.tables import make_table

    probs = np.array([[0.2, 0.8], [0.7, 0.3], [0.123456789, 0.876543211]], dtype=np.float32)
    t = make_table(["b", "a", "c"], ["cat", "dog"], probs)
    fmt = SubmissionFormat("image_id", "label", "probs")
    write_submission(t, tmp_path / "s.csv", fmt)
    import pandas as pd

    df = pd.read_csv(tmp_path / "s.csv", dtype={"image_id": str})
    assert list(df.columns) == ["image_id", "cat", "dog"] and np.array_equal(df[["cat", "dog"]].to_numpy(np.float32), probs)
    read = read_submission(tmp_path / "s.csv", fmt)
    assert read["id"].tolist() == ["a", "b", "c"] and read["target"].tolist() == ["cat", "dog", "dog"]
    assert read.attrs["digest"]
    (tmp_path / "bad.csv").write_text("image_id\na\n")
    with pytest.raises(LabelError, match="no probability columns beside 'image_id'; a probs submission has one column per class"):
        read_submission(tmp_path / "bad.csv", fmt)
    (tmp_path / "bad2.csv").write_text("image_id,cat,dog\na,0.5,x\n")
    with pytest.raises(LabelError, match="a probability column holds a non-number; a probs submission holds numbers only"):
        read_submission(tmp_path / "bad2.csv", fmt)
