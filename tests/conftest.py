"""The shared cast (researcher, collaborator, outsider, staff) and the release data in small and full size."""

import tempfile
from pathlib import Path

import pandas as pd
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from hypothesis import settings as hypothesis_settings
from hypothesis.configuration import set_hypothesis_home_dir

from annotation.importers import pluriharms_import

RELEASE_DIR = Path(settings.BASE_DIR) / "benchmark" / "datasets" / "pluriharms"

# Property-based tests: no example database and Hypothesis's own caches in the temporary folder
# (nothing written to a .hypothesis folder in the tree); no per-example deadline (a first example
# pays for imports and the database).
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "pluriharms-hypothesis")
hypothesis_settings.register_profile("pluriharms", database=None, deadline=None, print_blob=True)
hypothesis_settings.load_profile("pluriharms")


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _own_cache(settings, request):
    """Each test its own empty cache, so that counters (the recruitment link's per-client limit) never
    carry over between tests, and no test touches a Redis that Celery also uses. The project's own
    CACHES is tested in tests/annotation/test_recruitment_rate_limit.py."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"test-{request.node.nodeid}",
        }
    }


@pytest.fixture
def researcher(db):
    return get_user_model().objects.create_user("researcher", password="pw-researcher-1")


@pytest.fixture
def outsider(db):
    return get_user_model().objects.create_user("outsider", password="pw-outsider-1")


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user("staffer", password="pw-staff-1", is_staff=True, is_superuser=True)


@pytest.fixture
def release_dir() -> Path:
    return RELEASE_DIR


def write_small_release(directory: Path, n_prompts: int = 5, n_annotators: int = 4) -> Path:
    """A slice of the real release (first prompts and participants) in the same format."""
    directory.mkdir(parents=True, exist_ok=True)
    prompts = pd.read_csv(RELEASE_DIR / "prompts.csv", dtype=str, keep_default_na=False)
    annotations = pd.read_csv(RELEASE_DIR / "annotations.csv", dtype=str, keep_default_na=False)
    keep = prompts["Question_Index"].head(n_prompts).tolist()
    prompts.head(n_prompts).to_csv(directory / "prompts.csv", index=False)
    columns = [c for c in annotations.columns if not c.startswith(("Rating_", "Trial_")) or c.split("_", 1)[1] in keep]
    annotations[columns].head(n_annotators).to_csv(directory / "annotations.csv", index=False)
    return directory


@pytest.fixture
def small_release(tmp_path) -> Path:
    return write_small_release(tmp_path / "small")


@pytest.fixture
def small_study(db, small_release, researcher):
    return pluriharms_import(directory=small_release, slug="small", owner=researcher)


@pytest.fixture
def release_study(db, researcher):
    return pluriharms_import(directory=RELEASE_DIR, slug="pluriharms", owner=researcher)


@pytest.fixture
def replace_job_handler(monkeypatch):
    """Swap a registered job kind's handler for the length of a test: replace("export", fn)."""
    import dataclasses

    from jobs import registry

    def replace(kind: str, handler):
        monkeypatch.setitem(registry._KINDS, kind, dataclasses.replace(registry.kind_get(kind), handler=handler))

    return replace
