"""Formula cells (CSV injection): text that a spreadsheet would run as a formula comes out neutralised.

A study's text reaches the spreadsheet-facing CSVs from an imported file (prompt texts, demographic
answers) or from the database (prompt ids, pseudonyms). Each such text cell starting with `=`, `+`,
`-`, `@`, tab or carriage return must begin with `'` (OWASP), while numeric columns keep their
numbers, negative ones included. The release format is tested for byte identity elsewhere
(tests/annotation/test_import_export.py) and must stay exact.
"""

import csv
import io
import json

import numpy as np
import pandas as pd
import pytest
from django.urls import reverse
from django.utils import timezone

from annotation.exports import export_study
from annotation.importers import pluriharms_import
from annotation.models import Annotator, Prompt
from annotation.selectors import ratings_frame
from jobs.models import Job
from jobs.services import job_create, job_run
from tests.conftest import write_small_release

pytestmark = pytest.mark.django_db

PAYLOADS = ['=HYPERLINK("http://x","y")', "@SUM(1)", "+1", "-1+1", "\tx", "\rx"]


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def _columns(text: str) -> dict[str, list[str]]:
    header, *rows = _rows(text)
    assert all(len(row) == len(header) for row in rows), "a cell broke its row"
    return {name: [row[i] for row in rows] for i, name in enumerate(header)}


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


@pytest.fixture
def payload_study(tmp_path, researcher):
    """Six prompts whose texts are the payloads; six annotators whose Gender answers are the payloads."""
    directory = write_small_release(tmp_path / "payload", n_prompts=6, n_annotators=6)
    for name, column in (("prompts.csv", "Question_Content"), ("annotations.csv", "Gender")):
        frame = pd.read_csv(directory / name, dtype=str, keep_default_na=False)
        frame[column] = PAYLOADS
        # Quoted, so that the carriage return stays inside its cell on the way in.
        frame.to_csv(directory / name, index=False, quoting=csv.QUOTE_ALL)
    study = pluriharms_import(directory=directory, slug="payload", owner=researcher)
    assert sorted(study.prompts.values_list("text", flat=True)) == sorted(PAYLOADS)
    assert sorted(a.demographics["Gender"] for a in study.annotators.all()) == sorted(PAYLOADS)
    return study


def test_long_csv_neutralises_text_cells_and_keeps_numbers(payload_study, tmp_path):
    export_study(study=payload_study, fmt="long-csv", out_dir=tmp_path / "out")
    text = (tmp_path / "out" / "ratings.csv").read_bytes().decode("utf-8")
    columns = _columns(text)
    assert len(columns["Gender"]) == 36
    assert set(columns["Gender"]) == {"'" + p for p in PAYLOADS}
    frame = ratings_frame(study=payload_study)
    numeric = [
        c
        for c in frame.columns
        if c not in ("annotator", "prompt", "annotator_status", "unsure") and frame[c].dtype.kind in "fiu"
    ]
    assert {"rating", "trial", "Factor_1", "harm_level", "action_Privacy"} <= set(numeric)
    negatives = 0
    for column in numeric:
        cells = columns[column]
        assert not any(cell.startswith("'") for cell in cells), column
        expected = frame[column].to_numpy(dtype=float)
        written = np.array([float(cell) if cell else np.nan for cell in cells])
        assert np.array_equal(written, expected, equal_nan=True), column
        negatives += int((written < 0).sum())
    assert negatives > 0  # negative numbers (factor scores) are among them, and stay numbers


def test_parquet_and_jsonl_keep_the_exact_text(payload_study, tmp_path):
    export_study(study=payload_study, fmt="jsonl", out_dir=tmp_path / "j")
    rows = [json.loads(line) for line in (tmp_path / "j" / "ratings.jsonl").read_text().splitlines()]
    assert {row["Gender"] for row in rows} == set(PAYLOADS)


def test_overview_csv_neutralises_prompt_ids(client, researcher, small_study):
    Prompt.objects.filter(study=small_study, external_id="1").update(external_id=PAYLOADS[0])
    Prompt.objects.filter(study=small_study, external_id="2").update(external_id="-1+1")
    client.force_login(researcher)
    text = client.get(reverse("benchmark:overview_csv", args=["small", "per_prompt"])).content.decode()
    columns = _columns(text)
    assert "'" + PAYLOADS[0] in columns["prompt"] and "'-1+1" in columns["prompt"]
    assert set(columns["ratings"]) == {"4"}


@pytest.fixture
def analysed_payload(payload_study):
    Annotator.objects.filter(study=payload_study, pseudonym="P0001").update(pseudonym="@SUM(1)")
    job = job_create(kind="analysis", study=payload_study, params={"mixed_effects": False, "n_boot": 50})
    assert job_run(job_id=job.pk).status == "succeeded"
    return payload_study


def _download(client, slug: str, name: str) -> str:
    response = client.get(reverse("benchmark:agreement_csv", args=[slug, name]))
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return body.decode()


