"""The import contracts hold the one-way structure (pyproject.toml, [tool.importlinter]); `make test`
runs lint-imports and ruff on the tree. These tests show that each contract catches what it is for:
a copy of the code with one deliberately wrong import must be refused, naming the broken contract."""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("annotation", "benchmark", "jobs", "config")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """The project's Python files (no data) and its pyproject.toml, in a scratch folder."""
    target = tmp_path_factory.mktemp("contracts")
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            target / package,
            ignore=lambda folder, names: [
                n
                for n in names
                if n in {"datasets", "__pycache__"} or (Path(folder, n).is_file() and not n.endswith(".py"))
            ],
        )
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")
    return target


def _lint(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=folder,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(folder), "PATH": str(Path(sys.executable).parent)},
    )


def test_the_scratch_copy_keeps_every_contract(scratch):
    result = _lint(scratch)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    "module,line,contract",
    [
        ("benchmark/science/agreement.py", "import django.db", "The science core is a pure library"),
        ("benchmark/science/protocol.py", "from benchmark import steering", "The science core is a pure library"),
        ("benchmark/science/report.py", "import django_filters", "The science core is a pure library"),
        ("annotation/models.py", "from benchmark import steering", "One-way layers"),
        ("annotation/services/rating.py", "import benchmark.jobs", "One-way layers"),
        ("jobs/models.py", "import annotation.models", "jobs imports no other app"),
        ("annotation/views/research.py", "from jobs import views", "Views do not import other apps' views"),
        ("benchmark/api.py", "from jobs import api", "Views do not import other apps' views"),
        ("config/errors.py", "import annotation.access", "Configuration below the apps"),
    ],
)
def test_a_wrong_import_is_caught(scratch, tmp_path, module, line, contract):
    copy = tmp_path / "tree"
    shutil.copytree(scratch, copy)
    path = copy / module
    path.write_text(path.read_text() + f"\n{line}  # deliberately wrong\n")
    result = _lint(copy)
    assert result.returncode != 0
    broken = [row for row in result.stdout.splitlines() if " BROKEN" in row]
    assert any(row.startswith(contract) for row in broken), result.stdout


def test_every_django_part_of_benchmark_is_forbidden_to_the_science_core():
    # The science contract lists benchmark's modules by name: a new module must be added to it.
    science = next(c for c in _config()["contracts"] if c["source_modules"] == ["benchmark.science"])
    modules = {
        p.stem if p.is_file() else p.name
        for p in (ROOT / "benchmark").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()
    }
    expected = {f"benchmark.{name}" for name in modules - {"science"}}
    assert expected - set(science["forbidden_modules"]) == set()
