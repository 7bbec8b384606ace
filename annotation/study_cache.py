"""Page data of a study, cached per study version: a 10,000 × 150 study is not recounted on every request.

Every write that changes what the researcher's pages show about a study's annotators (a rating, a
revision, an import, a deletion, a status change, a trial, a questionnaire, a prompt) calls
`study_changed`, which bumps the study's version in the cache, and again once the transaction has
committed. An entry is stored under the version read before it was computed, so a write that commits
while a page computes bumps the version past that entry and the next request computes afresh: a page
never shows numbers from before a write it could see. The bump after the commit is what makes that
hold: a request that reads the version it set starts after the write is visible.

A lost version key (evicted, Redis restarted) starts again at a random number, so it cannot meet an
entry stored under the old one; a write while the cache is unreachable cannot bump anything, so entries
also expire after ENTRY_SECONDS. Without a cache (an error from it) pages compute every time.

ORM saves of annotators, prompts, trials and questionnaires, and deletions of annotators and prompts,
bump through signals (the admin, services that save rows one by one); the paths that write in bulk or
in SQL (the rating statement, revisions, imports, queryset updates and deletes) call `study_changed`
themselves, and so does the admin for ratings, trials and questionnaires (as a change to many ratings:
annotation.participant_figures relies on every other writer of those also writing the annotator's row).
No deletion receiver is connected to Rating or Assignment: Django would then fetch every
row of a large delete to send it.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from typing import TypeVar

from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save

logger = logging.getLogger(__name__)

ENTRY_SECONDS = 15 * 60
_local = threading.local()
T = TypeVar("T")


def _version_key(study_id: int) -> str:
    return f"study-version:{int(study_id)}"


def _ratings_key(study_id: int) -> str:
    return f"study-ratings-version:{int(study_id)}"


def _prompt_key(study_id: int, prompt_id: int) -> str:
    return f"study-prompt-version:{int(study_id)}:{int(prompt_id)}"


def _people_key(study_id: int) -> str:
    return f"study-people-version:{int(study_id)}"


def _versions(keys: list[str]) -> list[int]:
    """The current value of each version key, a missing one created at a random value."""
    _local.reads = getattr(_local, "reads", 0) + 1
    found = cache.get_many(keys)
    versions = []
    for key in keys:
        version = found.get(key)
        if version is None:
            version = secrets.randbits(52)
            if not cache.add(key, version, timeout=None):  # another request created it meanwhile
                version = cache.get(key, version)
        versions.append(int(version))
    return versions


def study_version(study_id: int) -> int:
    """The study's current data version: it changes with every write `study_changed` is told of."""
    return _versions([_version_key(study_id)])[0]


def ratings_version(study_id: int) -> int:
    """The version of all the study's ratings: it changes with a change to many of them at once (an
    import, a deletion, a restore), not with a single new or revised rating."""
    return _versions([_ratings_key(study_id)])[0]


def prompt_versions(study_id: int, prompt_ids: list[int]) -> tuple[int, list[int]]:
    """(version of all the study's ratings, version of each prompt's ratings): what a per-prompt entry
    of the study's ratings is cached under. Two round trips whatever the number of prompts."""
    versions = _versions([_ratings_key(study_id), *(_prompt_key(study_id, p) for p in prompt_ids)])
    return versions[0], versions[1:]


def people_version(study_id: int) -> int:
    """The version of the study's annotators' demographics and statuses (`study_changed(…, people=True)`):
    a new rating leaves it alone, so data derived from the annotators alone outlives it."""
    return _versions([_people_key(study_id)])[0]


def _bump(keys: list[str]) -> None:
    incr_existing = getattr(cache, "incr_existing", None)  # Redis (config.cache): one round trip for all
    if incr_existing is not None:
        try:
            incr_existing(keys)
        except Exception:
            logger.warning("%s not bumped: cached pages may lag until they expire", keys, exc_info=True)
        return
    for key in keys:
        try:
            cache.incr(key)
        except ValueError:  # no version yet (or lost): the next reader starts a new one
            pass
        except Exception:  # an unreachable cache: entries expire after ENTRY_SECONDS
            logger.warning("%s not bumped: cached pages may lag until they expire", key, exc_info=True)


class _Bump:
    """The after-commit callback of one change (a class, so that a transaction registers it once);
    `reads` is this thread's count of version reads at the last bump made at once for it."""

    def __init__(self, keys: list[str], reads: int):
        self.keys = keys
        self.reads = reads

    def __call__(self) -> None:
        _bump(self.keys)


def study_changed(
    study_id: int | None, *, prompt_id: int | None = None, ratings: bool = False, people: bool = False
) -> None:
    """The study's data changed: its cached page data is stale now and again from the commit of this
    transaction on. Now, for the transaction's own later reads (and tests, which never commit); at the
    commit, for entries computed meanwhile by others from the data before it. Once per change and
    transaction: deleting a study's 10,000 annotators is two bumps, not 20,000.

    Say which ratings changed: `prompt_id`, the ratings of that prompt (a new or revised rating);
    `ratings=True`, any of the study's ratings (an import, a deletion). Without either, the change is
    to annotators, trials or prompts only, and per-prompt rating tallies stay valid. `people=True`: the
    demographics or the status of some annotators changed (a questionnaire, an exclusion); implied by
    `ratings=True` (an import, a restore or a deletion writes annotators too). Saving an annotator through
    the ORM says so by itself (a signal, below).
    """
    if study_id is None:
        return
    keys = [_version_key(study_id)]
    if ratings:
        keys.append(_ratings_key(study_id))
    elif prompt_id is not None:
        keys.append(_prompt_key(study_id, prompt_id))
    if people or ratings:
        keys.append(_people_key(study_id))
    connection = transaction.get_connection()
    if not connection.in_atomic_block:  # autocommit: the write is committed already
        _bump(keys)
        return
    reads = getattr(_local, "reads", 0)
    # Django keeps the transaction's pending callbacks as (savepoint ids, callback, robust); a savepoint
    # rolled back takes its own with it, so one found here is still due at the commit.
    pending = next((f for _, f, *_ in connection.run_on_commit if isinstance(f, _Bump) and f.keys == keys), None)
    if pending is None:
        _bump(keys)
        transaction.on_commit(_Bump(keys, reads))
    elif pending.reads != reads:  # read since the last bump: bump again for the transaction's own reads
        _bump(keys)
        pending.reads = reads


