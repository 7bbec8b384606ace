"""Steering: the per-study model is built once per study version and cached, so a slider move reads no
ratings; a new answer (or an import) changes the version and the model is rebuilt."""

import re

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from annotation.models import Annotator, Rating
from benchmark import steering
from benchmark.science import harm_benefit as hb

pytestmark = pytest.mark.django_db


def test_a_slider_move_reads_no_ratings_once_the_model_is_cached(client, researcher, release_study):
    client.force_login(researcher)
    url = reverse("benchmark:steering_score", args=["pluriharms"])
    assert client.post(url, {"w0": "0.5"}, HTTP_HX_REQUEST="true").status_code == 200  # builds and caches
    with CaptureQueriesContext(connection) as queries:
        response = client.post(url, {"w0": "0.2"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert "annotation_rating" not in sql and "annotation_assignment" not in sql
    assert len(queries.captured_queries) <= 8, [q["sql"] for q in queries.captured_queries]


def test_the_cached_model_scores_as_the_model_does(release_study):
    _, model = steering.steering_model(study=release_study)
    weights = hb.FeatureWeights(
        np.linspace(0, 1, 16), model.baseline.effect, model.baseline.scale, model.baseline.offset
    )
    table = steering.score_table(model, weights=weights).set_index("prompt")
    direct = hb.FeatureLevelSafetyAnalyst(weights).decision_function(model.X)
    assert np.allclose(table.loc[model.prompt_ids, "H"].to_numpy(), direct)
    # The overall means are the prompts' mean ratings (Unsure left out).
    first = model.prompt_ids[0]
    values = Rating.objects.filter(prompt__study=release_study, prompt__external_id=first, unsure=False)
    assert model.overall.means[0] == pytest.approx(np.mean([r.value for r in values]))


def test_a_group_fit_from_cached_means_equals_a_fit_on_every_rating(release_study):
    _, model = steering.steering_model(study=release_study)
    fitted = steering.group_fit(model, column="Gender", value="Woman").weights
    # The same fit, from the group's individual ratings (one row per rating).
    ratings = Rating.objects.filter(
        prompt__study=release_study, unsure=False, annotator__demographics__Gender__in=["Woman", " Woman"]
    )
    rows = list(ratings.values_list("prompt__external_id", "value"))
    index = {p: i for i, p in enumerate(model.prompt_ids)}
    X = model.X[[index[p] for p, _ in rows]]
    y = np.array([v for _, v in rows])
    direct = hb.steer(model.baseline, trees_or_features=X, ratings=y).weights
    assert np.allclose(fitted.action, direct.action, atol=1e-4)


def _answer_one_prompt(client, study) -> None:
    """A new annotator rates one prompt through the real views (link, consent, instructions, submit)."""
    from annotation.models import Study

    Study.objects.filter(pk=study.pk).update(status=Study.Status.RECRUITING, instruments=[])
    client.get(f"/s/{study.slug}/?PROLIFIC_PID=5f1e3c0a9b8d7e6f5a4b3c2d&STUDY_ID=st&SESSION_ID=se")
    client.post(reverse("take:consent", args=[study.slug]), {"consent": "agree"})
    client.post(reverse("take:instructions", args=[study.slug]))
    annotator = Annotator.objects.get(study=study, status="rating")
    trial = annotator.assignments.filter(kind="prompt").order_by("position").first()
    response = client.post(
        reverse("take:rate_submit", args=[study.slug, trial.pk]), {"rating": "100"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200 and Rating.objects.filter(assignment=trial).exists()


def test_a_new_answer_changes_the_version_and_the_model(client, release_study, monkeypatch):
    builds = []
    original = steering.steering_model_build
    monkeypatch.setattr(steering, "steering_model_build", lambda **kw: builds.append(1) or original(**kw))
    first_version, before = steering.steering_model(study=release_study)
    steering.steering_model(study=release_study)
    assert len(builds) == 1
    _answer_one_prompt(client, release_study)
    version, after = steering.steering_model(study=release_study)
    assert len(builds) == 2 and version != first_version
    assert after.overall.counts.sum() == before.overall.counts.sum() + 1


def test_an_exclusion_changes_the_version(release_study):
    version, _ = steering.steering_model(study=release_study)
    annotator = Annotator.objects.filter(study=release_study).first()
    # Excluding someone changes no timestamp; the version must still move (it counts statuses).
    Annotator.objects.filter(pk=annotator.pk).update(status=Annotator.Status.EXCLUDED)
    assert steering.steering_model(study=release_study)[0] != version


def test_slider_moves_use_the_model_their_page_was_built_from(client, researcher, release_study, monkeypatch):
    client.force_login(researcher)
    page = client.get(reverse("benchmark:steering", args=["pluriharms"])).content.decode()
    version = re.search(r'name="model" value="([0-9a-f]{32})"', page).group(1)
    Annotator.objects.filter(study=release_study).update(last_seen_at=timezone.now())  # the study moves on
    builds = []
    monkeypatch.setattr(steering, "steering_model_build", lambda **kw: builds.append(1))
    url = reverse("benchmark:steering_score", args=["pluriharms"])
    assert client.post(url, {"model": version, "w0": "0.3"}, HTTP_HX_REQUEST="true").status_code == 200
    assert builds == []  # no rebuild during a slider move, however the study changed since the page
