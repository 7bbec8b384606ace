"""Hostile input at every entry point a user reaches (issue 8), and what the product does with it.

One shared list of hostile strings goes into each place a user can put text or numbers: an imported
prompt bank (the `import_pluriharms` command, the one importer), a study's title and description (the
admin), survey answers, the rating form's fields, the recruitment link, the JSON API, uploaded CSV and
dump files, and job parameters. For each, the answer is a clear 4xx or a row-level message (never a
500), nothing is half-written (rows counted before and after), and where a value is stored and shown
again, every page, API answer and export that shows it keeps it inert: no unescaped markup in HTML,
spreadsheet cells that start like a formula neutralised, and the raw recruitment id nowhere (pages,
API, exports, error pages, log lines). docs/security.md section 8 lists every case with its test.
"""

import csv
import io
import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.exports import FORMULA_TRIGGERS, export_study, spreadsheet_safe
from annotation.models import Annotator, Assignment, Prompt, Rating, Study, SurveyResponse, Upload
from annotation.surveys import instrument_load
from jobs.models import Job
from jobs.services import job_create, job_run
from tests.annotation import test_take_flow
from tests.annotation.test_take_flow import current, link, start_rating, submit
from tests.conftest import write_small_release

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    """The shared cast's users are created with passwords; a slow hasher would cost most of this sweep's time."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# test_take_flow's recruiting study ("harm": five prompts, no questionnaires), as fixture `take_study`.
take_study = test_take_flow.study

# --- the shared list ------------------------------------------------------------------------------

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
BIG = "A" * 100_000
# Text a user may type or a file may hold: markup, template syntax, formula starters, controls, SQL.
HOSTILE_TEXTS = {
    "script": SCRIPT,
    "img-onerror": IMG,
    "javascript-url": "javascript:alert(1)",
    "template-var": "{{ 7*7 }}",
    "template-tag": "{% debug %}",
    "formula-hyperlink": '=HYPERLINK("http://x")',
    "formula-plus": "+1+1",
    "formula-minus": "-2+3",
    "formula-at": "@SUM(A1)",
    "leading-tab": "\tTAB-LED",
    "leading-cr": "\rCR-LED",
    "rtl-override": "harmless\u202etxt.exe",
    "sql": "'; DROP TABLE annotation_rating; --",
    "long-number": "9" * 400,
    "big-100kB": BIG,
}
NUL = "a\x00b"
SURROGATE = "\ud800".encode("utf-8", "surrogatepass")  # a lone surrogate, as some encoders write it
# Numbers a form or a JSON body may carry instead of a sensible one.
HOSTILE_NUMBERS = ["-1", "-0.5", "NaN", "nan", "Infinity", "-Infinity", "inf", "1e400", "9" * 400, "0x10", "1_0"]
ALL_HOSTILE = [*HOSTILE_TEXTS.values(), NUL, *HOSTILE_NUMBERS]
ALL_IDS = [*HOSTILE_TEXTS, "nul", *(f"number:{n[:12]}" for n in HOSTILE_NUMBERS)]

CANARY = "PIDCANARY5f3a"  # a well-formed PROLIFIC_PID that must never come back out


def assert_inert_html(html: str) -> None:
    """No hostile markup of the list survives unescaped (the escaped form may appear)."""
    assert SCRIPT not in html
    assert "<img src=x" not in html and IMG not in html
    assert 'href="javascript:' not in html.lower() and 'src="javascript:' not in html.lower()


def test_the_inertness_check_catches_a_raw_echo():
    from django.utils.html import escape

    for raw in (SCRIPT, IMG, '<a href="javascript:alert(1)">x</a>'):
        with pytest.raises(AssertionError):
            assert_inert_html(f"<p>{raw}</p>")
        assert_inert_html(f"<p>{escape(raw)}</p>")


def count_rows() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (Study, Prompt, Annotator, Assignment, Rating, SurveyResponse, Upload, Job)
    }


def csv_columns(text: str) -> dict[str, list[str]]:
    header, *rows = list(csv.reader(io.StringIO(text, newline="")))
    assert all(len(row) == len(header) for row in rows), "a cell broke its row"
    return {name: [row[i] for row in rows] for i, name in enumerate(header)}


def assert_spreadsheet_safe(text: str, text_columns: list[str]) -> None:
    columns = csv_columns(text)
    for name in text_columns:
        for cell in columns[name]:
            assert not cell.startswith(FORMULA_TRIGGERS), (name, cell[:40])


# --- a prompt bank full of hostile text, imported through the command ------------------------------


@pytest.fixture
def hostile_release(tmp_path) -> Path:
    """A release slice whose prompt texts and Gender answers are the hostile texts."""
    n = len(HOSTILE_TEXTS)
    directory = write_small_release(tmp_path / "hostile", n_prompts=n, n_annotators=n)
    for name, column in (("prompts.csv", "Question_Content"), ("annotations.csv", "Gender")):
        frame = pd.read_csv(directory / name, dtype=str, keep_default_na=False)
        frame[column] = list(HOSTILE_TEXTS.values())
        frame.to_csv(directory / name, index=False, quoting=csv.QUOTE_ALL)  # the CR stays in its cell
    return directory


@pytest.fixture
def hostile_study(hostile_release, researcher) -> Study:
    call_command("import_pluriharms", str(hostile_release), "--study", "hostile", "--owner", "researcher")
    imported = Study.objects.get(slug="hostile")
    assert sorted(imported.prompts.values_list("text", flat=True)) == sorted(HOSTILE_TEXTS.values())  # stored exact
    return imported


def test_imported_hostile_prompts_are_inert_on_researcher_pages(client, researcher, hostile_study):
    client.force_login(researcher)
    page = client.get(reverse("annotation:study_detail", args=["hostile"]))
    html = page.content.decode()
    assert page.status_code == 200
    assert_inert_html(html)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown, as text
    assert "{% debug %}" in html and "{{ 7*7 }}" in html  # shown literally, never run as a template
    for prompt in hostile_study.prompts.all():
        detail = client.get(reverse("benchmark:prompt_detail", args=["hostile", prompt.external_id]))
        assert detail.status_code == 200
        assert_inert_html(detail.content.decode())
    for name in ("benchmark:overview", "benchmark:agreement", "benchmark:leaderboard", "benchmark:steering"):
        response = client.get(reverse(name, args=["hostile"]))
        assert response.status_code in (200, 400), name  # steering without harm-benefit trees says so
        assert_inert_html(response.content.decode())


def test_imported_hostile_prompts_are_inert_on_every_rating_card(client, hostile_study):
    Study.objects.filter(pk=hostile_study.pk).update(status="recruiting", instruments=[], min_seconds_per_rating=0)
    client.get(link(hostile_study, pid="hostileprompts0000000001"))
    client.post(reverse("take:consent", args=["hostile"]), {"consent": "agree"})
    client.post(reverse("take:instructions", args=["hostile"]))
    annotator = Annotator.objects.get(study=hostile_study, pseudonym__startswith="P0", source_id="")
    seen = set()
    while (assignment := current(annotator)) is not None:
        for htmx in (False, True):
            card = client.get(reverse("take:rate", args=["hostile"]), **({"HTTP_HX_REQUEST": "true"} if htmx else {}))
            assert card.status_code == 200
            assert_inert_html(card.content.decode())
        seen.add(assignment.prompt.text)
        assert submit(client, hostile_study, assignment, rating="10").status_code in (200, 204)
    assert seen == set(HOSTILE_TEXTS.values())


def test_imported_hostile_prompts_are_inert_in_the_admin(client, staff, hostile_study):
    client.force_login(staff)
    for url in (
        reverse("admin:annotation_prompt_changelist"),
        reverse("admin:annotation_prompt_changelist") + "?q=script",
        reverse("admin:annotation_annotator_changelist"),
        reverse("admin:annotation_prompt_change", args=[hostile_study.prompts.get(text=SCRIPT).pk]),
        reverse("admin:annotation_annotator_change", args=[hostile_study.annotators.first().pk]),
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        assert_inert_html(response.content.decode())


def test_imported_hostile_prompts_come_back_exact_as_json(researcher, hostile_study):
    api = APIClient()
    api.force_authenticate(researcher)
    response = api.get("/api/studies/hostile/prompts/?page_size=100")
    assert response.status_code == 200 and response["Content-Type"].startswith("application/json")
    assert {row["text"] for row in response.json()["results"]} == set(HOSTILE_TEXTS.values())
    browsable = api.get("/api/studies/hostile/prompts/", HTTP_ACCEPT="text/html")
    assert_inert_html(browsable.content.decode())


def test_exports_neutralise_formula_cells_and_the_release_format_stays_exact(hostile_study, tmp_path):
    export_study(study=hostile_study, fmt="long-csv", out_dir=tmp_path / "long")
    long_text = (tmp_path / "long" / "ratings.csv").read_bytes().decode("utf-8")  # bare CR kept
    assert_spreadsheet_safe(long_text, ["annotator", "prompt", "status", "exclusion_reason", "Gender"])
    assert set(csv_columns(long_text)["Gender"]) == {spreadsheet_safe(t) for t in HOSTILE_TEXTS.values()}
    # The release format reproduces what was imported, text for text (read back by the importer).
    export_study(study=hostile_study, fmt="pluriharms", out_dir=tmp_path / "release")
    call_command("import_pluriharms", str(tmp_path / "release"), "--study", "again", "--owner", "researcher")
    again = Study.objects.get(slug="again")
    assert list(again.prompts.order_by("order").values_list("text", flat=True)) == list(HOSTILE_TEXTS.values())
    assert [a.demographics["Gender"] for a in again.annotators.order_by("pseudonym")] == list(HOSTILE_TEXTS.values())
    export_study(study=again, fmt="pluriharms", out_dir=tmp_path / "release-again")
    for name in ("prompts.csv", "annotations.csv"):  # and the files are the same, byte for byte
        assert (tmp_path / "release" / name).read_bytes() == (tmp_path / "release-again" / name).read_bytes()
    export_study(study=hostile_study, fmt="jsonl", out_dir=tmp_path / "jsonl")
    rows = [json.loads(line) for line in (tmp_path / "jsonl" / "ratings.jsonl").read_text().splitlines()]
    assert {row["Gender"] for row in rows} == set(HOSTILE_TEXTS.values())


def test_report_downloads_neutralise_formula_cells(client, researcher, hostile_study):
    job = job_create(kind="analysis", study=hostile_study, params={"mixed_effects": False, "n_boot": 20})
    assert job_run(job_id=job.pk).status == "succeeded"
    client.force_login(researcher)
    for name in ("prompts", "annotators", "groups"):
        response = client.get(reverse("benchmark:agreement_csv", args=["hostile", name]))
        assert response.status_code == 200, name
        body = b"".join(response.streaming_content) if response.streaming else response.content
        text = body.decode()
        columns = csv_columns(text)
        numeric = {c for c, cells in columns.items() if all(_is_number(x) or x == "" for x in cells)}
        assert_spreadsheet_safe(text, [c for c in columns if c not in numeric])
    overview = client.get(reverse("benchmark:overview_csv", args=["hostile", "per_prompt"])).content.decode()
    assert_spreadsheet_safe(overview, ["prompt"])


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


# --- import refusals: nothing written, a message naming the place ----------------------------------


def _rewrite(directory: Path, name: str, edit) -> None:
    path = directory / name
    path.write_bytes(edit(path.read_bytes()))


@pytest.mark.parametrize(
    "case,edit,words",
    [
        ("latin-1", lambda raw: raw.replace(b"Question_Content", b"Question_Content\xe9", 1), "UTF-8"),
        ("invalid-bytes", lambda raw: raw + b'"\xff\xfe\xfd",x\n', "UTF-8"),
        (
            "lone-surrogate",
            lambda raw: raw.replace(b"\n", "\ud800".encode("utf-8", "surrogatepass") + b"\n", 2),
            "UTF-8",
        ),
        ("utf-16", lambda raw: raw.decode("utf-8").encode("utf-16"), "UTF-8"),
        ("nul-byte", lambda raw: raw.replace(b"\n", b"\x00\n", 2), "NUL"),
        ("truncated-quote", lambda raw: raw + b'"151,"never closed\n', "prompts.csv"),
        ("empty", lambda raw: b"", "prompts.csv"),
    ],
)
def test_malformed_prompt_files_are_refused_and_nothing_is_written(tmp_path, researcher, case, edit, words):
    directory = write_small_release(tmp_path / case)
    _rewrite(directory, "prompts.csv", edit)
    before = count_rows()
    with pytest.raises(CommandError) as refused:
        call_command("import_pluriharms", str(directory), "--study", "bad", "--owner", "researcher")
    assert "nothing was written" in str(refused.value) and words in str(refused.value)
    assert count_rows() == before


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "-1", "1e400", "9" * 400, "=1+1", SCRIPT])
def test_hostile_rating_cells_in_an_import_are_refused_by_row_and_column(tmp_path, researcher, value):
    directory = write_small_release(tmp_path / "cells")
    frame = pd.read_csv(directory / "annotations.csv", dtype=str, keep_default_na=False)
    rating = next(c for c in frame.columns if c.startswith("Rating_"))
    frame.loc[1, rating] = value
    frame.to_csv(directory / "annotations.csv", index=False)
    before = count_rows()
    with pytest.raises(CommandError) as refused:
        call_command("import_pluriharms", str(directory), "--study", "bad", "--owner", "researcher")
    assert "annotations.csv" in str(refused.value) and rating in str(refused.value)
    assert count_rows() == before


@pytest.mark.parametrize("participant", [SCRIPT, CANARY, "=HYPERLINK(1)", "\u202e1234"])
def test_a_raw_looking_participant_id_in_an_import_is_refused(tmp_path, researcher, participant):
    directory = write_small_release(tmp_path / "ids")
    frame = pd.read_csv(directory / "annotations.csv", dtype=str, keep_default_na=False)
    frame.loc[0, "Participant_ID"] = participant
    frame.to_csv(directory / "annotations.csv", index=False)
    before = count_rows()
    with pytest.raises(CommandError, match="Participant_ID"):
        call_command("import_pluriharms", str(directory), "--study", "bad", "--owner", "researcher")
    assert count_rows() == before


# --- a dump file (restore_study) with hostile content ----------------------------------------------


def _dump_with_prompt_texts(dumped, tmp_path, texts) -> Path:
    path = tmp_path / "dump.json"
    call_command("dump_study", dumped.slug, "--out", str(path))
    document = json.loads(path.read_bytes())
    section = next(s for s in document["models"] if s["model"] == "annotation.prompt")
    column = section["fields"].index("text")
    for row, text in zip(section["rows"], texts):
        row[column] = text
    path.write_bytes(json.dumps(document).encode())
    return path


def test_a_dump_with_hostile_text_restores_exact_and_renders_inert(client, researcher, small_study, tmp_path):
    texts = [SCRIPT, IMG, '=HYPERLINK("http://x")', "\u202eRTL", BIG]
    path = _dump_with_prompt_texts(small_study, tmp_path, texts)
    small_study.delete()
    call_command("restore_study", str(path))
    restored = Study.objects.get(slug="small")
    assert sorted(restored.prompts.values_list("text", flat=True)) == sorted(texts)
    client.force_login(researcher)
    page = client.get(reverse("annotation:study_detail", args=["small"]))
    assert page.status_code == 200
    assert_inert_html(page.content.decode())


def test_a_dump_with_a_nul_character_is_refused_and_nothing_is_written(small_study, tmp_path):
    path = _dump_with_prompt_texts(small_study, tmp_path, [NUL])
    small_study.delete()
    before = count_rows()
    with pytest.raises(CommandError, match="NUL"):
        call_command("restore_study", str(path))
    assert count_rows() == before


@pytest.mark.parametrize(
    "raw,words",
    [
        (b"{not json", "JSON"),
        (b"\xff\xfe{}", ""),
        (SURROGATE, ""),
        (b"[]", ""),
        (json.dumps({"format": "pluriharms.study-dump", "version": 99}).encode(), "version"),
        (b"\x1f\x8b\x08\x00garbage", ""),
    ],
)
def test_a_malformed_dump_is_refused_and_nothing_is_written(tmp_path, raw, words):
    path = tmp_path / "bad.json"
    path.write_bytes(raw)
    before = count_rows()
    with pytest.raises(CommandError) as refused:
        call_command("restore_study", str(path))
    assert words in str(refused.value)
    assert count_rows() == before


# --- a study's title and description, through the admin --------------------------------------------


def _admin_change_data(staff, instance) -> dict:
    """The admin change form's current values as a browser would post them back."""
    from django.contrib import admin
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = staff
    form = admin.site._registry[type(instance)].get_form(request, instance)(instance=instance)
    data = {}
    for field in form:
        value = field.value()
        if isinstance(value, bool):
            if value:
                data[field.name] = "on"
        elif value is None:
            data[field.name] = ""
        elif isinstance(value, (list, tuple)):
            data[field.name] = [str(getattr(v, "pk", v)) for v in value]
        else:
            data[field.name] = str(getattr(value, "pk", value))
    # Each inline (collaborators…) posts its management form, as the page does, with no rows changed.
    model_admin = admin.site._registry[type(instance)]
    for formset, _inline in model_admin.get_formsets_with_inlines(request, instance):
        inline = formset(instance=instance, prefix=None)
        management = inline.management_form
        for name in ("TOTAL_FORMS", "INITIAL_FORMS", "MIN_NUM_FORMS", "MAX_NUM_FORMS"):
            data[f"{inline.prefix}-{name}"] = str(management[name].value())
        for i, sub in enumerate(inline.forms):
            for field in sub:
                value = field.value()
                if value is not None and not isinstance(value, bool):
                    data[f"{inline.prefix}-{i}-{field.name}"] = str(getattr(value, "pk", value))
    return data


