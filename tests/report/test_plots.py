from __future__ import annotations

import matplotlib.image
import pytest

import ensemble
from ensemble.errors import OutputExistsError
from ensemble.labels import read_labels
from ensemble.report.plots import PLOTS, write_plots
from tests.report.test_core import CLASSES, synthetic

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def report(tmp_path):
    labels, _, _ = synthetic(tmp_path, n=200)
    tables = [ensemble.read_table(tmp_path / "preds" / m) for m in ("solo", "f_s1", "f_s2")]
    return ensemble.oof_report(read_labels(labels, classes=CLASSES), tables, n_boot=0)


def test_writes_four_valid_pngs(tmp_path, report):
    paths = write_plots(report, tmp_path / "plots")
    assert [p.name for p in paths] == list(PLOTS)
    for p in paths:
        assert p.read_bytes()[:8] == PNG_MAGIC
        img = matplotlib.image.imread(p)  # decodes: a truncated file would raise
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
        assert img[..., :3].std() > 0.01  # not a blank canvas
    assert sorted(x.name for x in (tmp_path / "plots").iterdir()) == sorted(PLOTS)  # no temporaries left


def test_existing_pngs_are_kept_without_force(tmp_path, report):
    out = tmp_path / "plots"
    out.mkdir()
    (out / "correlation.png").write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="correlation.png exists; pass --force"):
        write_plots(report, out)
    assert sorted(x.name for x in out.iterdir()) == ["correlation.png"]  # nothing partial
    assert (out / "correlation.png").read_bytes() == b"old"
    write_plots(report, out, force=True)
    assert (out / "correlation.png").read_bytes()[:8] == PNG_MAGIC
