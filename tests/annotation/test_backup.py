"""dump_study / restore_study: a study restored into an empty database dumps again byte for byte."""

import gzip
import json
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from annotation.models import Annotator, Assignment, Prompt, Rating, Study, SurveyInstrument, SurveyResponse, Upload
from annotation.services import backup
from annotation.services.uploads import upload_create
from jobs.models import Job
from jobs.services import artifact_dir, artifact_save

PID = "5f3c2a9e8b7d6c5b4a392817"
SESSION = "sess0a1b2c3d4e5f60718293"
DEMOGRAPHICS = {
    "Race_Ethnicity": ["East Asian", "White"],
    "Gender": "Woman",
    "Sexual_Orientation": ["Straight (heterosexual)"],
    "Age": "25-34 years old",
    "Political_Affiliation": "Moderate",
    "Education": "Bachelor’s degree",
    "Religion_Importance": "Somewhat important",
    "Social_Media_Frequency": "At least once a day",
    "Toxicity_Experience": "Rarely a problem",
    "Income": "$50,000 to $74,999",
}
PREDICTIONS = b"annotator,prompt,prediction\nP0001,1,40\n"


def _take_part(client, study):
    """One annotator through the real flow: link, consent, a survey, instructions, every card."""
    client.get(f"/s/{study.slug}/?PROLIFIC_PID={PID}&STUDY_ID=st123&SESSION_ID={SESSION}")
    client.post(reverse("take:consent", args=[study.slug]), {"consent": "agree"})
    client.post(reverse("take:survey", args=[study.slug, "demographics"]), DEMOGRAPHICS)
    client.post(reverse("take:instructions", args=[study.slug]))
    annotator = Annotator.objects.get(study=study, status=Annotator.Status.RATING)
    for number, assignment in enumerate(annotator.assignments.order_by("position")):
        expected = (assignment.check_spec or {}).get("expected")
        data = {"rating": str(expected if expected is not None else 10 * number), "rt_ms": "1500"}
        if number == 1:
            data = {"unsure": "1", "rt_ms": "900"}
        client.post(
            reverse("take:rate_submit", args=[study.slug, assignment.pk]),
            data | {"idempotency_key": f"key-{number}"},
            HTTP_HX_REQUEST="true",
        )
    return annotator


@pytest.fixture
def full_study(small_study, researcher, outsider, client):
    """The small release import, plus a live participant, collaborators (an editor and a viewer), an
    upload and jobs with files."""
    study = small_study
    Study.objects.filter(pk=study.pk).update(
        status=Study.Status.RECRUITING,
        instruments=["demographics"],
        attention_checks=1,
        completion_code="DONE1",
        meta={**study.meta, "note": "é ünïcode ✓"},
    )
    study.refresh_from_db()
    study.collaborators.add(outsider, through_defaults={"role": "editor"})
    viewer = get_user_model().objects.create_user("viewer", password="pw-viewer-1")
    study.collaborators.add(viewer, through_defaults={"role": "viewer"})
    Prompt.objects.filter(study=study).update(harm_benefit_tree={"stakeholders": [{"name": "user", "harms": []}]})
    annotator = _take_part(client, study)
    assert annotator.ratings.count() == study.prompts.count() + 1
    upload = upload_create(
        study=study, kind="predictions", upload=SimpleUploadedFile("p.csv", PREDICTIONS), user=researcher
    )
    job = Job.objects.create(
        kind="benchmark",
        study=study,
        params={"upload": upload.pk, "splits": 2},
        status=Job.Status.SUCCEEDED,
        progress=1.0,
        result={"mae": 0.25, "rows": [1, 2.5, None]},
        created_by=researcher,
    )
    folder = artifact_dir(job)
    folder.mkdir(parents=True)
    (folder / "table.csv").write_text("a,b\n1,2\n")
    artifact_save(job=job, path=folder / "table.csv")
    Job.objects.create(kind="export", study=study, status=Job.Status.FAILED, error="boom")
    return study


def _dump(study, tmp_path, name="dump.json", *extra) -> bytes:
    path = tmp_path / name
    call_command("dump_study", study.slug, "--out", str(path), *extra)
    return path.read_bytes()


def _restore(path, *extra):
    call_command("restore_study", str(path), *extra)
    return Study.objects.get()