@pytest.mark.parametrize("text", [*HOSTILE_TEXTS.values(), NUL], ids=[*HOSTILE_TEXTS, "nul"])
def test_hostile_study_titles_and_descriptions_are_refused_or_shown_inert(client, staff, researcher, take_study, text):
    client.force_login(staff)
    url = reverse("admin:annotation_study_change", args=[take_study.pk])
    data = _admin_change_data(staff, take_study) | {"title": text, "description": text}
    before = count_rows()
    response = client.post(url, data)
    take_study.refresh_from_db()
    if len(text.strip()) > 200 or "\x00" in text:  # too long for a title, or a NUL: the form says so
        assert response.status_code == 200 and b"errornote" in response.content
        assert take_study.title == "Harm study"
        assert_inert_html(response.content.decode())
    else:
        assert response.status_code == 302, response.content.decode()[:2000]
        assert take_study.title == text.strip() and take_study.description == text.strip()
    assert count_rows() == before
    pages = [
        (client, reverse("admin:annotation_study_changelist")),
        (client, url),
        (client, reverse("annotation:study_list")),
        (client, reverse("annotation:study_detail", args=["harm"])),
        (client, reverse("benchmark:overview", args=["harm"])),
    ]
    annotator = type(client)()
    annotator.get(link(take_study))
    pages += [(annotator, reverse("take:consent", args=["harm"])), (type(client)(), link(take_study, pid="=x"))]
    for who, page in pages:
        shown = who.get(page)
        assert shown.status_code in (200, 400), page
        assert_inert_html(shown.content.decode())
    api = APIClient()
    api.force_authenticate(researcher)
    listed = api.get("/api/studies/").json()["results"]
    assert [(s["title"], s["description"]) for s in listed] == [(take_study.title, take_study.description)]


