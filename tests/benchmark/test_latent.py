"""Latent annotator states in the product: the command, the job from the real collection path, the pages."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotation.models import Rating
from annotation.participants import participants_table
from benchmark import latent as latent_service
from benchmark.science.latent import TrainConfig, checkpoint_load, checkpoint_save, default_checkpoint, train
from jobs.models import Job
from jobs.services import job_create, job_run
from tests.annotation.test_take_flow import current, start_rating, study, submit  # noqa: F401

POOL = np.linspace(5, 95, 150)


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    """Tiny networks (a few seconds to train): what is tested is the plumbing, not their quality."""
    folder = tmp_path_factory.mktemp("ckpt")
    torch.set_num_threads(1)
    paths = {}
    for model in ("engagement", "drift"):
        for use_rt in (True, False):
            cfg = TrainConfig(
                model=model,
                use_rt=use_rt,
                hidden=4,
                layers=1,
                n_trials=30,
                min_trials=5,
                train_per_epoch=64,
                n_val=32,
                batch=32,
                max_epochs=1,
                threads=1,
            )
            net, record = train(cfg, pool=POOL)
            path = folder / f"{model}{'' if use_rt else '-no-rt'}.pt"
            checkpoint_save(path, net, cfg, record, {"methods": {}})
            paths[(model, use_rt)] = path
    return paths


@pytest.fixture
def tiny(monkeypatch, tiny_checkpoints):
    monkeypatch.setattr(latent_service, "default_checkpoint", lambda model, use_rt: tiny_checkpoints[(model, use_rt)])
    return tiny_checkpoints


def _csv(tmp_path, frame, name="in.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def _table():
    rng = np.random.default_rng(0)
    rows = []
    for who in ("P0001", "P0002"):
        for t in range(1, 26):
            rows.append(
                {
                    "annotator": who,
                    "trial": t,
                    "rating": "" if t == 4 else int(rng.integers(0, 101)),
                    "rt_ms": "" if t == 5 else int(rng.integers(1000, 20000)),
                    "consensus": float(rng.uniform(0, 100)),
                }
            )
    return pd.DataFrame(rows)


def test_infer_adds_p_disengaged_and_theta_per_row(tmp_path, tiny_checkpoints):
    out, summary = tmp_path / "out.csv", tmp_path / "summary.csv"
    call_command(
        "latent",
        "infer",
        _csv(tmp_path, _table()),
        "--checkpoint",
        str(tiny_checkpoints[("drift", True)]),
        "--out",
        str(out),
        "--summary",
        str(summary),
    )
    result = pd.read_csv(out)
    assert list(result.columns) == ["annotator", "trial", "rating", "rt_ms", "consensus", "p_disengaged", "theta"]
    assert len(result) == 50 and result["p_disengaged"].between(0, 1).all() and result["theta"].notna().all()
    per = pd.read_csv(summary)
    assert per["annotator"].tolist() == ["P0001", "P0002"]
    assert per["expected_disengaged"].tolist() == pytest.approx(
        result.groupby("annotator")["p_disengaged"].sum().tolist()
    )
    engagement = tmp_path / "eng.csv"
    call_command(
        "latent",
        "infer",
        _csv(tmp_path, _table()),
        "--checkpoint",
        str(tiny_checkpoints[("engagement", False)]),
        "--out",
        str(engagement),
    )
    assert "theta" not in pd.read_csv(engagement)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns="rt_ms"), "in.csv: missing column(s): rt_ms"),
        (
            lambda f: f.assign(rating=[*f["rating"][:6], 101, *f["rating"][7:]]),
            "in.csv, line 8: rating 101 is outside the scale",
        ),
        (
            lambda f: f.assign(consensus=["high", *f["consensus"][1:]]),
            "in.csv, line 2: consensus 'high' is not a number",
        ),
    ],
)
def test_infer_refuses_bad_tables_naming_the_row(tmp_path, tiny_checkpoints, change, message):
    with pytest.raises(CommandError) as info:
        call_command(
            "latent",
            "infer",
            _csv(tmp_path, change(_table())),
            "--checkpoint",
            str(tiny_checkpoints[("engagement", True)]),
            "--out",
            str(tmp_path / "out.csv"),
        )
    assert message in str(info.value)
    assert not (tmp_path / "out.csv").exists()


def test_infer_refuses_a_checkpoint_of_another_model_or_none(tmp_path, tiny_checkpoints):
    table = _csv(tmp_path, _table())
    with pytest.raises(CommandError, match="a checkpoint of the 'drift' model, not 'engagement'"):
        call_command(
            "latent",
            "infer",
            table,
            "--checkpoint",
            str(tiny_checkpoints[("drift", True)]),
            "--model",
            "engagement",
            "--out",
            str(tmp_path / "o.csv"),
        )
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    with pytest.raises(CommandError, match="foreign.pt: not a latent-state checkpoint"):
        call_command("latent", "infer", table, "--checkpoint", str(foreign), "--out", str(tmp_path / "o.csv"))
    with pytest.raises(CommandError, match="missing.csv: no such file"):
        call_command(
            "latent",
            "infer",
            str(tmp_path / "missing.csv"),
            "--checkpoint",
            str(tiny_checkpoints[("drift", True)]),
            "--out",
            str(tmp_path / "o.csv"),
        )


def test_train_writes_a_checkpoint_with_its_report(tmp_path):
    out = tmp_path / "e.pt"
    call_command(
        "latent",
        "train",
        "--model",
        "engagement",
        "--no-rt",
        "--out",
        str(out),
        "--hidden",
        "4",
        "--layers",
        "1",
        "--epochs",
        "1",
        "--per-epoch",
        "64",
        "--validation",
        "8",
        "--threads",
        "1",
        "--map-steps",
        "5",
    )
    ckpt = checkpoint_load(out, model="engagement")
    assert ckpt.use_rt is False and ckpt.config["hidden"] == 4
    methods = ckpt.report["methods"]
    assert set(methods) == {"network", "forward_backward_true", "forward_backward_map"}
    assert 0 <= methods["network"]["auroc"] <= 1
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["model"] == "engagement" and sidecar["methods"]["network"] == methods["network"]
    with pytest.raises(CommandError, match="does not exist"):
        call_command("latent", "train", "--model", "drift", "--out", str(tmp_path / "no" / "x.pt"))


@pytest.mark.parametrize("name", ["engagement", "engagement-no-rt", "drift", "drift-no-rt"])
def test_shipped_checkpoints_are_small_and_what_they_say(name):
    model = name.removesuffix("-no-rt")
    path = default_checkpoint(model, use_rt=not name.endswith("-no-rt"))
    assert path.stat().st_size < 5 * 1024 * 1024
    ckpt = checkpoint_load(path, model=model)
    assert ckpt.use_rt is (not name.endswith("-no-rt"))
    assert ckpt.report["methods"]["network"]["auroc"] is not None


def _rate_session(client, study, ratings):  # noqa: F811  (study: the take-flow fixture)
    annotator = start_rating(client, study)
    for value, rt in ratings:
        answer = {"rating": "", "unsure": "1"} if value == "unsure" else {"rating": value}
        response = submit(client, study, current(annotator), rt_ms=rt, **answer)
        assert response.status_code in (200, 204, 302)
    return annotator


def test_response_times_from_the_annotator_page_reach_the_job_unchanged(client, study, researcher, tiny):  # noqa: F811  (study: the take-flow fixture)
    annotator = _rate_session(
        client, study, [("40", "4321"), ("55", "8000"), ("unsure", "2500"), ("90", ""), ("12", "777")]
    )
    stored = {r.assignment.position: r for r in Rating.objects.filter(annotator=annotator).select_related("assignment")}
    assert len(stored) == 5
    job = job_create(kind="latent", study=study, params={}, user=researcher)
    job = job_run(job_id=job.pk)
    assert job.status == Job.Status.SUCCEEDED, job.error
    artifact = job.artifacts.get(name="latent_trials.csv")
    trials = pd.read_csv(artifact.file.path, dtype={"pseudonym": str})
    assert trials["pseudonym"].unique().tolist() == [annotator.pseudonym]
    for row in trials.itertuples():
        rating = stored[row.trial]
        assert (None if pd.isna(row.rt_ms) else int(row.rt_ms)) == rating.rt_ms
        assert (None if pd.isna(row.server_rt_ms) else int(row.server_rt_ms)) == rating.server_rt_ms
        assert (np.isnan(row.rating) and rating.unsure) or row.rating == rating.value
    assert trials["rt_ms"].notna().sum() == 4 and trials["server_rt_ms"].notna().any()
    # Four of five ratings carry a browser time: the network with response times is used.
    assert job.result["use_rt"] is True and job.result["checkpoint"] == "engagement.pt"
    row = next(r for r in participants_table(study=study) if r["pseudonym"] == annotator.pseudonym)
    assert row["expected_disengaged"] == pytest.approx(trials["p_disengaged"].sum(), abs=1e-3)
    assert isinstance(row["latent_flag"], bool)


def test_leave_one_out_consensus_is_the_others_mean(release_study, tiny):
    frame = latent_service.latent_input_frame(study=release_study)
    prompt = frame["prompt_id"].iloc[0]
    same = frame[frame["prompt_id"] == prompt]
    first = same.iloc[0]
    others = same["rating"].iloc[1:]
    assert first["consensus"] == pytest.approx(others.mean())
    assert first["consensus_raters"] == others.notna().sum()
    assert frame["rt"].isna().all()  # the release has no response times


def test_release_job_uses_the_no_rt_network_and_flags_without_excluding(release_study, researcher, tiny):
    job = job_run(
        job_id=job_create(kind="latent", study=release_study, params={"flag_share": 0.01}, user=researcher).pk
    )
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result["use_rt"] is False and job.result["checkpoint"] == "engagement-no-rt.pt"
    assert len(job.result["annotators"]) == 100
    assert release_study.annotators.filter(status="excluded").count() == 0


def test_latent_params_are_checked(study, researcher):  # noqa: F811  (study: the take-flow fixture)
    from config.errors import ApplicationError

    with pytest.raises(ApplicationError, match="unknown model 'hmm'"):
        job_create(kind="latent", study=study, params={"model": "hmm"}, user=researcher)
    with pytest.raises(ApplicationError, match="flag_share"):
        job_create(kind="latent", study=study, params={"flag_share": 2}, user=researcher)


def test_pages_show_the_estimate(client, study, researcher, outsider, tiny):  # noqa: F811  (study: the take-flow fixture)
    annotator = _rate_session(client, study, [("40", "4321"), ("55", "8000"), ("70", "3000")])
    client.logout()
    client.force_login(researcher)
    participants = reverse("annotation:participants", args=[study.slug])
    assert "Estimate latent states" in client.get(participants).content.decode()
    start = reverse("benchmark:latent_start", args=[study.slug])
    assert client.get(start).status_code == 405
    response = client.post(start, {"model": "engagement"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "Latent annotator states" in response.content.decode()
    job = Job.objects.get(kind="latent", study=study)
    assert client.post(start, {"model": "nope"}).status_code == 400
    job_run(job_id=job.pk)
    page = client.get(participants).content.decode()
    assert "Disengaged (expected trials)" in page and f"job #{job.pk}" in page
    detail = client.get(
        reverse("annotation:participant_detail", args=[study.slug, annotator.pseudonym])
    ).content.decode()
    assert 'class="plot"' in detail and "p(disengaged)" in detail and "vendor/plotly-basic.min.js" in detail
    client.logout()
    client.force_login(outsider)
    assert client.post(start, {"model": "engagement"}).status_code in (403, 404)
    client.logout()
    assert client.post(start, {"model": "engagement"}).status_code in (302, 403)


def test_checkpoint_report_pages(client, researcher, monkeypatch, tmp_path):
    client.force_login(researcher)
    listing = client.get(reverse("benchmark:latent_checkpoints"))
    assert listing.status_code == 200 and "engagement-no-rt" in listing.content.decode()
    page = client.get(reverse("benchmark:latent_checkpoint", args=["engagement"]))
    assert page.status_code == 200 and "forward backward map" in page.content.decode()
    data = client.get(reverse("benchmark:latent_checkpoint", args=["drift"]) + "?format=json").json()
    assert {"network", "particle_smoother_true", "misspecified_baseline"} <= set(data["methods"])
    assert "theta" in data and data["model"] == "drift"
    assert client.get(reverse("benchmark:latent_checkpoint", args=["nothing"])).status_code == 404
    client.logout()
    assert client.get(reverse("benchmark:latent_checkpoint", args=["engagement"])).status_code == 302