def settings_stamp(study) -> float:
    """When the study's settings last changed (every settings write moves `updated_at`)."""
    return study.updated_at.timestamp() if study.updated_at else 0


def _cached(key: Callable[[], str], compute: Callable[[], T], timeout: int, what: str) -> T:
    """`compute()`, cached under `key()` (which reads versions from the cache); computed uncached, with a
    warning, when the cache fails."""
    try:
        name = key()
        value = cache.get(name)
    except Exception:
        logger.warning("cache unavailable: %s computed uncached", what, exc_info=True)
        return compute()
    if value is None:
        value = compute()
        try:
            cache.set(name, value, timeout)
        except Exception:
            logger.warning("cache unavailable: %s not stored", what, exc_info=True)
    return value


def people_cached(study_id: int, name: str, compute: Callable[[], T], *, timeout: int = ENTRY_SECONDS) -> T:
    """`compute()`, cached under the version of the study's annotators (`people_version`) and `name`: for
    data that depends on the annotators' demographics and statuses alone, which new ratings leave valid."""
    return _cached(
        lambda: f"study-people:{int(study_id)}:{people_version(study_id)}:{name}",
        compute,
        timeout,
        f"study {study_id} annotator data",
    )


def study_cached(study, name: str, compute: Callable[[], T], *, timeout: int = ENTRY_SECONDS) -> T:
    """`compute()`, cached under the study's current version, its settings' last change and `name`
    (which must say everything else the value depends on)."""

    def key() -> str:
        return f"study-data:{study.pk}:{study_version(study.pk)}:{settings_stamp(study)}:{name}"

    return _cached(key, compute, timeout, f"study {study.pk} page data")


# ----------------------------------------------------------------------------- ORM writes


def _own_study(instance) -> int | None:
    return instance.study_id


def _via_annotator(instance) -> int | None:
    annotator = instance._state.fields_cache.get("annotator")
    if annotator is not None:
        return annotator.study_id
    from .models import Annotator  # noqa: PLC0415  (apps.ready connects the receivers; models load first)

    return Annotator.objects.filter(pk=instance.annotator_id).values_list("study_id", flat=True).first()


def _receiver(study_of, *, ratings: bool = False):
    def receiver(sender, instance, raw=False, **kwargs):
        if not raw:  # loaddata, a backup restore: those call study_changed themselves
            study_changed(study_of(instance), ratings=ratings)

    return receiver


PEOPLE_FIELDS = frozenset({"demographics", "status"})


def _annotator_people_saved(sender, instance, raw=False, update_fields=None, **kwargs):
    """An annotator saved with new demographics or status (a questionnaire, an exclusion or reinstatement,
    the admin; a save that names no fields may change either)."""
    if not raw and (update_fields is None or PEOPLE_FIELDS & set(update_fields)):
        study_changed(instance.study_id, people=True)


def _annotator_deleted(sender, instance, raw=False, **kwargs):
    """An annotator deleted: their ratings went with them, unless they never consented (the periodic
    release of idle arrivals deletes only those): no product path gives such an annotator a rating, trial
    or questionnaire, and the pages that list annotators see them gone without a rebuild."""
    if raw:
        return
    never_consented = instance.status == type(instance).Status.NEW and instance.consented_at is None
    study_changed(instance.study_id, ratings=not never_consented, people=True)


def signals_connect() -> None:
    """Connect the ORM receivers (AnnotationConfig.ready). Ratings and revisions are written by services
    that call `study_changed` themselves (the rating statement is SQL)."""
    from .models import Annotator, Assignment, Prompt, SurveyResponse  # noqa: PLC0415

    saved = {Annotator: _own_study, Prompt: _own_study, SurveyResponse: _via_annotator}
    for model, study_of in saved.items():
        post_save.connect(_receiver(study_of), sender=model, weak=False, dispatch_uid=f"study_cache.{model.__name__}")
    # The services write trials in bulk or in SQL, together with the annotator's row; a trial saved alone
    # (the admin, a script) changes an annotator's figures behind that row (participant_figures).
    post_save.connect(
        _receiver(_via_annotator, ratings=True), sender=Assignment, weak=False, dispatch_uid="study_cache.Assignment"
    )
    # Deleting these fetches their rows anyway (their ratings and trials cascade); not Rating or Assignment.
    post_delete.connect(
        _receiver(_own_study, ratings=True), sender=Prompt, weak=False, dispatch_uid="study_cache.Prompt.delete"
    )
    post_delete.connect(_annotator_deleted, sender=Annotator, weak=False, dispatch_uid="study_cache.Annotator.delete")
    post_save.connect(
        _annotator_people_saved, sender=Annotator, weak=False, dispatch_uid="study_cache.Annotator.people"
    )
