"""Datasets: the LeWiDi and dataset-hub exports, the datasets page, and the ratings API (cursor pages and
the streaming CSV). Expected soft labels are worked out by hand on a small study."""

import csv
import io
import json
import zipfile
from datetime import UTC, datetime

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from django.db import connection
from django.urls import reverse

from annotation.api_ratings import ratings_csv_copy, ratings_csv_lines
from annotation.export_formats import bin_index, bin_labels, hard_label, soft_label
from annotation.exports import FORMATS, export_study
from annotation.models import Annotator, Assignment, Prompt, Rating, Study
from annotation.selectors import ratings_frame
from annotation.services.recruitment import recruitment_hash
from jobs.models import Job
from jobs.services import job_run

pytestmark = pytest.mark.django_db

CANARY = "CANARYPID5e1f0c9d8b7a6f5e4d3c"
LABELS = ["0-10", "10-20", "20-30", "30-40", "40-50", "50-60", "60-70", "70-80", "80-90", "90-100"]


def _rate(annotator, prompt, value, position, *, unsure=False, rt_ms=1500, when=None):
    assignment = Assignment.objects.create(annotator=annotator, prompt=prompt, position=position)
    rating = Rating.objects.create(
        assignment=assignment,
        annotator=annotator,
        prompt=prompt,
        value=None if unsure else value,
        unsure=unsure,
        rt_ms=rt_ms,
        server_rt_ms=None if rt_ms is None else rt_ms + 100,
    )
    if when is not None:
        Rating.objects.filter(pk=rating.pk).update(created_at=when)
    return rating


@pytest.fixture
def hand(researcher):
    """4 prompts, 4 annotators (H04 excluded); the ratings below, soft labels worked out by hand."""
    study = Study.objects.create(slug="hand", title="Hand study", owner=researcher, instruments=[])
    a, b, c, f = Prompt.objects.bulk_create(
        [
            Prompt(study=study, external_id="a", text="Prompt A", order=1, harm_level=1),
            Prompt(study=study, external_id="b", text="Prompt B", order=2),
            Prompt(study=study, external_id="c", text="Prompt C", order=3),
            Prompt(study=study, external_id="=SUM(1,2)", text="A formula id", order=4),
        ]
    )
    h1, h2, h3, h4 = Annotator.objects.bulk_create(
        [
            Annotator(study=study, pseudonym="H01", status="completed", demographics={"Age": "25-34"}),
            Annotator(study=study, pseudonym="H02", status="completed", demographics={"Age": "35-44"}),
            Annotator(study=study, pseudonym="H03", status="completed"),
            Annotator(
                study=study,
                pseudonym="H04",
                status=Annotator.Status.EXCLUDED,
                exclusion=Annotator.Exclusion.RESEARCHER,
                exclusion_reason="failed checks",
            ),
        ]
    )
    early, late = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)
    _rate(h1, a, 5, 1, when=early)
    _rate(h2, a, 15, 1, when=early)
    _rate(h3, a, None, 1, unsure=True, when=early)
    _rate(h4, a, 95, 1, when=early)
    _rate(h1, b, 100, 2, when=late)
    _rate(h2, b, 90, 2, when=late)
    _rate(h3, b, 10, 2, when=late)
    _rate(h1, c, None, 3, unsure=True, when=late)
    _rate(h2, f, 50, 3, rt_ms=None, when=late)
    return study


@pytest.fixture
def canary_study(client, researcher):
    """A study one annotator entered through the recruitment link with the canary id, and rated in."""
    study = Study.objects.create(
        slug="canary",
        title="Canary study",
        status=Study.Status.RECRUITING,
        owner=researcher,
        instruments=[],
        completion_code="DONE1",
    )
    Prompt.objects.bulk_create(
        [Prompt(study=study, external_id=f"p{i}", text=f"Prompt {i}", order=i) for i in range(1, 4)]
    )
    client.get(f"/s/canary/?PROLIFIC_PID={CANARY}&STUDY_ID=st1&SESSION_ID=se1")
    client.post(reverse("take:consent", args=["canary"]), {"consent": "agree"})
    client.post(reverse("take:instructions", args=["canary"]))
    annotator = Annotator.objects.get(study=study, recruitment_hash=recruitment_hash(CANARY))
    for _ in range(3):
        assignment = annotator.assignments.filter(rating__isnull=True).order_by("position").first()
        client.post(reverse("take:rate_submit", args=["canary", assignment.pk]), {"rating": "40"})
    client.logout()
    assert Rating.objects.filter(annotator=annotator).count() == 3
    return study