# --- survey answers ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ALL_HOSTILE, ids=ALL_IDS)
def test_hostile_survey_answers_are_refused_item_by_item_and_nothing_is_stored(client, take_study, value):
    Study.objects.filter(pk=take_study.pk).update(instruments=["demographics"])
    client.get(link(take_study))
    client.post(reverse("take:consent", args=["harm"]), {"consent": "agree"})
    url = reverse("take:survey", args=["harm", "demographics"])
    page = client.get(url)
    assert page.status_code == 200
    items = [item["id"] for item in instrument_load("demographics")["items"]]
    before = count_rows()
    response = client.post(url, {item: value for item in items} | {"extra_field": value})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Choose" in html or "Please answer" in html
    assert_inert_html(html)
    assert count_rows() == before and Annotator.objects.get().demographics == {}


# --- the rating form ---------------------------------------------------------------------------------


@pytest.fixture
def rater(client, take_study):
    return start_rating(client, take_study)


@pytest.mark.parametrize("value", ALL_HOSTILE, ids=ALL_IDS)
def test_hostile_rating_values_get_a_400_card_and_nothing_is_written(client, take_study, rater, value):
    for htmx in (True, False):
        response = submit(client, take_study, current(rater), htmx=htmx, rating=value)
        assert response.status_code == 400
        html = response.content.decode()
        assert 'id="rating-error"' in html and 'id="rating-form"' in html
        assert_inert_html(html)
    assert Rating.objects.count() == 0 and not Assignment.objects.filter(answered_at__isnull=False).exists()


