"""The participants page, its CSV and API; one annotator's page; exclude and reinstate (data kept, exports
marked); the recruitment-id lookup (ids hashed, never stored or logged)."""

import csv
import io
import json
import logging
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from annotation.exports import export_study
from annotation.models import Annotator, AnnotatorStatusChange, Assignment, Prompt, Rating, Study
from annotation.participants import (
    PARTICIPANT_COLUMNS,
    participants_table,
    recruitment_ids_parse,
    recruitment_lookup,
)
from annotation.services.recruitment import instrument_get, recruitment_hash
from annotation.services.review import annotator_exclude, annotator_reinstate
from config.errors import ApplicationError

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
PID_A = "5f3c2a9e8b7d6c5b4a392817"
PID_B = "60aa11bb22cc33dd44ee55ff"
PID_C = "6112ab34cd56ef7890ab12cd"
CANARY = "CANARYc0ffee0000deadbeef"  # a recruitment id that must turn up in no log line and no row


def _annotator(study, pseudonym, status, pid="", **fields):
    return Annotator.objects.create(
        study=study,
        pseudonym=pseudonym,
        status=status,
        recruitment_hash=recruitment_hash(pid) if pid else "",
        **fields,
    )


def _trials(annotator, prompts, values, rts, server_rts=None, checks=()):
    """Prompt trials at positions 1.. (value None = Unsure), then attention checks: (answered value or
    None for unanswered, passed)."""
    server_rts = server_rts or [None] * len(values)
    for i, (prompt, value, rt, srt) in enumerate(zip(prompts, values, rts, server_rts), start=1):
        a = Assignment.objects.create(annotator=annotator, prompt=prompt, position=i, answered_at=timezone.now())
        Rating.objects.create(
            assignment=a,
            annotator=annotator,
            prompt=prompt,
            value=value,
            unsure=value is None,
            rt_ms=rt,
            server_rt_ms=srt,
        )
    for j, (value, passed) in enumerate(checks, start=len(values) + 1):
        a = Assignment.objects.create(
            annotator=annotator,
            kind=Assignment.Kind.ATTENTION,
            check_spec={"type": "instructional", "text": "Move the slider to 80", "expected": 80},
            position=j,
            answered_at=timezone.now() if value is not None else None,
            check_passed=passed,
        )
        if value is not None:
            Rating.objects.create(assignment=a, annotator=annotator, value=value, unsure=False, rt_ms=3000)


@pytest.fixture
def study(researcher):
    """Four prompts; A completed, B rating, C excluded by a researcher, D consented with nothing yet.

    By hand (min 2 s a rating):
      A: 10, 10, 50, 90 in trial order, RT 1, 3, 5 s and (server) 7 s: median 4 s, 1 too fast,
         straight-lining 1/3; check passed; 5/5 trials; 600 s on task; 2 of 2 questionnaires.
      B: 20, 30, 60, Unsure, RT 2.5 s each: median 2.5, none too fast, straight-lining 0/3; one check
         failed and one unanswered: 5/6 trials; 125 s so far; 1 of 2 questionnaires.
      C: 0, 0, 0, 0 at 0.5 s: 4 too fast, straight-lining 3/3; no variance, so no agreement.
    Consensus comes from A and B (C is excluded): A's ratings 10, 10, 50 against B's 20, 30, 60 on the
    prompts B rated (prompt 4 has no other rater), and B's 20, 30, 60 against A's 10, 10, 50.
    """
    s = Study.objects.create(
        slug="hand",
        title="By hand",
        status=Study.Status.RECRUITING,
        owner=researcher,
        instruments=["ai_literacy", "iri_brief"],
        min_seconds_per_rating=2.0,
        attention_checks=1,
    )
    prompts = Prompt.objects.bulk_create(
        [Prompt(study=s, external_id=f"q{i}", text=f"Prompt {i}", order=i) for i in range(1, 5)]
    )
    t0 = timezone.now() - timedelta(hours=1)
    a = _annotator(
        s,
        "P0001",
        "completed",
        PID_A,
        consented_at=t0,
        completed_at=t0 + timedelta(seconds=600),
        last_seen_at=t0 + timedelta(seconds=600),
    )
    b = _annotator(s, "P0002", "rating", PID_B, consented_at=t0, last_seen_at=t0 + timedelta(seconds=125))
    c = _annotator(s, "P0003", "completed", PID_C, consented_at=t0, completed_at=t0 + timedelta(seconds=60))
    _annotator(s, "P0004", "consented", consented_at=t0, last_seen_at=t0)
    _trials(a, prompts, [10, 10, 50, 90], [1000, 3000, 5000, None], [None, None, None, 7000], checks=[(80, True)])
    _trials(b, prompts, [20, 30, 60, None], [2500] * 4, checks=[(10, False), (None, None)])
    _trials(c, prompts, [0, 0, 0, 0], [500] * 4)
    from annotation.models import SurveyResponse

    for annotator, keys in ((a, ["ai_literacy", "iri_brief"]), (b, ["iri_brief"])):
        for key in keys:
            SurveyResponse.objects.create(annotator=annotator, instrument=instrument_get(key), answers={"x": 1})
    annotator_exclude(annotator=c, reason="answered everything 0 in half a second", user=researcher)
    return s