# --- bins -----------------------------------------------------------------------------------------


def test_bins_on_the_default_scale_and_others():
    study = Study(scale_min=0, scale_max=100)
    assert bin_labels(study) == LABELS
    assert bin_index([0, 9.99, 10, 55, 90, 100], study).tolist() == [0, 0, 1, 5, 9, 9]
    seven = Study(scale_min=1, scale_max=7)
    assert bin_labels(seven)[:2] == ["1-1.6", "1.6-2.2"] and bin_labels(seven)[-1] == "6.4-7"
    assert bin_index([1, 1.6, 2.2, 6.99, 7], seven).tolist() == [0, 1, 2, 9, 9]
    wide = Study(scale_min=0, scale_max=200)
    assert bin_labels(wide)[bin_index([150], wide)[0]] == "140-160"


def test_soft_and_hard_label_by_hand():
    study = Study(scale_min=0, scale_max=100)
    assert soft_label([5, 15, float("nan")], study) == {**dict.fromkeys(LABELS, 0.0), "0-10": 0.5, "10-20": 0.5}
    assert soft_label([float("nan")], study) is None and hard_label(None) is None
    assert hard_label(soft_label([5, 15], study)) is None  # a tie has no majority
    assert hard_label(soft_label([100, 90, 10], study)) == "90-100"


# --- LeWiDi ---------------------------------------------------------------------------------------


def test_lewidi_layout_and_soft_labels(hand, tmp_path):
    paths = export_study(study=hand, fmt="lewidi", out_dir=tmp_path)
    assert [p.name for p in paths] == [
        "lewidi.json",
        "lewidi_annotators_meta.json",
        "lewidi_metadata.json",
        "manifest.json",
    ]
    items = json.loads((tmp_path / "lewidi.json").read_text())
    assert list(items) == ["a", "b", "c", "=SUM(1,2)"]
    a = items["a"]
    assert set(a) == {
        "annotation task",
        "text",
        "number of annotators",
        "annotators",
        "number of annotations",
        "annotations",
        "hard_label",
        "soft_label",
        "split",
        "other_info",
    }
    assert a["text"] == "Prompt A" and a["annotation task"] == "harm rating on a 0-100 scale"
    assert a["annotators"] == "H01,H02,H03,H04"
    assert a["annotations"] == {"H01": "5", "H02": "15", "H03": "Unsure", "H04": "95"}
    assert a["number of annotations"] == 4 and a["number of annotators"] == 4
    # Unsure (H03) and the excluded H04 are left out of the soft label: 5 and 15.
    assert a["soft_label"] == {**dict.fromkeys(LABELS, 0.0), "0-10": 0.5, "10-20": 0.5}
    assert a["hard_label"] is None and a["split"] is None
    assert a["other_info"] == {"harm_level": 1.0, "number of unsure": 1, "number in soft label": 2}

    b = items["b"]
    assert b["annotations"] == {"H01": "100", "H02": "90", "H03": "10"}
    assert b["soft_label"]["90-100"] == pytest.approx(2 / 3) and b["soft_label"]["10-20"] == pytest.approx(1 / 3)
    assert sum(b["soft_label"].values()) == pytest.approx(1.0) and b["hard_label"] == "90-100"
    assert items["c"]["annotations"] == {"H01": "Unsure"}
    assert items["c"]["soft_label"] is None and items["c"]["hard_label"] is None
    assert items["=SUM(1,2)"]["hard_label"] == "50-60"

    meta = json.loads((tmp_path / "lewidi_annotators_meta.json").read_text())
    assert list(meta) == ["H01", "H02", "H03", "H04"]
    assert meta["H01"]["Annotator_id"] == "H01" and meta["H01"]["Age"] == "25-34"
    assert meta["H04"]["status"] == "excluded" and meta["H04"]["exclusion_reason"] == "failed checks"
    about = json.loads((tmp_path / "lewidi_metadata.json").read_text())
    assert "Unsure answers are left out" in about["soft_label"]["unsure"]
    assert [b["label"] for b in about["soft_label"]["bins"]] == LABELS
    assert about["counts"] == {"items": 4, "annotators": 4, "annotations": 9, "unsure": 2}


