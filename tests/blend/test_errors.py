"""Every user error of `ensemble.blend` that the CLI cannot reach (or reaches only through other
checks first): the library call raises one `EnsembleError` whose text says what and the fix."""

from __future__ import annotations

import dataclasses

import pytest

from ensemble.blend import blend
from ensemble.blend.folders import read_members
from ensemble.blend.write import write_blend
from ensemble.errors import AlignmentError, ConfigError, OutputError


@pytest.fixture
def fitted(small_tables):
    oof, test, lab, _, _ = small_tables
    return blend(oof, lab, method="soft", test_tables=test, nested=False, n_boot=10)


def test_options_given_twice_are_refused(small_tables):
    from ensemble.blend.core import BlendOptions

    oof, _, lab, _, _ = small_tables
    with pytest.raises(ConfigError, match="give the options as `options` or as keywords, not both"):
        blend(oof, lab, options=BlendOptions("soft"), method="hard")


def test_no_members_is_refused(small_tables):
    _, _, lab, _, _ = small_tables
    with pytest.raises(ConfigError, match="no members to blend; give at least one prediction folder"):
        blend([], lab, method="soft")


def test_no_prediction_folders_is_refused():
    with pytest.raises(ConfigError, match="no prediction folders given; pass the folders holding oof.csv"):
        read_members([])


def test_test_tables_must_match_the_members_in_number(small_tables):
    oof, test, lab, _, _ = small_tables
    with pytest.raises(ConfigError, match="test tables for 6 members; give one test table per member"):
        blend(oof, lab, method="soft", test_tables=test[:2], nested=False)


def test_test_tables_must_match_the_members_in_order(small_tables):
    oof, test, lab, _, _ = small_tables
    with pytest.raises(ConfigError, match="but its OOF table is 'model00'; give them in the same order"):
        blend(oof, lab, method="soft", test_tables=test[::-1], nested=False)


def test_zero_bootstrap_resamples_are_refused(small_tables):
    oof, _, lab, _, _ = small_tables
    with pytest.raises(ConfigError, match=": give at least 1 bootstrap resample"):
        blend(oof, lab, method="soft", n_boot=0)


def test_members_sharing_a_name_are_refused(small_tables):
    oof, _, lab, _, _ = small_tables
    twin = dataclasses.replace(oof[1], meta={**oof[1].meta, "model": oof[0].name})
    with pytest.raises(ConfigError, match="each member needs its own model name"):
        blend([oof[0], twin], lab, method="soft", nested=False)


def test_members_made_on_folds_the_labels_lack_are_refused(small_tables):
    oof, _, lab, _, _ = small_tables
    for t in oof:
        t.meta["folds"] = [*t.meta["folds"], 99]
    with pytest.raises(AlignmentError, match="does not have; give the labels CSV whose fold column the models"):
        blend(oof, lab, method="soft", nested=False)


def test_an_unwritable_staging_folder_names_the_blend_folder(fitted, tmp_path, monkeypatch):
    def no_room(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("ensemble.blend.write.tempfile.mkdtemp", no_room)
    with pytest.raises(OutputError, match=r"cannot write .*: Permission denied; choose another --out"):
        write_blend(fitted, tmp_path / "b")


def test_a_failed_commit_names_the_file_and_restores_the_folder(fitted, tmp_path):
    def fails(finals):
        raise OSError(28, "No space left on device", str(finals["recipe"]))

    with pytest.raises(OutputError, match="No space left on device; choose another output path"):
        write_blend(fitted, tmp_path / "b", after_commit=fails)
    assert not (tmp_path / "b" / "recipe.json").exists()