def _rows(study, **kwargs):
    return {row["pseudonym"]: row for row in participants_table(study=study, **kwargs)}


# --- the figures, checked by hand -----------------------------------------------------------


def test_figures_by_hand(study):
    rows = _rows(study)
    a, b, c, d = rows["P0001"], rows["P0002"], rows["P0003"], rows["P0004"]
    assert list(a) == list(PARTICIPANT_COLUMNS)
    assert (a["answered"], a["assigned"], b["answered"], b["assigned"], d["answered"], d["assigned"]) == (
        5,
        5,
        5,
        6,
        0,
        0,
    )
    assert (a["checks_passed"], a["checks_failed"], b["checks_passed"], b["checks_failed"]) == (1, 0, 0, 1)
    assert a["median_rt_s"] == pytest.approx(4.0) and b["median_rt_s"] == pytest.approx(2.5)
    assert (a["too_fast"], b["too_fast"], c["too_fast"], d["too_fast"]) == (1, 0, 4, 0)
    assert a["straight_lining"] == pytest.approx(1 / 3)
    assert b["straight_lining"] == 0.0 and c["straight_lining"] == 1.0 and d["straight_lining"] is None
    assert a["time_on_task_s"] == pytest.approx(600) and b["time_on_task_s"] == pytest.approx(125)
    assert (a["surveys_done"], b["surveys_done"], c["surveys_done"], a["surveys_required"]) == (2, 1, 0, 2)
    r = np.corrcoef([10, 10, 50], [20, 30, 60])[0, 1]
    assert r == pytest.approx(0.9707253433941511)
    assert a["agreement_r"] == pytest.approx(r) and b["agreement_r"] == pytest.approx(r)
    assert c["agreement_r"] is None and d["agreement_r"] is None and d["median_rt_s"] is None
    assert c["status"] == "excluded" and c["exclusion_reason"] == "answered everything 0 in half a second"
    assert a["exclusion_reason"] == ""


def test_an_excluded_annotator_leaves_the_consensus_and_is_compared_to_it(study, researcher):
    # With C reinstated, A's consensus on prompts 1–3 is the mean of B and C: 10, 15, 30, and prompt 4 has C's 0.
    annotator_reinstate(annotator=Annotator.objects.get(pseudonym="P0003"), reason="checked again", user=researcher)
    a = _rows(study)["P0001"]
    assert a["agreement_r"] == pytest.approx(np.corrcoef([10, 10, 50, 90], [10, 15, 30, 0])[0, 1])
    # Excluded A is compared with the mean of B and C on every prompt they rated.
    annotator_exclude(annotator=Annotator.objects.get(pseudonym="P0001"), reason="test", user=researcher)
    a = _rows(study)["P0001"]
    assert a["agreement_r"] == pytest.approx(np.corrcoef([10, 10, 50, 90], [10, 15, 30, 0])[0, 1])
    b = _rows(study)["P0002"]  # B against C alone now: C has no variance
    assert b["agreement_r"] is None


def test_status_filter(study):
    assert list(_rows(study, status="excluded")) == ["P0003"]
    assert list(_rows(study, status="completed")) == ["P0001"]


