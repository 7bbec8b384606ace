"""Concurrency on a real PostgreSQL: simultaneous arrivals and submissions, each on its own connection."""

import threading

import pytest
from django.db import connection

from annotation.models import Annotator, Assignment, Prompt, Rating, Study
from annotation.services.rating import rating_submit
from annotation.services.recruitment import (
    RecruitmentParams,
    annotator_consent,
    annotator_enter,
    instructions_complete,
)

pytestmark = pytest.mark.services


def run_together(functions):
    """Start every function at the same moment (a barrier), each in its own thread and connection."""
    barrier = threading.Barrier(len(functions))
    results, errors = [None] * len(functions), []

    def worker(i, fn):
        try:
            barrier.wait(timeout=10)
            results[i] = fn()
        except Exception as exc:  # collected and re-raised in the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, fn)) for i, fn in enumerate(functions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results, errors


def _study(**fields):
    study = Study.objects.create(slug="race", title="Race", status="recruiting", instruments=[], **fields)
    Prompt.objects.bulk_create([Prompt(study=study, external_id=str(i), text=f"p{i}", order=i) for i in range(6)])
    return study


def _arrive(study, i):
    annotator, _ = annotator_enter(study=study, params=RecruitmentParams(f"racer{i:019d}", "s", "t"))
    annotator_consent(annotator=annotator, agree=True)
    return instructions_complete(annotator=annotator)


def test_simultaneous_arrivals_never_overfill_a_prompt(postgres):
    study = _study(design="partial", prompts_per_annotator=3, target_ratings_per_prompt=1)
    results, errors = run_together([lambda i=i: _arrive(study, i) for i in range(6)])
    held = list(Assignment.objects.filter(annotator__study=study).values_list("prompt_id", flat=True))
    assert len(held) == len(set(held)) <= 6  # no prompt handed out twice
    admitted = Annotator.objects.filter(study=study, status="rating").count()
    assert admitted == 2 and len(held) == 6
    assert all("needs" in str(e) for e in errors)  # the rest were told the study is full
    pseudonyms = list(Annotator.objects.filter(study=study).values_list("pseudonym", flat=True))
    assert len(pseudonyms) == len(set(pseudonyms))


def test_simultaneous_double_submission_stores_one_rating(postgres):
    study = _study()
    annotator = _arrive(study, 0)
    assignment = annotator.assignments.order_by("position").first()
    results, errors = run_together(
        [
            lambda v=v: rating_submit(annotator=annotator, assignment_id=assignment.pk, raw_value=str(v), unsure=False)
            for v in (10, 90, 50, 70)
        ]
    )
    assert errors == []
    assert Rating.objects.filter(assignment=assignment).count() == 1
    assert sum(r.created for r in results) == 1
    stored = Rating.objects.get(assignment=assignment).value
    assert all(r.rating.value == stored for r in results)