# --- dataset hub ----------------------------------------------------------------------------------


def _hub(study, tmp_path, license_id="cc-by-4.0"):
    paths = export_study(study=study, fmt="hub", out_dir=tmp_path, license_id=license_id)
    assert [p.name for p in paths] == ["dataset-hub.zip", "manifest.json"]
    return zipfile.ZipFile(tmp_path / "dataset-hub.zip")


def test_dataset_card_yaml_parses_and_counts_are_right(hand, tmp_path):
    bundle = _hub(hand, tmp_path)
    names = set(bundle.namelist())
    assert names == {
        "dataset-hub/README.md",
        "dataset-hub/data/ratings.parquet",
        "dataset-hub/data/annotators.parquet",
        "dataset-hub/data/prompts.parquet",
    }
    card = bundle.read("dataset-hub/README.md").decode()
    assert card.startswith("---\n")
    header_text, body = card[4:].split("\n---\n", 1)
    header = yaml.safe_load(header_text)
    assert header["license"] == "cc-by-4.0" and header["pretty_name"] == "Hand study"
    assert header["size_categories"] == ["n<1K"] and header["task_categories"]
    tables = {}
    for name in ("ratings", "annotators", "prompts"):
        tables[name] = pq.read_table(io.BytesIO(bundle.read(f"dataset-hub/data/{name}.parquet")))
    configs = {c["config_name"]: c for c in header["configs"]}
    assert configs["ratings"]["default"] is True
    for config in configs.values():
        assert f"dataset-hub/{config['data_files'][0]['path']}" in names
    info = {i["config_name"]: i for i in header["dataset_info"]}
    for name, table in tables.items():
        assert info[name]["splits"][0]["num_examples"] == table.num_rows
        assert [f["name"] for f in info[name]["features"]] == table.schema.names
    assert tables["ratings"].num_rows == 9 and tables["annotators"].num_rows == 4 and tables["prompts"].num_rows == 4
    ratings = tables["ratings"].to_pandas()
    assert ratings["unsure"].sum() == 2
    assert set(ratings.loc[ratings["annotator"] == "H04", "annotator_status"]) == {"excluded"}
    people = tables["annotators"].to_pandas().set_index("annotator")
    assert people.loc["H04", "exclusion_reason"] == "failed checks"
    assert "| Ratings | 9 |" in body and "| Unsure | 2 |" in body and "| Prompts | 4 |" in body
    assert "| excluded | 1 |" in body and "CC BY 4.0 (`cc-by-4.0`)" in body
    for section in ("## Collection design", "## Instruments", "## Schema", "## Licence", "## Citation"):
        assert section in body
    assert "Scale: 0 to 100 in steps of 1" in body


def test_dataset_card_license_defaults_to_other(hand, tmp_path):
    card = _hub(hand, tmp_path, license_id="other").read("dataset-hub/README.md").decode()
    assert yaml.safe_load(card[4:].split("\n---\n", 1)[0])["license"] == "other"


def test_dataset_card_of_an_empty_study(researcher, tmp_path):
    study = Study.objects.create(slug="empty", title="Empty: a study", owner=researcher, instruments=["mfq20"])
    card = _hub(study, tmp_path).read("dataset-hub/README.md").decode()
    header = yaml.safe_load(card[4:].split("\n---\n", 1)[0])
    assert header["pretty_name"] == "Empty: a study"
    assert {i["config_name"]: i["splits"][0]["num_examples"] for i in header["dataset_info"]} == {
        "ratings": 0,
        "annotators": 0,
        "prompts": 0,
    }
    assert "`mfq20` v1" in card