def test_query_count_does_not_grow_with_annotators(study, researcher):
    with CaptureQueriesContext(connection) as few:
        participants_table(study=study)
    prompts = list(study.prompts.all())
    for i in range(5, 25):
        _trials(_annotator(study, f"P{i:04d}", "completed"), prompts, [i, i + 1, i + 2, i + 3], [3000] * 4)
    with CaptureQueriesContext(connection) as many:
        participants_table(study=study)
    assert len(few) == len(many) <= 5  # the fifth reads the latest latent-state job


# --- the page -------------------------------------------------------------------------------


def test_page_full_and_htmx(client, study, researcher):
    client.force_login(researcher)
    url = reverse("annotation:participants", args=["hand"])
    page = client.get(url)
    assert page.status_code == 200
    body = page.content.decode()
    assert "<html" in body and 'id="participant-table"' in body and "P0001" in body and "Participants</a>" in body
    assert "answered everything 0 in half a second" in body and "0.97" in body
    part = client.get(url, HTTP_HX_TARGET="participant-table", **HTMX)
    assert part.status_code == 200 and "<html" not in part.content.decode()
    assert part.content.decode().lstrip().startswith('<div id="participant-table">')


def test_page_sorting_filter_and_pagination(client, study, researcher):
    client.force_login(researcher)
    url = reverse("annotation:participants", args=["hand"])

    def order(**params):
        body = client.get(url, params, HTTP_HX_TARGET="participant-table", **HTMX).content.decode()
        found = [(body.find(f">{p}</a>"), p) for p in ("P0001", "P0002", "P0003", "P0004") if f">{p}</a>" in body]
        return [p for _, p in sorted(found)]

    assert order(sort="-too_fast")[:2] == ["P0003", "P0001"]
    assert order(sort="agreement_r")[-2:] in (["P0001", "P0002"], ["P0002", "P0001"])
    assert order(sort="-pseudonym") == ["P0004", "P0003", "P0002", "P0001"]
    assert order(status="excluded") == ["P0003"]
    assert order(per_page=2) == ["P0001", "P0002"]
    assert order(per_page=2, page=2) == ["P0003", "P0004"]
    assert order(per_page=2, page=99) == ["P0003", "P0004"]  # past the end: the last page
    assert client.get(url, {"sort": "nonsense"}).status_code == 200
    bad = client.get(url, {"status": "asleep"}, **HTMX)
    assert bad.status_code == 400 and "Unknown status" in bad.content.decode() and bad["HX-Retarget"] == "#htmx-error"
    assert client.get(url, {"per_page": "100000"}).status_code == 400


def test_page_access(client, study, researcher, outsider, staff):
    url = reverse("annotation:participants", args=["hand"])
    assert client.get(url).status_code == 302  # anonymous: sign in
    client.force_login(outsider)
    assert client.get(url).status_code == 404
    client.force_login(staff)
    assert client.get(url).status_code == 200
    assert client.post(url).status_code == 405


def test_csv_shares_the_selector(client, study, researcher):
    client.force_login(researcher)
    response = client.get(reverse("annotation:participants_csv", args=["hand"]))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    frame = pd.read_csv(io.BytesIO(response.content))
    assert list(frame.columns) == list(PARTICIPANT_COLUMNS)
    table = pd.DataFrame(participants_table(study=study))
    assert frame["pseudonym"].tolist() == table["pseudonym"].tolist()
    assert frame["agreement_r"].tolist()[:2] == pytest.approx(table["agreement_r"].tolist()[:2])
    only = client.get(reverse("annotation:participants_csv", args=["hand"]), {"status": "excluded"})
    assert pd.read_csv(io.BytesIO(only.content))["pseudonym"].tolist() == ["P0003"]


def test_csv_neutralises_formula_cells(client, study, researcher):
    Annotator.objects.filter(pseudonym="P0003").update(exclusion_reason='=HYPERLINK("http://x","y")')
    client.force_login(researcher)
    text = client.get(reverse("annotation:participants_csv", args=["hand"])).content.decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[2]["exclusion_reason"] == '\'=HYPERLINK("http://x","y")'


# --- one annotator --------------------------------------------------------------------------