@pytest.mark.parametrize("value", ALL_HOSTILE, ids=ALL_IDS)
def test_hostile_response_times_are_dropped_and_the_rating_kept(client, take_study, rater, value):
    response = submit(client, take_study, current(rater), rating="40", rt_ms=value)
    assert response.status_code == 200
    rating = Rating.objects.get()
    assert rating.value == 40 and rating.rt_ms is None  # none of these is a time in range


@pytest.mark.parametrize("value", ALL_HOSTILE, ids=ALL_IDS)
def test_hostile_idempotency_keys_are_refused_or_stored_short(client, take_study, rater, value):
    first = current(rater)
    response = submit(client, take_study, first, rating="40", idempotency_key=value)
    if "\x00" in value:
        assert response.status_code == 400 and Rating.objects.count() == 0
        assert_inert_html(response.content.decode())
        return
    assert response.status_code == 200
    rating = Rating.objects.get()
    assert rating.idempotency_key == value.strip()[:64]
    again = submit(client, take_study, first, rating="90", idempotency_key=value)  # a retry: the first answer stands
    assert again.status_code == 200 and Rating.objects.get().value == 40


def test_an_idempotency_key_reused_for_another_trial_is_a_409(client, take_study, rater):
    submit(client, take_study, current(rater), rating="40", idempotency_key="same")
    response = submit(client, take_study, current(rater), rating="50", idempotency_key="same")
    assert response.status_code == 409 and Rating.objects.count() == 1