# --- canary ---------------------------------------------------------------------------------------


def _texts(path):
    """Every text a file holds: Parquet tables as CSV text, zip members one by one."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as bundle:
            for name in bundle.namelist():
                data = bundle.read(name)
                if name.endswith(".parquet"):
                    yield pq.read_table(io.BytesIO(data)).to_pandas().to_csv()
                else:
                    yield data.decode("utf-8")
    elif path.suffix == ".parquet":
        yield pq.read_table(path).to_pandas().to_csv()
    else:
        yield path.read_text(encoding="utf-8")


def test_no_export_or_api_answer_contains_the_raw_recruitment_id(client, canary_study, researcher, tmp_path):
    canary = Annotator.objects.get(study=canary_study, recruitment_hash=recruitment_hash(CANARY))
    seen = 0
    for fmt in FORMATS:
        for path in export_study(study=canary_study, fmt=fmt, out_dir=tmp_path / fmt):
            for text in _texts(path):
                assert CANARY not in text, (fmt, path.name)
                seen += canary.pseudonym in text
    assert seen >= len(FORMATS)  # the annotator is in every format, by pseudonym
    client.force_login(researcher)
    listing = client.get("/api/studies/canary/ratings/")
    assert listing.status_code == 200 and canary.pseudonym in listing.content.decode()
    assert CANARY not in listing.content.decode()
    body = b"".join(client.get("/api/studies/canary/ratings.csv").streaming_content).decode()
    assert body.count(canary.pseudonym) == 3 and CANARY not in body


# --- ratings API ----------------------------------------------------------------------------------


@pytest.fixture
def api(client, researcher):
    client.force_login(researcher)
    return client


def _csv(client, query=""):
    response = client.get(f"/api/studies/hand/ratings.csv{query}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/csv") and response.streaming
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_streaming_csv_equals_the_long_table(api, hand):
    rows = _csv(api)
    long = ratings_frame(study=hand, traits=False, features=False)
    assert len(rows) == len(long) == 9

    def key(annotator, prompt, rating, unsure, trial, rt_ms):
        return (annotator, prompt, rating, unsure, int(trial), rt_ms)

    streamed = sorted(
        key(
            r["annotator"],
            r["prompt"],
            float(r["rating"]) if r["rating"] else None,
            r["unsure"] == "True",
            r["trial"],
            int(r["rt_ms"]) if r["rt_ms"] else None,
        )
        for r in rows
    )
    expected = sorted(
        key(
            r.annotator,
            "'" + r.prompt if r.prompt.startswith("=") else r.prompt,  # the long CSV neutralises it too
            None if r.unsure else float(r.rating),
            bool(r.unsure),
            r.trial,
            None if pd.isna(r.rt_ms) else int(r.rt_ms),
        )
        for r in long.itertuples()
    )
    assert streamed == expected
    assert [int(r["id"]) for r in rows] == sorted(int(r["id"]) for r in rows)
    assert {r["annotator_status"] for r in rows if r["annotator"] == "H04"} == {"excluded"}
    assert any(r["prompt"] == "'=SUM(1,2)" for r in rows)  # formula cell neutralised


def test_streaming_csv_is_the_same_text_from_python_and_from_copy(hand):
    Annotator.objects.filter(pseudonym="H03").update(pseudonym="@H03")
    Prompt.objects.filter(external_id="c").update(external_id='c,"q"\r\nx')
    _rate(Annotator.objects.get(pseudonym="H01"), Prompt.objects.get(external_id="=SUM(1,2)"), 12.5, 9)
    queryset = Rating.objects.filter(annotator__study=hand, prompt__isnull=False)
    python = "".join(ratings_csv_lines(queryset, study=hand)).encode()
    assert b"'@H03" in python and b'"c,""q""\r\nx"' in python and b",12.5," in python
    if connection.vendor != "postgresql":
        pytest.skip("COPY is PostgreSQL's")
    assert b"".join(ratings_csv_copy(queryset, study=hand, filtered=False)) == python
    assert b"".join(ratings_csv_copy(queryset, study=hand)) == python
    some = queryset.filter(annotator__pseudonym="H01")
    assert b"".join(ratings_csv_copy(some, study=hand)) == "".join(ratings_csv_lines(some, study=hand)).encode()


def test_streaming_csv_filters(api, hand):
    assert {r["annotator"] for r in _csv(api, "?annotator=H02")} == {"H02"}
    assert {r["prompt"] for r in _csv(api, "?prompt=b")} == {"b"} and len(_csv(api, "?prompt=b")) == 3
    assert len(_csv(api, "?created_before=2026-03-01T00:00:00Z")) == 4
    assert len(_csv(api, "?created_after=2026-03-01T00:00:00Z&annotator=H01")) == 2
    assert _csv(api, "?annotator=nobody") == []


def test_cursor_pagination_walks_every_rating_once_in_id_order(api, hand):
    ids, url, pages = [], "/api/studies/hand/ratings/?page_size=2", 0
    while url:
        response = api.get(url)
        assert response.status_code == 200
        body = response.json()
        assert len(body["results"]) <= 2
        ids += [r["id"] for r in body["results"]]
        url, pages = body["next"], pages + 1
    expected = list(Rating.objects.filter(annotator__study=hand).order_by("id").values_list("id", flat=True))
    assert ids == expected and pages == 5
    first = api.get("/api/studies/hand/ratings/?page_size=1").json()["results"][0]
    assert set(first) == {
        "id",
        "annotator",
        "annotator_status",
        "prompt",
        "rating",
        "unsure",
        "trial",
        "rt_ms",
        "server_rt_ms",
        "created_at",
    }
    assert (first["annotator"], first["prompt"], first["rating"], first["trial"]) == ("H01", "a", 5.0, 1)


def test_ratings_list_filters_and_bad_filter(api, hand):
    def results(query):
        response = api.get(f"/api/studies/hand/ratings/{query}")
        assert response.status_code == 200
        return response.json()["results"]

    assert [r["prompt"] for r in results("?annotator=H01")] == ["a", "b", "c"]
    assert {r["annotator"] for r in results("?prompt=a")} == {"H01", "H02", "H03", "H04"}
    assert len(results("?created_after=2026-03-01T00:00:00Z")) == 5
    assert len(results("?created_before=2026-03-01T00:00:00Z&prompt=a")) == 4
    # Offsets PostgreSQL refuses (beyond ±15:59) are read as the same instant in UTC (found by the fuzz test).
    assert len(results("?created_after=2026-03-01T16:00:00%2B16:00")) == 5
    assert api.get("/api/studies/hand/ratings.csv?created_before=2000-01-01T00:00:00%2B16:00").status_code == 200
    for url in (
        "/api/studies/hand/ratings/?created_after=soon",
        "/api/studies/hand/ratings.csv?created_before=x",
        "/api/studies/hand/ratings/?created_after=0001-01-01T00:00:00%2B16:00",  # before year 1 in UTC
    ):
        response = api.get(url)
        assert response.status_code == 400
        assert response.json()["message"].startswith("Validation error") and "extra" in response.json()


def test_ratings_api_roles(client, hand, outsider, staff):
    urls = ("/api/studies/hand/ratings/", "/api/studies/hand/ratings.csv")
    for url in urls:
        assert client.get(url).status_code == 403  # anonymous
    client.force_login(outsider)
    for url in urls:
        response = client.get(url)
        assert response.status_code == 404 and response.json() == {"message": "Not found.", "extra": {}}
    hand.collaborators.add(outsider)
    for url in urls:
        assert client.get(url).status_code == 200
    client.force_login(staff)
    for url in urls:
        assert client.get(url).status_code == 200
        assert client.post(url).status_code == 405


def test_ratings_api_is_in_the_openapi_schema(api):
    schema = api.get("/api/schema/?format=json").json()
    listing = schema["paths"]["/api/studies/{slug}/ratings/"]["get"]
    names = {p["name"] for p in listing["parameters"]}
    assert {"annotator", "prompt", "created_after", "created_before", "cursor", "page_size"} <= names
    assert {"200", "400", "403", "404"} <= set(listing["responses"])
    download = schema["paths"]["/api/studies/{slug}/ratings.csv"]["get"]
    assert "text/csv" in download["responses"]["200"]["content"]
    assert {"annotator", "prompt", "created_after", "created_before"} <= {p["name"] for p in download["parameters"]}


# --- datasets page --------------------------------------------------------------------------------


def test_datasets_page_offers_every_format(api, hand):
    response = api.get(reverse("annotation:datasets", args=["hand"]))
    assert response.status_code == 200
    content = response.content.decode()
    assert "<html" in content and 'id="dataset-jobs"' in content and 'aria-current="page">Datasets' in content
    for fmt in FORMATS:
        assert f'id="export-{fmt}"' in content and f'value="{fmt}"' in content
    assert 'name="license"' in content and '<option value="other" selected>' in content


def test_datasets_page_htmx_returns_the_job_list(api, hand):
    Job.objects.create(kind="export", study=hand, params={"format": "lewidi"})
    response = api.get(
        reverse("annotation:datasets", args=["hand"]), HTTP_HX_REQUEST="true", HTTP_HX_TARGET="dataset-jobs"
    )
    assert response.status_code == 200
    assert b"<html" not in response.content and b"Dataset export #" in response.content


def test_datasets_page_roles_and_method(client, hand, outsider, staff):
    url = reverse("annotation:datasets", args=["hand"])
    response = client.get(url)
    assert response.status_code == 302 and reverse("login") in response["Location"]
    client.force_login(outsider)
    assert client.get(url).status_code == 404
    hand.collaborators.add(outsider)
    assert client.get(url).status_code == 200
    assert client.post(url).status_code == 405
    client.force_login(staff)
    assert client.get(url).status_code == 200


def test_hub_export_job_from_the_page_with_a_licence(api, hand, monkeypatch):
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: None)
    response = api.post(
        reverse("annotation:export_start", args=["hand"]),
        {"format": "hub", "license": "cc0-1.0"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200 and b"every 1s" in response.content
    job = Job.objects.get()
    assert job.params == {"format": "hub", "license": "cc0-1.0"}
    job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    download = api.get(reverse("jobs:artifact_download", args=[job.pk, "dataset-hub.zip"]))
    assert download.status_code == 200 and download["Content-Type"] == "application/zip"
    bundle = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    card = bundle.read("dataset-hub/README.md").decode()
    assert yaml.safe_load(card[4:].split("\n---\n", 1)[0])["license"] == "cc0-1.0"


def test_lewidi_export_job_runs_to_files(api, hand):
    job = Job.objects.create(kind="export", study=hand, params={"format": "lewidi"})
    job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    names = set(job.artifacts.values_list("name", flat=True))
    assert {"lewidi.json", "lewidi_annotators_meta.json", "lewidi_metadata.json", "manifest.json"} == names


def test_unknown_licence_is_refused_in_the_page(api, hand):
    response = api.post(
        reverse("annotation:export_start", args=["hand"]), {"format": "hub", "license": "wtfpl"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 400 and b"unknown licence" in response.content
    assert response["HX-Retarget"] == "#htmx-error" and Job.objects.count() == 0


def test_export_study_command_writes_the_hub_with_a_licence(hand, tmp_path):
    from django.core.management import call_command

    call_command(
        "export_study", "hand", "--format", "hub", "--out", str(tmp_path), "--license", "mit", stdout=io.StringIO()
    )
    card = zipfile.ZipFile(tmp_path / "dataset-hub.zip").read("dataset-hub/README.md").decode()
    assert yaml.safe_load(card[4:].split("\n---\n", 1)[0])["license"] == "mit"
    assert json.loads((tmp_path / "manifest.json").read_text())["license"] == "mit"