def test_annotator_page(client, study, researcher, outsider):
    client.force_login(researcher)
    url = reverse("annotation:participant_detail", args=["hand", "P0002"])
    response = client.get(url)
    body = response.content.decode()
    assert response.status_code == 200
    # Trials in the order shown: prompts, Unsure, the failed check and the unanswered one.
    positions = [body.index(text) for text in ("Prompt 1", "Prompt 2", "Prompt 4", "<strong>failed</strong>")]
    assert positions == sorted(positions)
    assert "Unsure" in body and "not answered" in body and "2.5" in body
    assert "1 answered of 2" in body and "iri_brief" in body
    assert client.get(reverse("annotation:participant_detail", args=["hand", "P0099"])).status_code == 404
    client.force_login(outsider)
    assert client.get(url).status_code == 404


def test_annotator_page_shows_the_history(client, study, researcher):
    client.force_login(researcher)
    body = client.get(reverse("annotation:participant_detail", args=["hand", "P0003"])).content.decode()
    assert "completed → excluded" in body and "answered everything 0 in half a second" in body
    assert "Reinstate P0003" in body


# --- exclude and reinstate ------------------------------------------------------------------


def test_exclude_reinstate_round_trip_keeps_data(client, study, researcher):
    client.force_login(researcher)
    n_ratings = Rating.objects.count()
    url = reverse("annotation:participant_exclude", args=["hand", "P0002"])
    response = client.post(url, {"reason": "  straight  answers\n"}, **HTMX)
    assert response.status_code == 200 and 'id="participant-review"' in response.content.decode()
    b = Annotator.objects.get(pseudonym="P0002")
    assert (b.status, b.exclusion, b.exclusion_reason) == ("excluded", "researcher", "straight answers")
    again = client.post(url, {"reason": "twice"}, **HTMX)
    assert again.status_code == 409 and "already excluded" in again.content.decode()
    response = client.post(reverse("annotation:participant_reinstate", args=["hand", "P0002"]), {"reason": "ok"})
    assert response.status_code == 302 and response["Location"].endswith("/participants/P0002/")
    b.refresh_from_db()
    assert (b.status, b.exclusion, b.exclusion_reason) == ("rating", "", "")  # back where they were
    history = list(AnnotatorStatusChange.objects.filter(annotator=b).values_list("from_status", "to_status", "reason"))
    assert history == [("rating", "excluded", "straight answers"), ("excluded", "rating", "ok")]
    assert Rating.objects.count() == n_ratings  # nothing deleted


def test_exclude_needs_a_reason_and_the_edit_role(client, study, researcher, outsider):
    url = reverse("annotation:participant_exclude", args=["hand", "P0001"])
    assert client.post(url, {"reason": "x"}).status_code == 302  # anonymous
    client.force_login(outsider)
    assert client.post(url, {"reason": "x"}).status_code == 404
    client.force_login(researcher)
    assert client.get(url).status_code == 405
    empty = client.post(url, {"reason": "   "}, **HTMX)
    assert empty.status_code == 400 and "Give a reason" in empty.content.decode()
    long = client.post(url, {"reason": "x" * 201}, **HTMX)
    assert long.status_code == 400
    assert (
        client.post(reverse("annotation:participant_exclude", args=["hand", "P0099"]), {"reason": "x"}).status_code
        == 404
    )
    assert Annotator.objects.get(pseudonym="P0001").status == "completed"


def test_reinstating_an_attention_exclusion(study, researcher):
    # Excluded by the rating flow (no review record): back to completed if every prompt was rated.
    a = Annotator.objects.get(pseudonym="P0001")
    Annotator.objects.filter(pk=a.pk).update(status="excluded", exclusion="attention", exclusion_reason="failed 2")
    a = annotator_reinstate(annotator=a, reason="the checks were ambiguous", user=researcher)
    assert a.status == "completed" and a.exclusion_reason == ""
    change = a.status_changes.get()
    assert change.previous_reason == "failed 2" and change.to_status == "completed"
    b = Annotator.objects.get(pseudonym="P0002")
    Annotator.objects.filter(pk=b.pk).update(status="excluded", exclusion="attention", exclusion_reason="failed 2")
    Rating.objects.filter(annotator=b, prompt__external_id="q4").delete()
    assert annotator_reinstate(annotator=b, reason="r", user=researcher).status == "returned"
    with pytest.raises(ApplicationError) as refused:
        annotator_reinstate(annotator=b, reason="r", user=researcher)
    assert refused.value.status_code == 409


