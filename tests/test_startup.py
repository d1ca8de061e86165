"""Start-up work: `import ensemble` and the CLI app load no heavy library; commands load on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ensemble.cli.app import COMMANDS, SUMMARIES, _load_command

HEAVY = ("torch", "timm", "torchvision", "numba", "sklearn", "onnxruntime", "matplotlib", "pyarrow")


def _loaded_after(code: str) -> set[str]:
    """Top-level packages a fresh interpreter holds after running `code`."""
    probe = f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("code", ["import ensemble", "import ensemble.cli"])
def test_importing_the_package_and_the_cli_loads_no_heavy_library(code):
    assert _loaded_after(code).isdisjoint(HEAVY + ("numpy", "pandas"))


def test_reading_a_table_loads_no_torch(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,a,b\n1,0.5,0.5\n")
    loaded = _loaded_after(f"import ensemble; ensemble.read_table({str(path)!r})")
    assert "pyarrow" in loaded and loaded.isdisjoint({"torch", "timm", "numba", "sklearn"})


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_listed_command_loads_under_its_name(name):
    assert _load_command(name).name == name


def test_the_blend_command_module_loads_no_numba_pandas_or_sklearn():
    # the kernels (numba) load when a blend runs, not when `ens --help` lists the command
    assert _loaded_after("import ensemble.cli.blend").isdisjoint({"numba", "pandas", "sklearn", "torch"})


def test_the_metrics_package_loads_its_names_lazily():
    assert "numba" not in _loaded_after("import ensemble.metrics.base")
    assert "numba" in _loaded_after("from ensemble.metrics import macro_f1")


def test_loading_every_command_for_help_leaves_the_file_machinery_unloaded():
    # `ens --help` loads every command module for its choices; atomic writes and hashing wait for a write
    probe = (
        "from ensemble.cli.app import COMMANDS, SUMMARIES, _load_command\n"
        "[_load_command(n) for n in COMMANDS]\n"
        "import sys\nprint('ensemble._io' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_help_summary_of_each_command_is_its_own_first_paragraph(name):
    import inspect

    own = inspect.cleandoc(_load_command(name).help or "").split("\n\n")[0]
    assert SUMMARIES[name] == " ".join(own.split())


def test_ens_help_lists_every_command_without_loading_their_modules():
    probe = (
        "import sys\nfrom typer.testing import CliRunner\nfrom ensemble.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "print(r.exit_code, sorted(m for m in sys.modules if m.startswith('ensemble.cli.') and m not in "
        "('ensemble.cli.app', 'ensemble.cli._render')))\nprint(r.stdout)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    first, listing = out.split("\n", 1)
    assert first == "0 []"
    for name in COMMANDS:
        assert f" {name} " in listing