def test_agreement_prompts_csv_neutralises_prompt_texts(client, researcher, analysed_payload):
    client.force_login(researcher)
    columns = _columns(_download(client, "payload", "prompts"))
    assert sorted(columns["text"]) == sorted("'" + p for p in PAYLOADS)
    report = Job.objects.get(study=analysed_payload, kind="analysis").result
    for column in ("n", "mean", "sd", "median"):
        cells = columns[column]
        assert all(_is_number(cell) for cell in cells), column
        expected = {str(row["prompt"]): row[column] for row in report["prompts"]}
        assert [float(c) for c in cells] == [float(expected[p]) for p in columns["prompt"]]


def test_agreement_participants_csv_neutralises_pseudonyms(client, researcher, analysed_payload):
    client.force_login(researcher)
    columns = _columns(_download(client, "payload", "annotators"))
    assert "'@SUM(1)" in columns["annotator"] and "P0002" in columns["annotator"]
    for name, cells in columns.items():
        if name != "annotator":
            assert not any(cell.startswith("'") for cell in cells), name


def test_agreement_groups_and_coefficients_csv(client, researcher, small_study):
    Job.objects.create(
        kind="analysis",
        study=small_study,
        status=Job.Status.SUCCEEDED,
        finished_at=timezone.now(),
        result={
            "prompts": [],
            "groups": {
                "Gender": {
                    "groups": [
                        {
                            "group": PAYLOADS[0],
                            "n_annotators": 3,
                            "n_ratings": 15,
                            "tested": True,
                            "in_group_alpha": 0.5,
                            "cross_group_kappa": -0.25,
                            "gai": -1.5,
                            "difference": -0.25,
                            "p_value": 0.5,
                        },
                        {
                            "group": "\rx",
                            "n_annotators": 3,
                            "n_ratings": 15,
                            "tested": True,
                            "in_group_alpha": 0.25,
                            "cross_group_kappa": 0.1,
                            "gai": 2.5,
                            "difference": 0.25,
                            "p_value": 0.5,
                        },
                    ]
                }
            },
            "mixed_effects": {
                "rq2": {
                    "coefficients": [
                        {"term": "@SUM(1)", "estimate": -0.25, "se": 0.1, "ci_low": -0.45, "ci_high": -0.05, "p": 0.01},
                        {"term": "+1", "estimate": 1.5, "se": 0.2, "ci_low": 1.1, "ci_high": 1.9, "p": 0.001},
                    ]
                }
            },
        },
    )
    client.force_login(researcher)
    groups = _columns(_download(client, "small", "groups"))
    assert groups["group"] == ["'" + PAYLOADS[0], "'\rx"]
    assert groups["cross_group_kappa"] == ["-0.25", "0.1"] and groups["gai"] == ["-1.5", "2.5"]
    coefficients = _columns(_download(client, "small", "coefficients"))
    assert coefficients["term"] == ["'@SUM(1)", "'+1"]
    assert coefficients["estimate"] == ["-0.25", "1.5"] and coefficients["ci_low"] == ["-0.45", "1.1"]


def test_long_csv_fast_writer_matches_the_whole_table_written_at_once(payload_study, tmp_path):
    """The per-piece writer and the one-frame writer (used when a cell holds CRLF) agree byte for byte."""
    from annotation.exports import _with_review_columns, spreadsheet_csv
    from annotation.selectors import ratings_parts

    export_study(study=payload_study, fmt="long-csv", out_dir=tmp_path / "out")
    written = (tmp_path / "out" / "ratings.csv").read_bytes().decode("utf-8")
    whole = _with_review_columns(ratings_parts(study=payload_study)).frame()  # every annotator at once
    assert written == spreadsheet_csv(whole)
    assert written.split("\n", 1)[0].split(",")[:3] == ["annotator", "prompt", "rating"]
    assert {"status", "exclusion_reason"} <= set(written.split("\n", 1)[0].split(","))
    Annotator.objects.filter(study=payload_study, pseudonym="P0002").update(
        demographics={"Gender": "a\r\n=1+1", "Age": "-3"}
    )
    export_study(study=payload_study, fmt="long-csv", out_dir=tmp_path / "crlf")
    columns = _columns((tmp_path / "crlf" / "ratings.csv").read_bytes().decode("utf-8"))
    assert columns["Gender"].count("a\r\n=1+1") == 6 and columns["Age"].count("'-3") == 6


def test_job_artifact_tables_neutralise_text_cells(client, researcher, analysed_payload):
    # The analysis job's own CSV files (downloaded from its card or the API) are spreadsheet-facing too.
    job = Job.objects.get(study=analysed_payload, kind="analysis")
    client.force_login(researcher)
    for name, column, expected in (
        ("prompts.csv", "text", {"'" + p for p in PAYLOADS}),
        ("annotators.csv", "annotator", {"'@SUM(1)"}),
    ):
        response = client.get(reverse("jobs:artifact_download", args=[job.pk, name]))
        body = b"".join(response.streaming_content).decode()
        assert expected <= set(_columns(body)[column]), name