@pytest.mark.parametrize("fmt", ["long-csv", "jsonl", "parquet"])
def test_exports_keep_excluded_annotators_with_status_columns(study, tmp_path, fmt):
    export_study(study=study, fmt=fmt, out_dir=tmp_path)
    path = tmp_path / {"long-csv": "ratings.csv", "jsonl": "ratings.jsonl", "parquet": "ratings.parquet"}[fmt]
    if fmt == "long-csv":
        frame = pd.read_csv(path, keep_default_na=False)
    elif fmt == "jsonl":
        frame = pd.DataFrame([json.loads(line) for line in path.read_text().splitlines()])
    else:
        frame = pq.read_table(path).to_pandas()
    assert {"status", "exclusion_reason"} <= set(frame.columns) and "annotator_status" not in frame.columns
    c = frame[frame["annotator"] == "P0003"]
    assert len(c) == 4 and set(c["status"]) == {"excluded"}
    assert set(c["exclusion_reason"]) == {"answered everything 0 in half a second"}
    assert set(frame[frame["annotator"] == "P0001"]["exclusion_reason"]) == {""}
    assert len(frame) == Rating.objects.filter(prompt__isnull=False).count()


def test_the_release_format_is_unchanged_by_review_columns(small_study, researcher, tmp_path):
    before = tmp_path / "before"
    export_study(study=small_study, fmt="pluriharms", out_dir=before)
    annotator_exclude(annotator=small_study.annotators.first(), reason="test", user=researcher)
    export_study(study=small_study, fmt="pluriharms", out_dir=tmp_path / "after")
    for name in ("prompts.csv", "annotations.csv"):
        assert (before / name).read_bytes() == (tmp_path / "after" / name).read_bytes()


# --- recruitment-id lookup ------------------------------------------------------------------


def test_ids_parse():
    assert recruitment_ids_parse(f"{PID_A}\r\n\n  {PID_B} \n{PID_A}\n") == [PID_A, PID_B]
    assert recruitment_ids_parse(f"{PID_A},{PID_B}") == [PID_A, PID_B]
    with pytest.raises(ApplicationError) as refused:
        recruitment_ids_parse(f"{PID_A}\n<script>\n")
    assert refused.value.extra["problems"] == [{"line": 2, "message": refused.value.extra["problems"][0]["message"]}]
    for text in ("", "  \n "):
        with pytest.raises(ApplicationError):
            recruitment_ids_parse(text)


def test_lookup_verdicts(study):
    Annotator.objects.filter(pseudonym="P0002").update(status="excluded", exclusion="attention")
    rows = recruitment_lookup(study=study, ids=[PID_B, PID_A, CANARY, PID_C])
    assert [(r.recruitment_id, r.pseudonym, r.status, r.verdict) for r in rows] == [
        (PID_B, "P0002", "excluded", "reject"),
        (PID_A, "P0001", "completed", "approve"),
        (CANARY, "", "", "unknown"),
        (PID_C, "P0003", "excluded", "review"),  # excluded by a researcher: decided by hand
    ]


def test_lookup_page_and_csv(client, study, researcher):
    client.force_login(researcher)
    url = reverse("annotation:recruitment_lookup", args=["hand"])
    assert client.get(url).status_code == 200
    ids = f"{PID_A}\n{CANARY}\n"
    full = client.post(url, {"ids": ids})
    assert full.status_code == 200 and "<html" in full.content.decode() and "approve" in full.content.decode()
    part = client.post(url, {"ids": ids}, **HTMX)
    body = part.content.decode()
    assert part.status_code == 200 and "<html" not in body and "P0001" in body and "unknown" in body
    bad = client.post(url, {"ids": "not an id!"}, **HTMX)
    assert bad.status_code == 400 and "line 1" in bad.content.decode()
    download = client.post(reverse("annotation:recruitment_lookup_csv", args=["hand"]), {"ids": ids})
    assert download.status_code == 200 and "attachment" in download["Content-Disposition"]
    assert download["Cache-Control"] == "no-store"
    rows = list(csv.reader(io.StringIO(download.content.decode())))
    assert rows == [
        ["recruitment_id", "verdict", "pseudonym", "status"],
        [PID_A, "approve", "P0001", "completed"],
        [CANARY, "unknown", "", ""],
    ]
    assert client.get(reverse("annotation:recruitment_lookup_csv", args=["hand"])).status_code == 405


