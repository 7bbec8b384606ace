"""Project-level checks: migrations complete, deploy checks clean with production settings."""

import os
import subprocess
import sys
from pathlib import Path

from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent


def test_no_missing_migrations(db):
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_deploy_check_is_clean_with_production_values(tmp_path):
    env = {
        **{key: value for key, value in os.environ.items() if key not in {"PYTEST_VERSION", "PLURIHARMS_DEV"}},
        "DEBUG": "0",
        "SECRET_KEY": "a-long-random-production-secret-" + "k" * 40,
        "RECRUITMENT_HASH_KEY": "a-separate-recruitment-hash-key-" + "r" * 40,
        "ALLOWED_HOSTS": "pluriharms.example.org",
        "SECURE_SSL_REDIRECT": "1",
        "SECURE_HSTS_SECONDS": "31536000",
        "PLURIHARMS_VAR_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_no_machine_paths_in_repository():
    import re

    # Built from parts so that this file does not match itself.
    machine_path = re.compile(r"""(^|[ "'=:])/(""" + "wo" + "rk|fa" + "rm|ro" + r"""ot)/""", re.M)
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    offenders = []
    for name in tracked:
        path = ROOT / name
        if path.suffix in {".py", ".md", ".html", ".txt", ".yml", ".toml", ".cfg", ".ini", ""} and path.is_file():
            if machine_path.search(path.read_text(errors="ignore")):
                offenders.append(name)
    assert offenders == []
