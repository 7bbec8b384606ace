"""Which prompts an annotator rates, in which order, with attention checks mixed in.

Full crossing: every prompt. Partial: N prompts each, least-rated first, never more than the
target per prompt counting ratings given and slots held by active annotators. Slots of annotators
idle longer than the study's reservation time are released (they are marked returned), and so are
those of annotators who have not answered a single trial within settings.RECRUITMENT_START_MINUTES.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from ..models import Annotator, Assignment, Prompt, Rating, Study
from ..rows import columns_sql, instance
from ..study_cache import study_changed

CHECK_FRACTIONS = (0.1, 0.2, 0.3, 0.7, 0.8, 0.9)  # far from the midpoint, as Prolific asks


def attention_check_values(*, study: Study) -> list[int]:
    """Values an attention check may ask for, on the study's scale and step (10…90 on 0–100)."""
    low, high, step = study.scale_min, study.scale_max, study.scale_step or 1
    values = []
    for fraction in CHECK_FRACTIONS:
        value = low + round(fraction * (high - low) / step) * step
        if low <= value <= high and value not in values:
            values.append(value)
    return values


def attention_check_spec(value: int) -> dict:
    return {
        "type": "instructional",
        "text": f"This is an attention check. To show you are reading, set the rating to {value}.",
        "expected": value,
    }


def _held_counts(study: Study) -> dict[int, int]:
    """Per prompt: ratings given plus unanswered slots of annotators still rating."""
    rows = (
        Assignment.objects.filter(prompt__study=study)
        .filter(Q(rating__isnull=False) | Q(annotator__status=Annotator.Status.RATING))
        .values("prompt_id")
        .annotate(n=Count("id"))
    )
    return {row["prompt_id"]: row["n"] for row in rows}


def study_has_capacity(*, study: Study) -> bool:
    """Whether a prompt is still below its target. A pure read: call reservations_release first (under
    the study's row lock) for idle holders not to count."""
    if study.design != Study.Design.PARTIAL or not study.target_ratings_per_prompt:
        return True
    held = _held_counts(study)
    target = study.target_ratings_per_prompt
    return any(held.get(pid, 0) < target for pid in study.prompts.values_list("id", flat=True))


@transaction.atomic
def reservations_release(*, study: Study, now=None) -> int:
    """Mark idle annotators who hold something others could use as returned and free their unrated prompts.

    `last_seen_at` is the time of their last step forward (consent, a questionnaire, starting, an answer);
    reopening the link does not move it. Released are:
    - annotators rating, idle past the study's reservation time;
    - with max_annotators set, consented annotators still in the questionnaires, idle as long (they hold a place);
    - where places or prompts are scarce (partial design or max_annotators), annotators who started
      rating but answered nothing within RECRUITMENT_START_MINUTES (a script holding prompts).
    """
    now = now or timezone.now()
    S = Annotator.Status
    idle_cutoff = now - timedelta(minutes=study.reservation_minutes)
    holding = [S.RATING] + ([S.CONSENTED, S.SURVEYING] if study.max_annotators is not None else [])
    release = Q(status__in=holding, last_seen_at__lt=idle_cutoff)
    if study.design == Study.Design.PARTIAL or study.max_annotators is not None:
        start_cutoff = now - timedelta(minutes=settings.RECRUITMENT_START_MINUTES)
        release |= Q(status=S.RATING, last_seen_at__lt=start_cutoff) & ~Exists(
            Rating.objects.filter(annotator=OuterRef("pk"))
        )
    idle = list(Annotator.objects.filter(study=study).filter(release).values_list("id", flat=True))
    if not idle:
        return 0
    Annotator.objects.filter(id__in=idle).update(status=S.RETURNED)
    Assignment.objects.filter(annotator_id__in=idle, rating__isnull=True).delete()
    study_changed(study.pk)
    return len(idle)