def test_lookup_csv_neutralises_formula_cells(client, study, researcher):
    client.force_login(researcher)
    download = client.post(reverse("annotation:recruitment_lookup_csv", args=["hand"]), {"ids": "-1234abcd"})
    assert download.content.decode().splitlines()[1].startswith("'-1234abcd,unknown")


def test_lookup_needs_the_edit_role(client, study, researcher):
    url = reverse("annotation:recruitment_lookup", args=["hand"])
    assert client.post(url, {"ids": PID_A}).status_code == 302  # anonymous
    client.force_login(get_user_model().objects.create_user("stranger"))
    assert client.post(url, {"ids": PID_A}).status_code == 404
    assert client.post(reverse("annotation:recruitment_lookup_csv", args=["hand"]), {"ids": PID_A}).status_code == 404


def test_lookup_never_stores_or_logs_the_raw_ids(client, study, researcher, caplog, settings):
    caplog.set_level(logging.DEBUG)
    client.force_login(researcher)
    n_before = {m: m.objects.count() for m in apps.get_models()}
    for name in ("recruitment_lookup", "recruitment_lookup_csv"):
        client.post(reverse(f"annotation:{name}", args=["hand"]), {"ids": f"{PID_A}\n{CANARY}"}, **HTMX)
    client.post(reverse("annotation:recruitment_lookup", args=["hand"]), {"ids": f"{CANARY}\n<bad>"}, **HTMX)
    assert caplog.records  # the request was logged (the canary is not in it)
    for record in caplog.records:
        assert (
            CANARY not in record.getMessage() and CANARY not in str(record.args) and CANARY not in str(record.__dict__)
        )
    assert {m: m.objects.count() for m in apps.get_models() if m._meta.label != "sessions.Session"} == {
        m: n for m, n in n_before.items() if m._meta.label != "sessions.Session"
    }
    with connection.cursor() as cursor:
        for model in apps.get_models():
            table = model._meta.db_table
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                assert CANARY not in repr(row), table
    assert recruitment_hash(CANARY) not in repr(list(Annotator.objects.values_list("recruitment_hash", flat=True)))


# --- API ------------------------------------------------------------------------------------


def _api(user):
    api = APIClient()
    if user is not None:
        api.force_authenticate(user)
    return api


def test_api_list(study, researcher):
    api = _api(researcher)
    response = api.get("/api/studies/hand/annotators/")
    assert response.status_code == 200
    data = response.json()
    assert data["count"] == 4 and [r["pseudonym"] for r in data["results"]] == ["P0001", "P0002", "P0003", "P0004"]
    assert set(data["results"][0]) == set(PARTICIPANT_COLUMNS)
    assert data["results"][0] == {**_rows(study)["P0001"]}
    excluded = api.get("/api/studies/hand/annotators/?status=excluded").json()
    assert [r["pseudonym"] for r in excluded["results"]] == ["P0003"]
    paged = api.get("/api/studies/hand/annotators/?page=2&page_size=2").json()
    assert paged["count"] == 4 and [r["pseudonym"] for r in paged["results"]] == ["P0003", "P0004"]
    assert paged["previous"] and paged["next"] is None
    bad = api.get("/api/studies/hand/annotators/?status=asleep")
    assert bad.status_code == 400 and set(bad.json()) == {"message", "extra"} and "asleep" in bad.json()["message"]