@pytest.mark.parametrize("assignment_id", [0, 2**31, 2**63 - 1, 2**63, 10**30, int("9" * 400)])
def test_tampered_assignment_ids_are_404_and_nothing_is_written(client, take_study, rater, assignment_id):
    url = f"/s/harm/rate/{assignment_id}/"
    response = client.post(url, {"rating": "40"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 404
    assert Rating.objects.count() == 0


def test_another_annotators_trial_is_404_and_theirs_stays_unanswered(client, take_study, rater):
    other = start_rating(type(client)(), take_study, pid="someoneelse0000000000000")
    theirs = current(other)
    assert submit(client, take_study, theirs, rating="40").status_code == 404
    assert not Rating.objects.filter(assignment=theirs).exists()


# --- the recruitment link ------------------------------------------------------------------------------

LINK_VALUES = {
    "overlong": "x" * 65,
    "very-long": "x" * 10_000,
    "script": SCRIPT,
    "img": IMG,
    "template": "{{ 7*7 }}",
    "formula": "=HYPERLINK(1)",
    "unicode-letters": "Ünïcödé",
    "fullwidth-digits": "１２３４",
    "rtl-override": "abc\u202edef",
    "nul": NUL,
    "crlf": "abc\r\nSet-Cookie: x=1",
    "space": "a b",
    "sql": "'; DROP TABLE annotation_rating; --",
}


@pytest.mark.parametrize("param", ["PROLIFIC_PID", "STUDY_ID", "SESSION_ID"])
@pytest.mark.parametrize("value", list(LINK_VALUES.values()), ids=list(LINK_VALUES))
def test_hostile_recruitment_parameters_get_a_400_page_and_no_annotator(client, take_study, param, value, caplog):
    caplog.set_level(logging.DEBUG)
    query = {"PROLIFIC_PID": CANARY, "STUDY_ID": "st123", "SESSION_ID": "se456"} | {param: value}
    response = client.get("/s/harm/", query)
    assert response.status_code == 400
    html = response.content.decode()
    assert f"{param} is not valid" in html
    assert_inert_html(html)
    assert value not in html and CANARY not in html
    assert Annotator.objects.count() == 0
    assert CANARY not in caplog.text and (len(value) < 3 or value not in caplog.text)


def test_entering_through_the_link_rotates_the_session(client, take_study):
    """Session fixation: a session planted before the link (a shared computer, a forged cookie) does
    not become the annotator's; a new key is issued at entry, and again when resuming."""
    from django.contrib.sessions.models import Session

    planted = client.session
    planted["planted"] = True
    planted.save()
    response = client.get(link(take_study))
    assert response.status_code == 302
    entered = client.session.session_key
    assert entered != planted.session_key and not Session.objects.filter(session_key=planted.session_key).exists()
    assert client.session["annotator:harm"] == Annotator.objects.get().pk
    client.get(link(take_study))  # resuming from the link again
    assert client.session.session_key != entered and client.session["annotator:harm"] == Annotator.objects.get().pk


@pytest.mark.parametrize("slug", [SCRIPT, "x" * 5000, "%00", "..%2F..%2Fetc"])
def test_hostile_study_slugs_in_the_link_are_404_without_an_echo(client, slug):
    response = client.get(f"/s/{slug}/", {"PROLIFIC_PID": CANARY, "STUDY_ID": "a", "SESSION_ID": "b"})
    assert response.status_code == 404
    html = response.content.decode()
    assert_inert_html(html)
    assert CANARY not in html


# --- the raw recruitment id never comes back out ------------------------------------------------------


def test_the_raw_participant_id_is_in_no_page_export_api_answer_dump_or_log_line(
    client, staff, researcher, take_study, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG)
    Study.objects.filter(pk=take_study.pk).update(recruitment_study_id="st123", min_seconds_per_rating=0)
    answers = []
    answers.append(client.get(link(take_study, pid=CANARY)))
    answers.append(client.get(reverse("take:consent", args=["harm"])))
    answers.append(client.post(reverse("take:consent", args=["harm"]), {"consent": "agree"}))
    answers.append(client.get(reverse("take:instructions", args=["harm"])))
    answers.append(client.post(reverse("take:instructions", args=["harm"])))
    annotator = Annotator.objects.get()
    answers.append(client.post("/s/harm/rate/999999/", {"rating": "5"}))  # an error page on the way
    answers.append(submit(client, take_study, current(annotator), rating="abc"))  # a 400 card
    while (assignment := current(annotator)) is not None:
        answers.append(client.get(reverse("take:rate", args=["harm"])))
        answers.append(submit(client, take_study, assignment, rating="30"))
    answers.append(client.get(reverse("take:done", args=["harm"])))
    answers.append(client.get(link(take_study, pid=CANARY)))  # resuming
    answers.append(type(client)().get(link(take_study, pid=CANARY, STUDY_ID="otherstudy")))  # refused: wrong study
    Study.objects.filter(pk=take_study.pk).update(status="paused")
    answers.append(type(client)().get(link(take_study, pid="newcomer0000000000000000")))  # refused: paused
    answers.append(type(client)().get(link(take_study, pid=CANARY)))  # a completed annotator still sees the code
    assert [a.status_code for a in answers[-3:]] == [403, 403, 302]
    annotator.refresh_from_db()
    assert annotator.status == "completed"

    client.force_login(researcher)
    for name in ("annotation:study_detail", "benchmark:overview", "benchmark:agreement"):
        answers.append(client.get(reverse(name, args=["harm"])))
    answers.append(client.get(reverse("benchmark:overview_csv", args=["harm", "status"])))
    api = APIClient()
    api.force_authenticate(researcher)
    answers += [api.get("/api/studies/"), api.get("/api/studies/harm/"), api.get("/api/studies/harm/prompts/")]
    for fmt in ("long-csv", "parquet", "jsonl", "pluriharms"):
        job = job_create(kind="export", study=take_study, params={"format": fmt})
        assert job_run(job_id=job.pk).status == "succeeded"
        answers.append(api.get(f"/api/jobs/{job.pk}/"))
        for artifact in job.artifacts.all():
            download = api.get(f"/api/jobs/{job.pk}/files/{artifact.name}/")
            answers.append(download)
            assert CANARY.encode() not in b"".join(download.streaming_content), artifact.name
    admin = type(client)()
    admin.force_login(staff)
    for url in (
        reverse("admin:annotation_annotator_changelist"),
        reverse("admin:annotation_annotator_change", args=[annotator.pk]),
        reverse("admin:annotation_rating_changelist"),
    ):
        answers.append(admin.get(url))
    call_command("dump_study", "harm", "--out", str(tmp_path / "dump.json"))

    for answer in answers:
        assert answer.status_code < 500
        body = b"".join(answer.streaming_content) if answer.streaming else answer.content
        assert CANARY.encode() not in body, answer
        assert CANARY not in str(answer.headers)
    assert CANARY.encode() not in (tmp_path / "dump.json").read_bytes()
    assert CANARY not in caplog.text
    assert not any(CANARY in str(record.args) for record in caplog.records)


# --- JSON API payloads -------------------------------------------------------------------------------------

BAD_JOB_BODIES = {
    "not-json": b"{nope",
    "nan-literal": b'{"kind": "export", "study": "small", "params": {"format": NaN}}',
    "infinity-literal": b'{"kind": "analysis", "study": "small", "params": {"n_boot": Infinity}}',
    "a-list": b"[]",
    "a-string": b'"export"',
    "kind-number": {"kind": 123, "study": "small"},
    "kind-list": {"kind": ["export"], "study": "small"},
    "kind-object": {"kind": {"$ne": ""}, "study": "small"},
    "kind-null": {"kind": None, "study": "small"},
    "kind-script": {"kind": SCRIPT, "study": "small"},
    "kind-nul": {"kind": NUL, "study": "small"},
    "kind-100kB": {"kind": BIG, "study": "small"},
    "study-script": {"kind": "export", "study": SCRIPT},
    "study-sql": {"kind": "export", "study": "'; DROP TABLE annotation_rating; --"},
    "study-list": {"kind": "export", "study": ["small"]},
    "params-string": {"kind": "export", "study": "small", "params": "format=parquet"},
    "params-list": {"kind": "export", "study": "small", "params": ["parquet"]},
    "params-null": {"kind": "export", "study": "small", "params": None},
    "params-extra-key": {"kind": "export", "study": "small", "params": {"format": "jsonl", "out_dir": "/tmp"}},
    "format-script": {"kind": "export", "study": "small", "params": {"format": SCRIPT}},
    "format-formula": {"kind": "export", "study": "small", "params": {"format": '=HYPERLINK("http://x")'}},
    "format-nul": {"kind": "export", "study": "small", "params": {"format": NUL}},
    "format-number": {"kind": "export", "study": "small", "params": {"format": 1}},
    "huge-array": {"kind": "benchmark", "study": "small", "params": {"predictors": ["annotator_mean"] * 100_000}},
    "predictor-script": {"kind": "benchmark", "study": "small", "params": {"predictors": [SCRIPT]}},
    "predictor-nul": {"kind": "benchmark", "study": "small", "params": {"predictors": [NUL]}},
    "predictor-nested": {"kind": "benchmark", "study": "small", "params": {"predictors": [["a"]]}},
    "splits-negative": {"kind": "benchmark", "study": "small", "params": {"predictors": ["global_mean"], "splits": -1}},
    "splits-huge": {"kind": "benchmark", "study": "small", "params": {"predictors": ["global_mean"], "splits": 10**30}},
    "splits-400-digits": {"kind": "benchmark", "study": "small", "params": {"splits": "9" * 400}},
    "splits-float": {"kind": "benchmark", "study": "small", "params": {"predictors": ["global_mean"], "splits": 1e400}},
    "splits-string-nan": {"kind": "benchmark", "study": "small", "params": {"splits": "NaN"}},
    "seed-too-big": {"kind": "benchmark", "study": "small", "params": {"predictors": ["global_mean"], "seed": 2**64}},
    "upload-other-type": {"kind": "benchmark", "study": "small", "params": {"predictors": ["uploaded"], "upload": "1"}},
    "n-boot-bool": {"kind": "analysis", "study": "small", "params": {"n_boot": True}},
    "mixed-effects-string": {"kind": "analysis", "study": "small", "params": {"mixed_effects": "yes"}},
    "top-level-extra-key": {"kind": "export", "study": "small", "params": {}, "status": "succeeded"},
}


@pytest.mark.parametrize("body", list(BAD_JOB_BODIES.values()), ids=list(BAD_JOB_BODIES))
def test_hostile_job_requests_get_a_clear_4xx_and_no_job(researcher, small_study, body):
    api = APIClient()
    api.force_authenticate(researcher)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    before = count_rows()
    response = api.post("/api/jobs/", raw, content_type="application/json")
    assert response.status_code in (400, 404), response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    answer = response.json()
    assert set(answer) == {"message", "extra"} and answer["message"]
    assert count_rows() == before


def test_job_messages_that_echo_the_request_stay_json(researcher, small_study):
    """An error message may quote what was sent; it goes back as JSON text, never as a page."""
    api = APIClient()
    api.force_authenticate(researcher)
    response = api.post("/api/jobs/", {"kind": "export", "study": "small", "params": {"format": SCRIPT}}, format="json")
    assert response.status_code == 400 and SCRIPT in response.json()["message"]
    assert response["Content-Type"].startswith("application/json")
    assert response.get("X-Content-Type-Options") == "nosniff"


# --- uploaded prediction files ---------------------------------------------------------------------------

GOOD_HEADER = b"prompt,annotator,prediction\n"
BAD_UPLOADS = {
    "invalid-utf8": GOOD_HEADER + b"1,P0001,0.5\xff\xfe\n",
    "latin-1": GOOD_HEADER + "1,P0001,0.5,caf\u00e9\n".encode("latin-1"),
    "lone-surrogate": GOOD_HEADER + b"1,P0001," + SURROGATE + b"\n",
    "utf-16": (GOOD_HEADER + b"1,P0001,0.5\n").decode().encode("utf-16"),
    "nul-byte": GOOD_HEADER + b"1,P0001,0.5\x00\n",
    "empty": b"",
    "header-only": GOOD_HEADER,
    "unclosed-quote": GOOD_HEADER + b'"1,P0001,0.5\n',
    "formula-prompt": GOOD_HEADER + b'"=HYPERLINK(""http://x"")",P0001,0.5\n',
    "formula-prediction": GOOD_HEADER + b"1,P0001,=1+1\n",
    "script-annotator": GOOD_HEADER + b"1,<script>alert(1)</script>,0.5\n",
    "nan": GOOD_HEADER + b"1,P0001,NaN\n",
    "infinity": GOOD_HEADER + b"1,P0001,Infinity\n",
    "negative": GOOD_HEADER + b"1,P0001,-2\n",
    "huge-number": GOOD_HEADER + b"1,P0001," + b"9" * 400 + b"\n",
    "duplicate-columns": b"prompt,prompt,prediction\n1,1,0.5\n",
    "json-not-csv": b'{"prompt": 1, "prediction": 0.5}',
    "binary": bytes(range(256)) * 4,
}


@pytest.mark.parametrize("content", list(BAD_UPLOADS.values()), ids=list(BAD_UPLOADS))
def test_hostile_prediction_uploads_are_refused_and_nothing_is_stored(researcher, small_study, settings, content):
    api = APIClient()
    api.force_authenticate(researcher)
    before = count_rows()
    upload = SimpleUploadedFile("predictions.csv", content, content_type="text/csv")
    response = api.post("/api/studies/small/uploads/predictions/", {"file": upload}, format="multipart")
    assert response.status_code == 400, response.content[:300]
    assert response["Content-Type"].startswith("application/json") and response.json()["message"]
    assert count_rows() == before
    uploads = Path(settings.MEDIA_ROOT) / "uploads"
    assert not uploads.exists() or not any(p.is_file() for p in uploads.rglob("*"))


@pytest.mark.parametrize("content", [BAD_UPLOADS["formula-prompt"], BAD_UPLOADS["script-annotator"]], ids=["f", "s"])
def test_a_refused_upload_on_the_benchmark_page_is_shown_escaped(client, researcher, small_study, content):
    client.force_login(researcher)
    upload = SimpleUploadedFile("p.csv", content, content_type="text/csv")
    before = count_rows()
    response = client.post(
        reverse("benchmark:benchmark_start", args=["small"]),
        {"predictions": upload, "splits": "2"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 400
    assert_inert_html(response.content.decode())
    assert count_rows() == before


def test_an_upload_with_a_hostile_file_name_keeps_our_name_and_shows_it_inert(client, staff, researcher, small_study):
    prompts = list(small_study.prompts.values_list("external_id", flat=True))
    body = GOOD_HEADER + b"".join(f"{p},P0001,0.5\n".encode() for p in prompts)
    api = APIClient()
    api.force_authenticate(researcher)
    name = '"><img src=x onerror=alert(1)>.csv'
    response = api.post(
        "/api/studies/small/uploads/predictions/", {"file": SimpleUploadedFile(name, body)}, format="multipart"
    )
    assert response.status_code == 201
    upload = Upload.objects.get()
    assert "<" not in upload.file.name and ">" not in upload.file.name  # stored under a name of ours
    client.force_login(staff)
    for url in (
        reverse("admin:annotation_upload_changelist"),
        reverse("admin:annotation_upload_change", args=[upload.pk]),
    ):
        page = client.get(url)
        assert page.status_code == 200
        assert_inert_html(page.content.decode())


# --- job parameters from the pages --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [SCRIPT, IMG, '=HYPERLINK("http://x")', NUL, BIG, "9" * 400, "-1", "NaN"])
def test_hostile_job_parameters_on_the_pages_get_an_escaped_400_and_no_job(client, researcher, small_study, value):
    client.force_login(researcher)
    before = count_rows()
    for htmx in (False, True):
        headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
        posts = [
            (reverse("annotation:export_start", args=["small"]), {"format": value}),
            (reverse("benchmark:benchmark_start", args=["small"]), {"predictors": "global_mean", "splits": value}),
            (reverse("benchmark:benchmark_start", args=["small"]), {"predictors": value}),
            (reverse("benchmark:benchmark_start", args=["small"]), {"predictors": "global_mean", "seed": value}),
        ]
        for url, data in posts:
            response = client.post(url, data, **headers)
            assert response.status_code == 400, (url, data, response.status_code)
            assert_inert_html(response.content.decode())
    assert count_rows() == before


def test_every_test_docs_security_md_cites_exists():
    """docs/security.md names tests as `path::name` (or `::name` after a path): each must exist."""
    import re

    from django.conf import settings

    root = Path(settings.BASE_DIR)
    text = (root / "docs" / "security.md").read_text(encoding="utf-8")
    cited, current_file = [], None
    for path, name in re.findall(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`", text):
        current_file = path or current_file
        if path:
            assert (root / path).is_file(), path
        if name:
            cited.append((current_file, name))
    assert len(cited) > 40
    for path, name in cited:
        assert re.search(rf"^def {name}\(", (root / path).read_text(encoding="utf-8"), re.M), f"{path}::{name}"
