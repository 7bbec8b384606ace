"""The five pages of a study at scale (issue 14) cost the same queries for 4 annotators × 5 prompts as for
100 × 150, with nothing cached (the first request after a write) and from the cache; from the cache they
never read the ratings."""

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from jobs.services import job_create, job_run

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _roomy_cache(settings, request):
    """LocMemCache keeps 300 entries by default; a 150-prompt study's tallies and versions are 300 alone
    (Redis and the database cache of settings.py hold far more)."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"roomy-{request.node.nodeid}",
            "OPTIONS": {"MAX_ENTRIES": 10_000},
        }
    }


PAGES = {
    "study page": ("annotation:study_detail", False),
    "collection dashboard": ("benchmark:overview", False),
    "agreement dashboard": ("benchmark:agreement", False),
    "participants table": ("annotation:participants", False),
    "prompt page": ("benchmark:prompt_detail", True),
}


def _queries(client, url) -> tuple[int, list[str]]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries.captured_queries), [q["sql"] for q in queries.captured_queries]


def _reads_ratings(sqls: list[str]) -> bool:
    return any('FROM "annotation_rating"' in sql or "FROM annotation_rating" in sql for sql in sqls)


@pytest.mark.parametrize("page", PAGES)
def test_page_queries_do_not_grow_with_the_study(client, researcher, small_study, release_study, page):
    client.force_login(researcher)
    name, per_prompt = PAGES[page]
    counts = {}
    for study in (small_study, release_study):
        job = job_create(kind="analysis", study=study, params={"mixed_effects": False, "n_boot": 10})
        assert job_run(job_id=job.pk).status == "succeeded"
        args = [study.slug]
        if per_prompt:
            args.append(study.prompts.order_by("order", "id").first().external_id)
        url = reverse(name, args=args)
        client.get(url)  # the session and the user, read once
        cache.clear()
        cold, _ = _queries(client, url)
        warm, sqls = _queries(client, url)
        assert not _reads_ratings(sqls), (page, sqls)
        counts[study.slug] = (cold, warm)
    assert counts["small"] == counts["pluriharms"], (page, counts)