def test_api_exclude_reinstate(study, researcher):
    api = _api(researcher)
    response = api.post("/api/studies/hand/annotators/P0001/exclude/", {"reason": "bot-like timing"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "excluded" and response.json()["exclusion_reason"] == "bot-like timing"
    again = api.post("/api/studies/hand/annotators/P0001/exclude/", {"reason": "again"}, format="json")
    assert again.status_code == 409 and set(again.json()) == {"message", "extra"}
    missing = api.post("/api/studies/hand/annotators/P0001/reinstate/", {}, format="json")
    assert missing.status_code == 400 and "reason" in missing.json()["message"]
    unknown = api.post(
        "/api/studies/hand/annotators/P0001/reinstate/", {"reason": "x", "status": "completed"}, format="json"
    )
    assert unknown.status_code == 400
    back = api.post("/api/studies/hand/annotators/P0001/reinstate/", {"reason": "human after all"}, format="json")
    assert back.status_code == 200 and back.json()["status"] == "completed"
    assert api.post("/api/studies/hand/annotators/P0099/exclude/", {"reason": "x"}, format="json").status_code == 404
    assert api.get("/api/studies/hand/annotators/P0001/exclude/").status_code == 405


def test_api_roles(study, researcher, outsider, staff):
    assert _api(None).get("/api/studies/hand/annotators/").status_code in (401, 403)
    assert _api(outsider).get("/api/studies/hand/annotators/").status_code == 404
    out = _api(outsider).post("/api/studies/hand/annotators/P0001/exclude/", {"reason": "x"}, format="json")
    assert out.status_code == 404 and set(out.json()) == {"message", "extra"}
    assert _api(staff).get("/api/studies/hand/annotators/").status_code == 200
    ok = _api(staff).post("/api/studies/hand/annotators/P0001/exclude/", {"reason": "x"}, format="json")
    assert ok.status_code == 200


def test_api_schema_documents_the_endpoints(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    text = schema.content.decode()
    assert schema.status_code == 200
    for path in (
        "/api/studies/{slug}/annotators/",
        "/api/studies/{slug}/annotators/{pseudonym}/exclude/",
        "/api/studies/{slug}/annotators/{pseudonym}/reinstate/",
    ):
        assert path in text
    assert "agreement_r" in text and "straight_lining" in text and "409" in text


# --- roles ----------------------------------------------------------------------------------


@pytest.fixture
def viewer(study):
    user = get_user_model().objects.create_user("viewer")
    study.collaborators.add(user)  # the least-privileged role
    return user


@pytest.fixture
def editor(study):
    from annotation.models import Collaborator

    user = get_user_model().objects.create_user("editor")
    Collaborator.objects.create(study=study, user=user, role=Collaborator.Role.EDITOR)
    return user


def test_a_viewer_reads_and_downloads_but_does_not_review(client, study, viewer):
    client.force_login(viewer)
    for name, args in (
        ("participants", ["hand"]),
        ("participants_csv", ["hand"]),
        ("participant_detail", ["hand", "P0001"]),
    ):
        assert client.get(reverse(f"annotation:{name}", args=args)).status_code == 200, name
    page = client.get(reverse("annotation:participant_detail", args=["hand", "P0001"])).content.decode()
    assert "Exclude P0001" not in page and 'name="reason"' not in page
    listing = client.get(reverse("annotation:participants", args=["hand"])).content.decode()
    assert "Look up recruitment ids" not in listing
    for name, args in (
        ("participant_exclude", ["hand", "P0001"]),
        ("participant_reinstate", ["hand", "P0003"]),
        ("recruitment_lookup", ["hand"]),
        ("recruitment_lookup_csv", ["hand"]),
    ):
        response = client.post(reverse(f"annotation:{name}", args=args), {"reason": "x", "ids": PID_A})
        assert response.status_code == 403, name
    assert client.get(reverse("annotation:recruitment_lookup", args=["hand"])).status_code == 403
    api = _api(viewer)
    assert api.get("/api/studies/hand/annotators/").status_code == 200
    refused = api.post("/api/studies/hand/annotators/P0001/exclude/", {"reason": "x"}, format="json")
    assert refused.status_code == 403 and set(refused.json()) == {"message", "extra"}
    assert Annotator.objects.get(pseudonym="P0001").status == "completed"


def test_an_editor_reviews(client, study, editor):
    client.force_login(editor)
    page = client.get(reverse("annotation:participant_detail", args=["hand", "P0001"])).content.decode()
    assert "Exclude P0001" in page
    assert "Look up recruitment ids" in client.get(reverse("annotation:participants", args=["hand"])).content.decode()
    response = client.post(reverse("annotation:participant_exclude", args=["hand", "P0001"]), {"reason": "x"})
    assert response.status_code == 302
    assert AnnotatorStatusChange.objects.filter(annotator__pseudonym="P0001").get().user == editor
    assert client.post(reverse("annotation:recruitment_lookup", args=["hand"]), {"ids": PID_A}).status_code == 200
    api = _api(editor)
    back = api.post("/api/studies/hand/annotators/P0001/reinstate/", {"reason": "y"}, format="json")
    assert back.status_code == 200 and back.json()["status"] == "completed"
