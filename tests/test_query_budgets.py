"""Query budgets for the busiest pages: a fixed number of queries, whatever the amount of data behind
them, so that an N+1 (one query per job card, per annotator, per artifact…) cannot come back unnoticed.

Each budget is the count measured when it was set; a page that needs one more query for a good
reason raises its budget here, in review.
"""

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.models import Study
from jobs.models import Job, JobArtifact
from jobs.services import job_create, job_run
from tests.annotation.test_take_flow import current, start_rating, submit
from tests.annotation.test_take_flow import study as take_study  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db


def count(call) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as queries:
        response = call()
    return len(queries.captured_queries), response


def session_read_queries() -> int:
    return 0 if settings.SESSION_ENGINE == "config.sessions" else 1


def _jobs(study, n: int) -> None:
    for i in range(n):
        job = Job.objects.create(kind="export", study=study, params={"format": "jsonl"}, status=Job.Status.SUCCEEDED)
        for name in ("ratings.jsonl", "manifest.json"):
            JobArtifact.objects.create(job=job, name=name, file=f"jobs/{job.pk}/{name}", size=10 + i)


def test_rating_card_and_submit(client, take_study):  # noqa: F811
    annotator = start_rating(client, take_study)
    card = reverse("take:rate", args=[take_study.slug])
    first_card, response = count(lambda: client.get(card))
    assert response.status_code == 200
    first_submit, response = count(lambda: submit(client, take_study, current(annotator)))
    assert response.status_code == 200
    submit(client, take_study, current(annotator))
    later_card, _ = count(lambda: client.get(card))
    later_submit, _ = count(lambda: submit(client, take_study, current(annotator)))
    assert first_card <= 6 and later_card <= 6
    assert first_submit == later_submit <= 16


@pytest.mark.parametrize("n_jobs", [1, 8])
def test_study_page(client, researcher, small_study, n_jobs):
    _jobs(small_study, n_jobs)
    client.force_login(researcher)
    n, response = count(lambda: client.get(reverse("annotation:study_detail", args=["small"])))
    assert response.status_code == 200 and response.content.count(b'class="job-card') == n_jobs
    # The same for 1 and 8 jobs: jobs and their files are two queries, not one per card.  The session
    # is one query more when it is read from its table rather than from Redis (config.sessions). The
    # rating counters are the prompts and one query for their tallies when nothing is cached (here),
    # the prompts alone when it is (annotation.selectors.rating_tallies).
    assert n == 11 + session_read_queries(), n
    warm, _ = count(lambda: client.get(reverse("annotation:study_detail", args=["small"])))
    assert warm == n - 1, (warm, n)


@pytest.mark.parametrize("n_jobs", [1, 8])
def test_jobs_api_list(researcher, small_study, n_jobs):
    _jobs(small_study, n_jobs)
    api = APIClient()
    api.force_authenticate(researcher)
    n, response = count(lambda: api.get("/api/jobs/"))
    assert response.status_code == 200 and response.json()["count"] == n_jobs
    assert all("result" not in job for job in response.json()["results"])  # the list does not inline results
    assert n <= 4, n


@pytest.fixture
def analysed(small_study):
    job = job_create(kind="analysis", study=small_study, params={"mixed_effects": False, "n_boot": 20})
    assert job_run(job_id=job.pk).status == "succeeded"
    return small_study


def test_agreement_dashboard(client, researcher, analysed, release_study):
    client.force_login(researcher)
    n_small, response = count(lambda: client.get(reverse("benchmark:agreement", args=["small"])))
    assert response.status_code == 200
    job = job_create(kind="analysis", study=release_study, params={"mixed_effects": False, "n_boot": 10})
    assert job_run(job_id=job.pk).status == "succeeded"
    n_release, response = count(lambda: client.get(reverse("benchmark:agreement", args=["pluriharms"])))
    assert response.status_code == 200
    assert n_small == n_release <= 6, (n_small, n_release)


def test_participants_table_does_not_grow_with_participants(client, researcher, small_study, release_study):
    # 4 annotators and 100: the participants download costs the same queries (it reads the report).
    client.force_login(researcher)
    counts = []
    for study in (small_study, release_study):
        job = job_create(kind="analysis", study=study, params={"mixed_effects": False, "n_boot": 10})
        assert job_run(job_id=job.pk).status == "succeeded"
        url = reverse("benchmark:agreement_csv", args=[study.slug, "annotators"])
        n, response = count(lambda url=url: client.get(url))
        assert response.status_code == 200
        counts.append(n)
    assert counts[0] == counts[1] <= 6, counts


def test_study_list_does_not_grow_with_studies(client, researcher, small_study):
    for i in range(5):
        Study.objects.create(slug=f"more-{i}", title="more", owner=researcher)
    client.force_login(researcher)
    n, response = count(lambda: client.get(reverse("annotation:study_list")))
    assert response.status_code == 200
    assert n <= 4, n


def test_participants_page_and_api_do_not_grow_with_annotators(client, researcher, small_study, release_study):
    # 4 annotators × 5 prompts and 100 × 150: the same queries for the page, its CSV and the API list
    # (annotation.participants.participants_table reads the study in five, the last the latent-state summary).
    client.force_login(researcher)
    api = APIClient()
    api.force_authenticate(researcher)
    counts = {}
    for study in (small_study, release_study):
        page, response = count(lambda s=study: client.get(reverse("annotation:participants", args=[s.slug])))
        assert response.status_code == 200
        download, response = count(lambda s=study: client.get(reverse("annotation:participants_csv", args=[s.slug])))
        assert response.status_code == 200
        listed, response = count(lambda s=study: api.get(f"/api/studies/{s.slug}/annotators/"))
        assert response.status_code == 200
        counts[study.slug] = (page, download, listed)
    assert counts["small"] == counts["pluriharms"], counts
    page, download, listed = counts["small"]
    assert page <= 7 and download <= 7 and listed <= 5, counts
