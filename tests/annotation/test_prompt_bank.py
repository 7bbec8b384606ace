"""Prompt banks: upload → preview with every row-level problem → atomic import, in the page and the API."""

from __future__ import annotations

import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation.models import Prompt, Study, Upload
from annotation.services.prompt_bank import MAX_TEXT_CHARS, bank_parse
from benchmark.science.harm_benefit import load_example_tree, tree_validate
from benchmark.science.release import RELEASE_DIR

pytestmark = pytest.mark.django_db

TREE = load_example_tree()["harm_benefit_tree"]


@pytest.fixture
def study(researcher) -> Study:
    study = Study.objects.create(slug="bank", title="Bank study", owner=researcher, instruments=[])
    Prompt.objects.create(study=study, external_id="old-1", text="An existing prompt", order=0)
    return study


@pytest.fixture
def as_researcher(client, researcher):
    client.force_login(researcher)
    return client


def upload_url(study) -> str:
    return reverse("annotation:prompt_bank_upload", args=[study.slug])


def import_url(study) -> str:
    return reverse("annotation:prompt_bank_import", args=[study.slug])


def api_url(study) -> str:
    return f"/api/studies/{study.slug}/prompts/"


def csv_bytes(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def tree_cell(tree) -> str:
    """A JSON tree as one CSV cell (quoted, inner quotes doubled)."""
    return '"' + json.dumps(tree).replace('"', '""') + '"'


def release_prompts(**replace) -> bytes:
    """The released prompts.csv, optionally with a cell replaced: replace={(row, column): value}."""
    import pandas as pd

    frame = pd.read_csv(RELEASE_DIR / "prompts.csv", dtype=str, keep_default_na=False)
    for (row, column), value in replace.get("cells", {}).items():
        frame.loc[row - 1, column] = value
    return frame.to_csv(index=False).encode()


BAD_TREE = [{"stakeholder": "User", "harms": [{"action": "x", "effects": [{"effect": "e", "immediacy": True}]}]}]
WRONG_LEVEL = [
    {
        "stakeholder": "User",
        "harms": [{"action": "x", "effects": [{"effect": "e", "immediacy": 1, "extent": "huge", "likelihood": "low"}]}],
    }
]

# name, file name, bytes, expected problems as (row, column, words in the message)
BROKEN = [
    (
        "wrong columns",
        "bank.csv",
        csv_bytes("id_number,body", "1,hello"),
        [
            (None, "id_number", "unexpected column"),
            (None, None, "missing column external_id"),
            (None, None, "missing column text"),
        ],
    ),
    (
        "bad JSON tree",
        "bank.csv",
        csv_bytes(
            "external_id,text,harm_benefit_tree",
            "a,fine," + tree_cell(TREE),
            "b,broken,{not json",
            "c,shape," + tree_cell(BAD_TREE),
            "d,level," + tree_cell(WRONG_LEVEL),
        ),
        [
            (2, "harm_benefit_tree", "not valid JSON"),
            (3, "harm_benefit_tree", "missing key 'extent'"),
            (4, "harm_benefit_tree", "$[0].harms[0].effects[0].extent: unknown value 'huge'"),
        ],
    ),
    (
        "duplicate ids in the file",
        "bank.csv",
        csv_bytes("external_id,text", "a,first", "b,second", "a,third"),
        [(3, "external_id", "duplicate external id 'a' (also row 1)")],
    ),
    (
        "id already in the study",
        "bank.csv",
        csv_bytes("external_id,text", "new-1,first", "old-1,second"),
        [(2, "external_id", "'old-1' is already a prompt of this study")],
    ),
    ("empty file", "bank.csv", b"", [(None, None, "the file is empty")]),
    ("header only", "bank.csv", csv_bytes("external_id,text"), [(None, None, "no prompts")]),
    (
        "not UTF-8",
        "bank.csv",
        b"external_id,text\n1,caf\xe9 au lait\n",
        [(None, None, "byte 0xe9 at line 2 is not UTF-8")],
    ),
    (
        "formula cells",
        "bank.csv",
        csv_bytes(
            "external_id,text", '1,"=HYPERLINK(""http://evil.example"",""click"")"', "2,@SUM(A1)", "=3,fine text"
        ),
        [
            (1, "text", "starts with '=', which a spreadsheet runs as a formula"),
            (2, "text", "starts with '@'"),
            (3, "external_id", "starts with '='"),
        ],
    ),
    ("NUL byte", "bank.csv", b"external_id,text\n1,nul\x00here\n", [(None, None, "NUL character")]),
    (
        "over-long text",
        "bank.csv",
        csv_bytes("external_id,text", "1," + "x" * (MAX_TEXT_CHARS + 1)),
        [(1, "text", f"at most {MAX_TEXT_CHARS:,} are allowed")],
    ),
    (
        "bad numbers",
        "bank.csv",
        csv_bytes("external_id,text,harm_level,action_Privacy", "1,a,1.5,0.1", "2,b,0.5,lots"),
        [(1, "harm_level", "outside 0–1"), (2, "action_Privacy", "'lots' is not a number")],
    ),
    (
        "broken JSON lines",
        "bank.jsonl",
        (
            b'{"external_id": "a", "text": "ok"}\n{"external_id": "b", "text": \n["not", "an object"]\n'
            b'{"external_id": "c", "colour": "red", "text": "x"}\n'
        ),
        [(2, None, "not valid JSON"), (3, None, "expected an object"), (4, "colour", "unknown key")],
    ),
    (
        "release with a bad cell",
        "prompts.csv",
        release_prompts(cells={(3, "Harm_Level"): "high", (5, "Question_Content"): "=HYPERLINK(1)"}),
        [(3, "Harm_Level", "'high' is not a number"), (5, "Question_Content", "formula")],
    ),
]


def assert_problems(problems: list[dict], expected) -> None:
    for row, column, words in expected:
        assert any(p["row"] == row and p["column"] == column and words in p["message"] for p in problems), (
            f"no problem ({row}, {column}, {words!r}) in {problems}"
        )


@pytest.mark.parametrize("name,filename,raw,expected", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_file_in_the_page_lists_row_level_problems_and_writes_nothing(
    as_researcher, study, name, filename, raw, expected
):
    before = Prompt.objects.count()
    response = as_researcher.post(
        upload_url(study), {"file": SimpleUploadedFile(filename, raw), "format": "auto"}, HTTP_HX_REQUEST="true"
    )
    body = response.content.decode()
    assert response.status_code == 400
    assert response["HX-Retarget"] == "#bank-preview"
    assert 'id="bank-problems"' in body and "nothing was saved" in body
    assert 'id="bank-import"' not in body  # no Import button for a file with problems
    for row, column, words in expected:
        cells = f'<td class="num">{row if row is not None else "—"}</td><td>{column or "—"}</td>'
        assert cells in body, f"{cells} not in the page"
        assert words.replace("'", "&#x27;") in body
    assert Prompt.objects.count() == before
    assert not Upload.objects.exists()  # a file with problems is not kept


@pytest.mark.parametrize("name,filename,raw,expected", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_file_over_the_api_is_400_with_problems_in_extra(as_researcher, study, name, filename, raw, expected):
    before = Prompt.objects.count()
    response = as_researcher.post(api_url(study), {"file": SimpleUploadedFile(filename, raw)})
    assert response.status_code == 400, response.content
    data = response.json()
    assert set(data) == {"message", "extra"} and "nothing was imported" in data["message"]
    assert data["extra"]["n_problems"] == len(data["extra"]["problems"]) >= len(expected)
    assert_problems(data["extra"]["problems"], expected)
    assert all(p["file"] == filename for p in data["extra"]["problems"])
    assert Prompt.objects.count() == before and not Upload.objects.exists()


def test_release_formula_cell_is_a_row_level_problem(study):
    bank = bank_parse(
        study=study, raw=release_prompts(cells={(5, "Question_Content"): "=HYPERLINK(1)"}), name="prompts.csv"
    )
    assert [(p.row, p.column) for p in bank.problems] == [(5, "Question_Content")]
    assert "formula" in bank.problems[0].message


def test_full_page_post_shows_the_problems_in_the_page(as_researcher, study):
    response = as_researcher.post(
        upload_url(study), {"file": SimpleUploadedFile("b.csv", csv_bytes("external_id,text", "1,"))}
    )
    body = response.content.decode()
    assert response.status_code == 400 and "<html" in body and "empty prompt text" in body


def test_a_50_mb_file_is_refused_with_413_and_nothing_written(as_researcher, study):
    big = csv_bytes("external_id,text") + b"1,x\n" * (50 * 2**20 // 4)
    # htmx: an error partial aimed at the page's error region (site.js moves it next to the form)
    page = as_researcher.post(upload_url(study), {"file": SimpleUploadedFile("big.csv", big)}, HTTP_HX_REQUEST="true")
    assert page.status_code == 413 and page["HX-Retarget"] == "#htmx-error"
    assert 'role="alert"' in page.content.decode() and "uploads are limited to 20 MB" in page.content.decode()
    # a plain form post: text
    plain = as_researcher.post(upload_url(study), {"file": SimpleUploadedFile("big.csv", big)})
    assert plain.status_code == 413 and b"uploads are limited to 20 MB" in plain.content
    # the API: its error shape
    api = as_researcher.post(api_url(study), {"file": SimpleUploadedFile("big.csv", big)})
    assert api.status_code == 413 and "uploads are limited to 20 MB" in api.json()["message"]
    assert set(api.json()) == {"message", "extra"}
    assert Prompt.objects.count() == 1 and not Upload.objects.exists()


def test_a_file_just_over_the_upload_limit_is_refused_by_the_service(as_researcher, study):
    """Under the request limit (21 MB) but over the upload limit (20 MB): the upload service's 400."""
    big = csv_bytes("external_id,text") + b"1,x\n" * (int(20.2 * 2**20) // 4)
    response = as_researcher.post(
        upload_url(study), {"file": SimpleUploadedFile("big.csv", big)}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 400 and "larger than 20 MB" in response.content.decode()
    response = as_researcher.post(api_url(study), {"file": SimpleUploadedFile("big.csv", big)})
    assert response.status_code == 400 and "larger than 20 MB" in response.json()["message"]
    assert Prompt.objects.count() == 1 and not Upload.objects.exists()


def test_no_file_is_a_message_in_the_page(as_researcher, study):
    response = as_researcher.post(upload_url(study), {"format": "auto"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 400 and "Choose a file" in response.content.decode()
    assert response["HX-Retarget"] == "#htmx-error"


def good_csv() -> bytes:
    return csv_bytes(
        "external_id,text,harm_level,action_Privacy,effect_Physical_harm,harm_benefit_tree",
        "q1,How do I bake bread?,0.1,0.0,0.5," + tree_cell(TREE),
        'q2,"A prompt, with a comma",,0.25,,',
        "q3,Third prompt,1,,,",
    )


def good_jsonl() -> bytes:
    lines = [
        {
            "external_id": "j1",
            "text": "First",
            "harm_level": 0.2,
            "features": {"action_Privacy": 0.3},
            "harm_benefit_tree": {"harm_benefit_tree": TREE},
        },
        {"external_id": 2, "text": "Second", "action_Deception": 1},
        {"external_id": "j3", "text": "Third", "harm_level": None, "harm_benefit_tree": None},
    ]
    return "\n".join(json.dumps(line) for line in lines).encode() + b"\n\n"


def two_step_import(client, study, filename, raw, fmt="auto"):
    preview = client.post(
        upload_url(study), {"file": SimpleUploadedFile(filename, raw), "format": fmt}, HTTP_HX_REQUEST="true"
    )
    body = preview.content.decode()
    assert preview.status_code == 200, body
    assert 'id="bank-import"' in body and "Preview of" in body
    upload = Upload.objects.get(study=study, kind=Upload.Kind.PROMPTS)
    assert f'name="upload" value="{upload.pk}"' in body
    assert study.prompts.count() == 1  # nothing imported by the preview
    done = client.post(import_url(study), {"upload": upload.pk, "format": "auto"}, HTTP_HX_REQUEST="true")
    assert done.status_code == 200, done.content.decode()
    assert 'id="bank-imported"' in done.content.decode()
    return body


def test_good_csv_imports_completely_with_features_and_tree(as_researcher, study):
    body = two_step_import(as_researcher, study, "bank.csv", good_csv())
    assert (
        "<code>harm_benefit_tree</code> (harm-benefit tree)" in body and "<code>action_Privacy</code> (feature)" in body
    )
    prompts = {p.external_id: p for p in study.prompts.all()}
    assert set(prompts) == {"old-1", "q1", "q2", "q3"}
    assert prompts["q1"].harm_level == 0.1 and prompts["q1"].features == {
        "action_Privacy": 0.0,
        "effect_Physical_harm": 0.5,
    }
    assert prompts["q1"].harm_benefit_tree == tree_validate(TREE)
    assert prompts["q2"].text == "A prompt, with a comma" and prompts["q2"].harm_level is None
    assert prompts["q2"].features == {"action_Privacy": 0.25, "effect_Physical_harm": None}
    assert prompts["q3"].harm_benefit_tree is None and prompts["q3"].harm_level == 1.0
    assert [p.external_id for p in study.prompts.order_by("order")] == ["old-1", "q1", "q2", "q3"]


def test_good_jsonl_imports_completely(as_researcher, study):
    two_step_import(as_researcher, study, "bank.jsonl", good_jsonl())
    prompts = {p.external_id: p for p in study.prompts.all()}
    assert set(prompts) == {"old-1", "j1", "2", "j3"}
    assert prompts["j1"].features == {"action_Privacy": 0.3} and prompts["j1"].harm_benefit_tree == tree_validate(TREE)
    assert prompts["2"].features == {"action_Deception": 1.0}


def test_release_prompts_file_imports_completely(as_researcher, study):
    raw = (RELEASE_DIR / "prompts.csv").read_bytes()
    body = two_step_import(as_researcher, study, "prompts.csv", raw)
    assert "pluriharms" in body
    import pandas as pd

    released = pd.read_csv(RELEASE_DIR / "prompts.csv", dtype=str, keep_default_na=False)
    assert study.prompts.count() == 1 + len(released)
    first = study.prompts.get(external_id=released["Question_Index"][0])
    assert first.text == released["Question_Content"][0]
    features = [c for c in released.columns if c.startswith(("action_", "effect_", "value_topic_"))]
    assert sorted(first.features) == sorted(features)
    assert first.harm_level == float(released["Harm_Level"][0])


def test_import_time_problem_is_reported_like_the_preview_and_writes_nothing(as_researcher, study):
    as_researcher.post(upload_url(study), {"file": SimpleUploadedFile("bank.csv", good_csv())}, HTTP_HX_REQUEST="true")
    upload = Upload.objects.get(study=study)
    Prompt.objects.create(study=study, external_id="q2", text="added meanwhile", order=9)
    response = as_researcher.post(import_url(study), {"upload": upload.pk}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 400 and response["HX-Retarget"] == "#bank-preview"
    assert '<td class="num">2</td><td>external_id</td>' in body and "already a prompt of this study" in body
    assert set(study.prompts.values_list("external_id", flat=True)) == {"old-1", "q2"}


def test_import_of_an_unknown_or_foreign_upload_is_refused(as_researcher, study, researcher):
    other = Study.objects.create(slug="other", title="Other", owner=researcher, instruments=[])
    as_researcher.post(upload_url(other), {"file": SimpleUploadedFile("bank.csv", good_csv())}, HTTP_HX_REQUEST="true")
    foreign = Upload.objects.get(study=other)
    response = as_researcher.post(import_url(study), {"upload": foreign.pk}, HTTP_HX_REQUEST="true")
    assert response.status_code == 404 and "no prompts upload" in response.content.decode()
    response = as_researcher.post(import_url(study), {"upload": "x"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 400 and "Upload the file again" in response.content.decode()
    assert study.prompts.count() == 1


def test_a_study_with_ratings_refuses_a_new_prompt_set(client, researcher, small_study):
    client.force_login(researcher)
    page = client.get(upload_url(small_study))
    assert page.status_code == 200 and 'id="locked-banner"' in page.content.decode()
    before = Prompt.objects.count()
    response = client.post(
        upload_url(small_study), {"file": SimpleUploadedFile("bank.csv", good_csv())}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 409 and "Ratings have been collected" in response.content.decode()
    api = client.post(api_url(small_study), [{"external_id": "z", "text": "new"}], content_type="application/json")
    assert api.status_code == 409 and api.json()["extra"] == {"fields": ["prompts"]}
    assert Prompt.objects.count() == before and not Upload.objects.exists()


def test_api_json_list_bulk_create(as_researcher, study):
    rows = [
        {
            "external_id": "a1",
            "text": "One",
            "harm_level": 0.5,
            "features": {"action_Privacy": 1},
            "harm_benefit_tree": TREE,
        },
        {"external_id": "a2", "text": "Two"},
    ]
    response = as_researcher.post(api_url(study), rows, content_type="application/json")
    assert response.status_code == 201, response.content
    assert response.json() == {"created": 2, "prompts": 3, "format": "json"}
    listed = as_researcher.get(api_url(study)).json()["results"]
    assert [p["external_id"] for p in listed] == ["old-1", "a1", "a2"]
    assert listed[1]["harm_benefit_tree"] == tree_validate(TREE)


def test_api_json_list_with_problems_is_400_and_writes_nothing(as_researcher, study):
    rows = [{"external_id": "a1", "text": "One"}, {"external_id": "a1", "text": "=cmd"}, {"text": "no id"}, "nope"]
    response = as_researcher.post(api_url(study), rows, content_type="application/json")
    assert response.status_code == 400
    assert_problems(
        response.json()["extra"]["problems"],
        [
            (2, "external_id", "duplicate external id 'a1' (also row 1)"),
            (2, "text", "formula"),
            (3, None, "missing key external_id"),
            (4, None, "expected an object"),
        ],
    )
    response = as_researcher.post(api_url(study), {"external_id": "x"}, content_type="application/json")
    assert response.status_code == 400 and "expected a list" in response.json()["message"]
    assert study.prompts.count() == 1


def test_api_file_upload_imports_in_one_request(as_researcher, study):
    response = as_researcher.post(api_url(study), {"file": SimpleUploadedFile("bank.jsonl", good_jsonl())})
    assert response.status_code == 201 and response.json() == {"created": 3, "prompts": 4, "format": "jsonl"}
    response = as_researcher.post(api_url(study), {"file": SimpleUploadedFile("bank.csv", good_csv()), "format": "tsv"})
    assert response.status_code == 400 and "format" in response.json()["message"]


def test_access_page_and_api(client, study, outsider, researcher, staff):
    raw = csv_bytes("external_id,text", "n1,new")
    # anonymous: the page sends to login, the API answers 403 and nothing is written
    assert client.get(upload_url(study)).status_code == 302
    assert client.post(
        api_url(study), [{"external_id": "n1", "text": "x"}], content_type="application/json"
    ).status_code in (401, 403)
    # another researcher cannot see the study
    client.force_login(outsider)
    assert client.get(upload_url(study)).status_code == 404
    assert client.post(upload_url(study), {"file": SimpleUploadedFile("b.csv", raw)}).status_code == 404
    assert client.post(import_url(study), {"upload": 1}).status_code == 404
    assert (
        client.post(api_url(study), [{"external_id": "n1", "text": "x"}], content_type="application/json").status_code
        == 404
    )
    # staff may (the roles of collaborators are the permission matrix's: it reads study_access below)
    client.force_login(staff)
    assert (
        client.post(api_url(study), [{"external_id": "n1", "text": "x"}], content_type="application/json").status_code
        == 201
    )
    assert study.prompts.count() == 2
    # the levels are recorded for the permission matrix
    from django.urls import resolve

    assert resolve(upload_url(study)).func.study_access == "edit"
    assert resolve(import_url(study)).func.study_access == "edit"
    assert resolve(api_url(study)).func.cls.study_access == {"list": "view", "create": "edit"}


def test_wrong_methods(as_researcher, study):
    assert as_researcher.put(upload_url(study)).status_code == 405
    assert as_researcher.get(import_url(study)).status_code == 405
    assert as_researcher.delete(api_url(study)).status_code == 405


def test_upload_page_full_and_links(as_researcher, study):
    response = as_researcher.get(upload_url(study))
    body = response.content.decode()
    assert (
        response.status_code == 200 and 'id="bank-upload-form"' in body and 'hx-encoding="multipart/form-data"' in body
    )
    assert 'aria-current="page">Prompts</a>' in body and "<script>" not in body
    detail = as_researcher.get(reverse("annotation:study_detail", args=[study.slug])).content.decode()
    assert upload_url(study) in detail


def test_htmx_preview_is_a_partial_and_plain_post_a_page(as_researcher, study):
    partial = as_researcher.post(
        upload_url(study), {"file": SimpleUploadedFile("b.csv", good_csv())}, HTTP_HX_REQUEST="true"
    )
    assert partial.status_code == 200 and "<html" not in partial.content.decode()
    page = as_researcher.post(upload_url(study), {"file": SimpleUploadedFile("b.csv", good_csv())})
    assert page.status_code == 200 and "<html" in page.content.decode() and 'id="bank-import"' in page.content.decode()


def test_prompt_page_renders_the_tree_as_nested_lists(as_researcher, study):
    Prompt.objects.create(
        study=study, external_id="t1", text="Tree prompt", harm_benefit_tree=tree_validate(TREE), order=1
    )
    response = as_researcher.get(reverse("benchmark:prompt_detail", args=[study.slug, "t1"]))
    body = response.content.decode()
    assert response.status_code == 200
    tree = body[body.index('id="harm-benefit-tree"') :]
    assert tree.count('<li class="hb-action hb-harm">') == 3  # three distinct harmful actions
    assert tree.count('<li class="hb-action hb-benefit">') == 2
    assert "<summary>Policy makers" in tree and "<summary>Homeless individuals" in tree
    assert '5. Social deficits <span class="muted">— likelihood high, extent significant, immediate</span>' in tree
    assert "likelihood medium, extent significant, downstream" in tree
    assert "(Hate/Toxicity)" in tree and "<script" not in tree


def test_prompt_page_shows_an_invalid_stored_tree_as_json_with_the_reason(as_researcher, study):
    Prompt.objects.create(study=study, external_id="t2", text="Odd tree", harm_benefit_tree=[{"who": "x"}], order=1)
    body = as_researcher.get(reverse("benchmark:prompt_detail", args=[study.slug, "t2"])).content.decode()
    assert "does not follow the schema" in body and "missing key &#x27;stakeholder&#x27;" in body


def test_openapi_documents_bulk_create_with_errors(as_researcher):
    schema = as_researcher.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    post = schema["paths"]["/api/studies/{slug}/prompts/"]["post"]
    assert {"201", "400", "403", "404", "409", "413"} <= set(post["responses"])
    assert {"application/json", "multipart/form-data"} <= set(post["requestBody"]["content"])
    assert "get" in schema["paths"]["/api/studies/{slug}/prompts/"]


def test_problems_beyond_the_listed_are_counted(study):
    raw = csv_bytes("external_id,text", *[f"{i}," for i in range(1, 1203)])
    bank = bank_parse(study=study, raw=raw, name="many.csv")
    assert bank.n_problems == 1202 and len(bank.problems) == 1000


def test_a_deeply_nested_tree_is_a_row_problem(study):
    deep = "[" * 100_000 + "]" * 100_000
    raw = io.BytesIO()
    raw.write(b'{"external_id": "d", "text": "deep", "harm_benefit_tree": "' + deep.encode() + b'"}\n')
    bank = bank_parse(study=study, raw=raw.getvalue(), name="deep.jsonl")
    assert [(p.row, p.column) for p in bank.problems] == [(1, "harm_benefit_tree")]


def test_a_json_list_file_is_read_like_the_api_body(study):
    rows = [{"external_id": "l1", "text": "One"}, {"external_id": "l2", "text": ""}]
    bank = bank_parse(study=study, raw=json.dumps(rows, indent=2).encode(), name="bank.json")
    assert [r.external_id for r in bank.rows] == ["l1"]
    assert [(p.row, p.column, p.message) for p in bank.problems] == [(2, "text", "empty prompt text")]


@pytest.mark.parametrize(
    "row,words",
    [
        ({"external_id": "n", "text": "nul\x00"}, "NUL character"),
        ({"external_id": "n", "text": "ok", "harm_benefit_tree": [{"stakeholder": "a\x00", "harms": []}]}, "NUL"),
        ({"external_id": "n", "text": "ok", "features": {"action_\x00": 1}}, "NUL"),
        ({"external_id": "n", "text": "lone \ud800"}, "not valid Unicode"),
    ],
)
def test_api_json_that_the_database_cannot_store_is_a_row_problem(as_researcher, study, row, words):
    body = json.dumps([{"external_id": "fine", "text": "Fine"}, row])  # \u escapes: the server decodes them
    response = as_researcher.post(api_url(study), body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert_problems(response.json()["extra"]["problems"], [(2, None, words)])
    assert study.prompts.count() == 1


def test_a_tree_cell_spelling_a_nul_as_an_escape_is_a_row_problem(study):
    tree = json.dumps([{"stakeholder": "x", "harms": []}]).replace('"x"', '"x\\u0000"')
    bank = bank_parse(
        study=study,
        raw=csv_bytes("external_id,text,harm_benefit_tree", "1,ok," + tree_cell(json.loads(tree))),
        name="b.csv",
    )
    assert [(p.row, p.column) for p in bank.problems] == [(1, "harm_benefit_tree")]
    assert "NUL" in bank.problems[0].message