def _choose_prompts(study: Study, rng: np.random.Generator) -> list[int]:
    prompt_ids = list(study.prompts.order_by("order", "id").values_list("id", flat=True))
    if study.design == Study.Design.FULL or not study.prompts_per_annotator:
        return prompt_ids
    held = _held_counts(study)
    target = study.target_ratings_per_prompt
    candidates = [pid for pid in prompt_ids if target is None or held.get(pid, 0) < target]
    # Least-rated first; ties broken at random so that early prompts are not favoured.
    tiebreak = rng.random(len(candidates))
    ranked = sorted(range(len(candidates)), key=lambda i: (held.get(candidates[i], 0), tiebreak[i]))
    return [candidates[i] for i in ranked[: study.prompts_per_annotator]]


@transaction.atomic
def assignments_create(*, annotator: Annotator) -> int:
    """Give the annotator their prompts (seeded order) and attention checks; once only."""
    study = Study.objects.select_for_update().get(pk=annotator.study_id)  # one allocation at a time
    if annotator.assignments.exists():
        return 0
    reservations_release(study=study)
    rng = np.random.default_rng(annotator.order_seed)
    chosen = _choose_prompts(study, rng)
    order = [chosen[i] for i in rng.permutation(len(chosen))]
    n_checks = min(study.attention_checks, max(0, len(order)))
    slots: list[tuple[int | None, dict | None]] = [(pid, None) for pid in order]
    if n_checks and order:
        # Checks go anywhere except the very first trial, so the first thing seen is a real prompt.
        positions = sorted(rng.choice(np.arange(1, len(order) + n_checks), size=n_checks, replace=False))
        values = rng.choice(attention_check_values(study=study), size=n_checks)
        for position, value in zip(positions, values):
            slots.insert(int(position), (None, attention_check_spec(int(value))))
    Assignment.objects.bulk_create(
        [
            Assignment(
                annotator=annotator,
                prompt_id=pid,
                kind=Assignment.Kind.PROMPT if pid else Assignment.Kind.ATTENTION,
                check_spec=spec,
                position=position,
            )
            for position, (pid, spec) in enumerate(slots)
        ]
    )
    study_changed(study.pk)
    return len(slots)


def assignment_current(*, annotator: Annotator) -> Assignment | None:
    """The first unanswered trial (with its prompt), marked as shown the first time it is served.

    In SQL (annotation/rows.py says why): on PostgreSQL one statement finds, marks and returns it.
    """
    table, ratings, prompts = (connection.ops.quote_name(m._meta.db_table) for m in (Assignment, Rating, Prompt))
    first = (
        f"SELECT a.id FROM {table} a WHERE a.annotator_id = %s AND NOT EXISTS "
        f"(SELECT 1 FROM {ratings} r WHERE r.assignment_id = a.id) ORDER BY a.position LIMIT 1"
    )
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"WITH shown AS (UPDATE {table} SET shown_at = COALESCE(shown_at, %s) WHERE id = ({first}) "
                f"RETURNING *) SELECT {columns_sql(Assignment, 'shown')}, p.text FROM shown "
                f"LEFT JOIN {prompts} p ON p.id = shown.prompt_id",
                [now, annotator.pk],
            )
        else:
            cursor.execute(
                f"UPDATE {table} SET shown_at = %s WHERE shown_at IS NULL AND id = ({first})", [now, annotator.pk]
            )
            cursor.execute(
                f"SELECT {columns_sql(Assignment, 'a')}, p.text FROM {table} a LEFT JOIN {prompts} p ON "
                f"p.id = a.prompt_id WHERE a.id = ({first})",
                [annotator.pk],
            )
        row = cursor.fetchone()
    if row is None:
        return None
    return assignment_from_row(row[:-1], row[-1], study_id=annotator.study_id)


def assignment_from_row(values, prompt_text: str | None, *, study_id: int) -> Assignment:
    """A trial from the values of `columns_sql(Assignment, …)` and its prompt's text."""
    assignment = instance(Assignment, values)
    if assignment.prompt_id is not None:
        # Only the text is read here; any other field of the prompt loads on first use (deferred).
        assignment.prompt = Prompt.from_db(
            connection.alias, ["id", "study_id", "text"], [assignment.prompt_id, study_id, prompt_text]
        )
    return assignment


def assignment_progress(*, annotator: Annotator) -> tuple[int, int]:
    total = annotator.assignments.count()
    done = annotator.assignments.filter(rating__isnull=False).count()
    return done, total
