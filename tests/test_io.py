"""The shared readers and writers of `ensemble._io`: CSV shape checks and the one output rule for paths."""

from __future__ import annotations

import os
import stat

import pandas as pd
import pytest

from ensemble._io import atomic_outputs, check_writable, read_string_csv, write_json
from ensemble.errors import LabelError, OutputError, OutputExistsError
from ensemble.labels import read_labels


@pytest.mark.parametrize(
    "content, message",
    [
        pytest.param("id,label\n1,a,extra\n", r"row 1 \(line 2\) has 3 fields, the header has 2",
                     id="long_first_row_takes_first_field_as_index"),
        pytest.param("id,label\n1,a\n2,b,extra\n", r"row 2 \(line 3\) has 3 fields, the header has 2",
                     id="long_row_is_a_parser_error"),
        pytest.param("id,label\n1,a\n\n2\n", r"row 2 \(line 4\) has 1 fields, the header has 2",
                     id="short_row_padded_silently"),
        pytest.param("id,label,fold\n1,a,0,\n2,b,1,\n", r"every row ends with a trailing comma",
                     id="trailing_comma_reported_as_bad_fold_column"),
        pytest.param("id,label,fold,\n1,a,0,\n2,b,1,\n", r"every row ends with a trailing comma",
                     id="trailing_comma_on_header_too"),
        pytest.param("id,label\n", r"no rows \(only a header\); give a CSV with one row per sample",
                     id="header_only_passes"),
        pytest.param("", r"not a readable CSV \(the file is empty\)", id="empty_file"),
        pytest.param(b"id,label\n1,caf\xe9\n", r"not a readable CSV .*; save it as UTF-8 CSV", id="latin1_bytes"),
    ],
)
def test_string_csv_shape_errors_name_the_file(tmp_path, content, message):
    p = tmp_path / "train.csv"
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(LabelError, match=message) as exc:
        read_string_csv(p, LabelError, missing="no such file")
    assert str(exc.value).startswith(f"{p}: ") and "\n" not in str(exc.value)
    with pytest.raises(LabelError, match=message):  # the labels reader gets it for free
        read_labels(p, require=())


def test_header_only_allowed_on_request_and_bom_accepted(tmp_path):
    p = tmp_path / "s.csv"
    p.write_bytes("\ufeffid,label\n".encode())
    assert list(read_string_csv(p, LabelError, missing="x", allow_empty=True).columns) == ["id", "label"]
    p.write_bytes("\ufeffid,label\n007,NA\n".encode())
    df = read_string_csv(p, LabelError, missing="x")
    pd.testing.assert_frame_equal(df, pd.DataFrame({"id": ["007"], "label": ["NA"]}), check_dtype=False)


def test_unnamed_index_column_of_to_csv_is_still_accepted(tmp_path):
    p = tmp_path / "train.csv"
    pd.DataFrame({"id": ["a", "b"], "label": ["x", "y"]}).to_csv(p)  # index written, header cell empty
    assert read_labels(p).ids.tolist() == ["a", "b"]


def test_path_under_a_regular_file_is_refused_before_work(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    target = tmp_path / "file.txt" / "sub" / "out.csv"
    with pytest.raises(OutputError, match=r"cannot write .*out.csv: .*file.txt is a file, not a folder; choose another output path"):
        check_writable([target], force=True)


def test_existing_folder_where_a_file_goes_is_refused_even_with_force(tmp_path):
    (tmp_path / "out.json").mkdir()
    with pytest.raises(OutputError, match=r"out.json: it is a folder, not a file"):
        check_writable([tmp_path / "out.json"], force=True)


def test_existing_file_still_needs_force(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="a.json exists; pass --force"):
        check_writable([tmp_path / "a.json"], force=False)
    check_writable([tmp_path / "a.json"], force=True)


def test_proc_does_not_accept_files():
    if not os.path.isdir("/proc/self"):
        pytest.skip("no /proc here")
    with pytest.raises(OutputError, match=r"cannot write /proc/self/x/out.csv: /proc/self does not accept new files \("):
        check_writable(["/proc/self/x/out.csv"], force=True)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_says_permission_denied(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(OutputError, match=r"cannot write .*out.json: .*ro does not accept new files \(permission denied\)"):
            write_json(ro / "out.json", {})
    finally:
        ro.chmod(stat.S_IRWXU)


def test_os_error_while_writing_a_temporary_names_the_output(tmp_path):
    out = tmp_path / "out.txt"
    with pytest.raises(OutputError, match=r"cannot write .*out.txt: no such file or directory"):
        with atomic_outputs([out]) as (tmp,):
            raise FileNotFoundError(2, "No such file or directory", str(tmp))
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_other_os_errors_in_the_block_pass_through(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_outputs([tmp_path / "out.txt"]):
            open(tmp_path / "missing-input.csv")


def test_a_header_naming_a_column_twice_is_refused_not_renamed(tmp_path):
    from ensemble._io import read_string_csv
    from ensemble.errors import LabelError

    (tmp_path / "l.csv").write_text("id,id,label\n1,2,a\n")
    with pytest.raises(LabelError, match="column 'id' appears twice in the header; give every column its own name"):
        read_string_csv(tmp_path / "l.csv", LabelError, missing="no such file")
