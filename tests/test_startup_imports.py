"""Start-up stays light: loading the URL conf (every web process) and `manage.py check` (every management
command loads the apps; check also loads the URL conf) import neither torch nor scikit-learn nor
statsmodels. They cost ~2.5 s and ~240 MB per process; the modules that need them import them inside
the functions that fit or infer (each such import says why)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "sklearn", "statsmodels")

# Prints the heavy modules loaded after the code before it ran, one line.
REPORT = f"import sys; print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"


def _run(code: str) -> str:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("HEAVY=")]
    assert len(lines) == 1, result.stdout + result.stderr
    return lines[0].removeprefix("HEAVY=")


def test_loading_the_url_conf_imports_no_torch_sklearn_or_statsmodels():
    heavy = _run(
        "import django; django.setup(); from django.urls import resolve; import config.urls; resolve('/'); " + REPORT
    )
    assert heavy == "", f"loading the URL conf imported {heavy}"


def test_manage_py_check_imports_no_torch_sklearn_or_statsmodels():
    heavy = _run(
        "from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check']); " + REPORT
    )
    assert heavy == "", f"manage.py check imported {heavy}"