def _empty_database():
    """Every row of every table (users, sessions, instruments included) and the media files gone."""
    call_command("flush", interactive=False, verbosity=0)
    for path in sorted(Path(settings.MEDIA_ROOT).rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()


def _ratings(study):
    return sorted(
        Rating.objects.filter(annotator__study=study).values_list(
            "annotator__pseudonym", "prompt__external_id", "value", "unsure", "rt_ms", "server_rt_ms", "created_at"
        ),
        key=repr,
    )


def _row_counts():
    return {
        m._meta.label: m._base_manager.count() for m in apps.get_models() if m._meta.app_label in ("annotation", "jobs")
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("extra", [(), ("--with-files",)], ids=["metadata", "with-files"])
def test_round_trip_into_an_empty_database_is_byte_identical(full_study, tmp_path, extra):
    first = _dump(full_study, tmp_path, "first.json", *extra)
    ratings = _ratings(full_study)
    annotators = list(full_study.annotators.order_by("pk").values())
    collaborators = list(full_study.collaborator_roles.values_list("user__username", "role", "added_at"))
    assert [c[:2] for c in collaborators] == [("outsider", "editor"), ("viewer", "viewer")]
    media = {
        p.relative_to(settings.MEDIA_ROOT): p.read_bytes() for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()
    }
    _empty_database()
    if not extra:  # without --with-files the media folder is carried over separately
        for name, raw in media.items():
            (Path(settings.MEDIA_ROOT) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(settings.MEDIA_ROOT) / name).write_bytes(raw)
    assert not Study.objects.exists() and not get_user_model().objects.exists()

    restored = _restore(tmp_path / "first.json", "--create-users")

    assert _dump(restored, tmp_path, "second.json", *extra) == first
    assert _ratings(restored) == ratings
    assert list(restored.annotators.order_by("pk").values()) == annotators
    assert restored.owner.username == "researcher" and not restored.owner.has_usable_password()
    assert list(restored.collaborator_roles.values_list("user__username", "role", "added_at")) == collaborators
    assert SurveyResponse.objects.get().answers["Gender"] == "Woman"
    job = Job.objects.get(kind="benchmark")
    assert job.result == {"mae": 0.25, "rows": [1, 2.5, None]} and job.params["upload"] == Upload.objects.get().pk
    assert job.artifacts.get().file.read() == b"a,b\n1,2\n"
    assert Upload.objects.get().file.read() == PREDICTIONS
    # New rows continue after the restored ids (sequences were reset on PostgreSQL).
    newer = Prompt.objects.create(study=restored, external_id="new", text="t")
    assert newer.pk > max(Prompt.objects.exclude(pk=newer.pk).values_list("pk", flat=True))


def test_dump_is_canonical_json_with_files_recorded(full_study, tmp_path):
    raw = _dump(full_study, tmp_path)
    assert raw == _dump(full_study, tmp_path, "again.json")  # deterministic
    doc = json.loads(raw)
    assert (doc["format"], doc["version"], doc["study"]) == (backup.FORMAT, backup.VERSION, "small")
    sections = {s["model"]: s for s in doc["models"]}
    assert [s["model"] for s in doc["models"]] == list(backup.PART_LABELS)
    # Columns are the models' concrete fields, so fields added later are dumped without a change here.
    assert sections["jobs.job"]["fields"] == [f.name for f in Job._meta.concrete_fields]
    assert len(sections["annotation.rating"]["rows"]) == Rating.objects.count()
    ids = [row[0] for row in sections["annotation.rating"]["rows"]]
    assert ids == sorted(ids)
    created = sections["annotation.rating"]["fields"].index("created_at")
    assert sections["annotation.rating"]["rows"][0][created].endswith("+00:00")
    upload = Upload.objects.get()
    files = {f["name"]: f for f in doc["files"]}
    assert files[upload.file.name] == {"name": upload.file.name, "sha256": upload.sha256, "size": len(PREDICTIONS)}
    assert doc["instruments"]["rows"][0][:2] == ["demographics", "2"]
    # Collaborators are rows of their own, the user by username, the role kept.
    assert "collaborators" not in sections["annotation.study"]["fields"]
    collaborators = sections["annotation.collaborator"]
    user, role = collaborators["fields"].index("user"), collaborators["fields"].index("role")
    assert [(row[user], row[role]) for row in collaborators["rows"]] == [("outsider", "editor"), ("viewer", "viewer")]
    with_files = json.loads(_dump(full_study, tmp_path, "files.json", "--with-files"))
    assert all("content" in f for f in with_files["files"])


def test_no_raw_recruitment_ids_in_the_dump(full_study, tmp_path):
    raw = _dump(full_study, tmp_path, "dump.json", "--with-files")
    assert Annotator.objects.filter(recruitment_hash__gt="").exists()
    for secret in (PID, SESSION):
        assert secret.encode() not in raw
    assert PID.encode() not in gzip.decompress(_dump(full_study, tmp_path, "dump.json.gz"))


def test_gzip_is_deterministic_and_restores(full_study, tmp_path):
    plain = _dump(full_study, tmp_path, "d.json")
    packed = _dump(full_study, tmp_path, "d.json.gz")
    assert packed[:2] == b"\x1f\x8b" and gzip.decompress(packed) == plain
    assert _dump(full_study, tmp_path, "e.json.gz") == packed
    ratings = _ratings(full_study)
    full_study.delete()
    restored = _restore(tmp_path / "d.json.gz")
    assert _ratings(restored) == ratings


def test_missing_users_become_empty_with_a_warning(full_study, tmp_path, capsys):
    _dump(full_study, tmp_path)
    full_study.delete()
    get_user_model().objects.filter(username="outsider").delete()
    restored = _restore(tmp_path / "dump.json")
    err = capsys.readouterr().err
    assert "no user 'outsider' here" in err
    assert "annotation.collaborator: 1 row(s) left out: they need user(s) 'outsider'" in err
    assert restored.owner.username == "researcher"
    assert list(restored.collaborator_roles.values_list("user__username", "role")) == [("viewer", "viewer")]


def test_a_dump_from_before_collaborator_roles_restores_them_as_editors(full_study, tmp_path):
    """Older dumps list collaborators as usernames in the study row (no roles then): they come back as
    editors, the level they had, as migration 0004 made them."""
    doc = json.loads(_dump(full_study, tmp_path))
    doc["models"] = [s for s in doc["models"] if s["model"] != "annotation.collaborator"]
    doc["models"][0]["fields"].append("collaborators")
    doc["models"][0]["rows"][0].append(["outsider", "viewer"])
    (tmp_path / "old.json").write_text(json.dumps(doc))
    full_study.delete()
    restored = _restore(tmp_path / "old.json")
    assert sorted(restored.collaborator_roles.values_list("user__username", "role")) == [
        ("outsider", "editor"),
        ("viewer", "editor"),
    ]


def test_taken_ids_are_remapped_consistently(full_study, tmp_path, capsys):
    _dump(full_study, tmp_path, "dump.json", "--with-files")
    ratings = [r[:6] for r in _ratings(full_study)]
    study_pk, prompt_pks = full_study.pk, list(full_study.prompts.values_list("pk", flat=True))
    old_upload_name = Upload.objects.get().file.name
    full_study.delete()
    # Another study now holds the old study's id and some of its prompts' ids.
    other = Study.objects.create(pk=study_pk, slug="other", title="Other")
    Prompt.objects.bulk_create([Prompt(pk=pk, study=other, external_id=f"o{pk}", text="x") for pk in prompt_pks[:2]])

    restored = Study.objects.get(slug=_restore_slug(tmp_path / "dump.json"))

    assert (
        restored.pk != study_pk and "new ids given to: annotation.study, annotation.prompt" in capsys.readouterr().err
    )
    assert [r[:6] for r in _ratings(restored)] == ratings
    assert Prompt.objects.filter(study=other).count() == 2
    upload = Upload.objects.get(study=restored)
    assert upload.file.name == old_upload_name.replace(f"study-{study_pk}/", f"study-{restored.pk}/")
    assert upload.file.read() == PREDICTIONS
    assert Job.objects.get(study=restored, kind="benchmark").params["upload"] == upload.pk


def _restore_slug(path):
    call_command("restore_study", str(path))
    return json.loads(Path(path).read_bytes())["study"]


def test_existing_slug_is_refused_and_nothing_written(full_study, tmp_path):
    _dump(full_study, tmp_path)
    before = _row_counts()
    with pytest.raises(CommandError, match="'small' already exists"):
        _restore(tmp_path / "dump.json")
    assert _row_counts() == before


def _section(doc, label):
    return next(s for s in doc["models"] if s["model"] == label)


def _tamper(doc, label, column, value):
    section = _section(doc, label)
    section["rows"][-1][section["fields"].index(column)] = value


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda raw: raw[: len(raw) // 2], "not valid JSON"),
        (lambda raw: b"\x1f\x8b" + raw, "gzip data is damaged"),
        (lambda raw: raw.replace(b'"format":"pluriharms.study-dump"', b'"format":"other"'), "not a study dump"),
        (lambda raw: raw.replace(b'"version":1', b'"version":99'), "unknown dump version 99"),
        (lambda doc: _tamper(doc, "annotation.rating", "prompt", 10**9), "is no annotation.prompt row in the file"),
        (lambda doc: _tamper(doc, "annotation.rating", "created_at", "yesterday"), "created_at = 'yesterday'"),
        (lambda doc: _section(doc, "annotation.annotator")["fields"].append("shoe_size"), "shoe_size"),
        (lambda doc: _section(doc, "annotation.prompt")["rows"].append([1, 2]), "annotation.prompt row"),
        # Valid JSON the database itself refuses (a negative rating): the rows written before it roll back.
        (lambda doc: _tamper(doc, "annotation.rating", "value", -5.0), "database refused"),
    ],
    ids=[
        "truncated",
        "bad-gzip",
        "format",
        "version",
        "dangling-reference",
        "bad-date",
        "unknown-field",
        "short-row",
        "constraint",
    ],
)
def test_malformed_files_are_refused_and_nothing_written(full_study, tmp_path, change, message):
    raw = _dump(full_study, tmp_path)
    full_study.delete()
    if change.__code__.co_varnames[0] == "doc":
        doc = json.loads(raw)
        change(doc)
        raw = json.dumps(doc).encode()
    else:
        raw = change(raw)
    (tmp_path / "bad.json").write_bytes(raw)
    before = _row_counts()
    with pytest.raises(CommandError, match=message):
        _restore(tmp_path / "bad.json")
    assert _row_counts() == before and not Study.objects.exists()


def test_every_model_hanging_off_a_study_is_dumped():
    """A new model with a foreign key into a study's rows must be added to backup.PARTS."""
    parts = {apps.get_model(label) for label in backup.PART_LABELS}
    for model in apps.get_models():
        if model in parts or model._meta.auto_created:
            continue
        for f in model._meta.concrete_fields:
            assert not (f.is_relation and f.related_model in parts), f"{model._meta.label}.{f.name} is not dumped"


def test_unknown_study_and_unreadable_file_are_clear_errors(db, tmp_path):
    with pytest.raises(CommandError, match="no study with slug 'nope'"):
        call_command("dump_study", "nope", "--out", str(tmp_path / "x.json"))
    with pytest.raises(CommandError, match="cannot read"):
        call_command("restore_study", str(tmp_path / "missing.json"))
    assert not (tmp_path / "x.json").exists()


def test_assignments_and_instrument_rows_restore_with_their_links(full_study, tmp_path):
    _dump(full_study, tmp_path)
    checks = list(Assignment.objects.filter(kind="attention").values_list("position", "check_spec", "check_passed"))
    demographics = Annotator.objects.get(recruitment_hash__gt="").demographics
    assert checks and demographics["Gender"] == "Woman"
    full_study.delete()
    SurveyInstrument.objects.all().delete()
    restored = _restore(tmp_path / "dump.json")
    assert (
        list(Assignment.objects.filter(kind="attention").values_list("position", "check_spec", "check_passed"))
        == checks
    )
    assert SurveyResponse.objects.get().instrument.key == "demographics"
    assert restored.annotators.get(recruitment_hash__gt="").demographics == demographics


def test_a_dump_without_a_newer_field_restores_with_its_default(full_study, tmp_path, capsys):
    """A dump made before a field was added (say jobs.job.attempts) restores; the field gets its default."""
    Job.objects.update(attempts=3)
    doc = json.loads(_dump(full_study, tmp_path))
    section = next(s for s in doc["models"] if s["model"] == "jobs.job")
    column = section["fields"].index("attempts")
    del section["fields"][column]
    for row in section["rows"]:
        row.pop(column)
    (tmp_path / "old.json").write_text(json.dumps(doc))
    full_study.delete()
    Job.objects.filter(study__isnull=True).delete()
    restored = _restore(tmp_path / "old.json")
    assert "jobs.job: the dump has no attempts" in capsys.readouterr().err
    assert set(Job.objects.filter(study=restored).values_list("attempts", flat=True)) == {0}


def test_unfinished_jobs_are_restored_as_they_were_with_a_warning(full_study, tmp_path, capsys):
    queued = Job.objects.create(kind="export", study=full_study)
    _dump(full_study, tmp_path)
    full_study.delete()
    _restore(tmp_path / "dump.json")
    assert f"job(s) {queued.pk} were queued or running" in capsys.readouterr().err
    assert Job.objects.get(pk=queued.pk).status == Job.Status.QUEUED


def test_a_different_file_in_the_way_is_refused_and_nothing_written(full_study, tmp_path):
    _dump(full_study, tmp_path, "dump.json", "--with-files")
    upload = Upload.objects.get()
    full_study.delete()
    path = Path(settings.MEDIA_ROOT) / upload.file.name
    path.write_bytes(b"someone else's file")
    artifact = next(Path(settings.MEDIA_ROOT, "jobs").rglob("table.csv"))
    artifact.unlink()  # restored before the conflict is found: it must be removed again
    with pytest.raises(CommandError, match="a different file is already stored"):
        _restore(tmp_path / "dump.json")
    assert not Study.objects.exists() and path.read_bytes() == b"someone else's file" and not artifact.exists()


def _pool(study):
    """A candidate pool with a value topic, a seed, its variant (a reference within the part), an
    embedding, and a selection job naming the pool in its params."""
    from benchmark.models import Candidate, CandidatePool, ValueTopic

    pool = CandidatePool.objects.create(study=study, name="seeds", meta={"variants": {"template": "{seed}"}})
    topic = ValueTopic.objects.create(pool=pool, number=0, name="privacy", words=["privacy", "data"], size=2)
    seed = Candidate.objects.create(pool=pool, external_id="s1", text="seed text", topic=topic, embedding=b"\x00\x01")
    Candidate.objects.create(
        pool=pool, external_id="s1-0.5", text="variant", harm_level=0.5, source="variant", seed=seed, topic=topic
    )
    Job.objects.create(study=study, kind="selection", params={"pool": pool.pk, "k": 1})
    return pool


def _pool_rows(study):
    from benchmark.models import Candidate

    return sorted(
        Candidate.objects.filter(pool__study=study).values_list(
            "external_id", "seed__external_id", "topic__name", "harm_level", "embedding", "pool__name"
        ),
        key=repr,
    )


def test_candidate_pools_restore_with_their_topics_seeds_and_jobs(full_study, tmp_path):
    """Pools hang off a study: dumped, and restored with a variant's seed, topics and the job's pool id
    translated, also when the old ids are taken by another study's pool."""
    from benchmark.models import Candidate, CandidatePool

    pool = _pool(full_study)
    rows = _pool_rows(full_study)
    assert rows[1][1] == "s1" and bytes(rows[0][4]) == b"\x00\x01"
    _dump(full_study, tmp_path, "dump.json")
    old_ids = list(Candidate.objects.filter(pool=pool).values_list("pk", flat=True))
    full_study.delete()
    assert not CandidatePool.objects.exists()
    other = Study.objects.create(slug="other", title="Other")
    taken = CandidatePool.objects.create(pk=pool.pk, study=other, name="taken")
    Candidate.objects.bulk_create([Candidate(pk=pk, pool=taken, external_id=f"o{pk}", text="x") for pk in old_ids])

    restored = Study.objects.get(slug=_restore_slug(tmp_path / "dump.json"))

    assert [(r[0], r[1], r[2], r[3], bytes(r[4]) if r[4] else r[4], r[5]) for r in _pool_rows(restored)] == [
        (r[0], r[1], r[2], r[3], bytes(r[4]) if r[4] else r[4], r[5]) for r in rows
    ]
    new_pool = CandidatePool.objects.get(study=restored)
    assert new_pool.pk != pool.pk and new_pool.meta == {"variants": {"template": "{seed}"}}
    variant = Candidate.objects.get(pool=new_pool, external_id="s1-0.5")
    assert variant.seed.pool_id == new_pool.pk and variant.topic.pool_id == new_pool.pk
    assert Job.objects.get(study=restored, kind="selection").params["pool"] == new_pool.pk
    assert Candidate.objects.filter(pool=taken).count() == len(old_ids)
