"""The analysis job gives the descriptive report a frame of the columns it reads, and the mixed models the
whole study frame (issue 14: at 1.5 million ratings the 62 prompt features are 0.8 GB the report never reads)."""

import pandas as pd
import pytest

import benchmark.analysis as analysis
from annotation.importers import pluriharms_import
from annotation.models import Annotator, Rating
from benchmark.science.release import DEMOGRAPHIC_COLUMNS
from benchmark.science.report import descriptive_columns, descriptive_report
from tests.conftest import write_small_release

VARYING = ("seconds",)  # how long the report took


@pytest.fixture
def study(tmp_path, researcher):
    """Twelve annotators × eight prompts of the release, one annotator excluded, a few answers Unsure."""
    study = pluriharms_import(
        directory=write_small_release(tmp_path / "s", n_prompts=8, n_annotators=12), slug="frames", owner=researcher
    )
    people = list(Annotator.objects.filter(study=study).order_by("id"))
    Annotator.objects.filter(pk=people[3].pk).update(status=Annotator.Status.EXCLUDED)
    unsure = Rating.objects.filter(annotator__study=study).order_by("id").values_list("id", flat=True)[::7]
    Rating.objects.filter(id__in=list(unsure)).update(unsure=True, value=None)
    return study


def _without(report: dict, keys) -> dict:
    return {k: v for k, v in report.items() if k not in keys}


@pytest.mark.django_db
@pytest.mark.parametrize("include_excluded", [False, True])
def test_the_report_of_the_cut_frame_is_the_report_of_the_whole_frame(study, monkeypatch, include_excluded):
    seen = []

    def spy(frame, **kwargs):
        seen.append(frame)
        return descriptive_report(frame, **kwargs)

    monkeypatch.setattr(analysis, "descriptive_report", spy)
    report = analysis.study_report(study=study, mixed_effects=False, n_boot=50, include_excluded=include_excluded)
    whole = analysis.study_frame(study=study, include_excluded=include_excluded)
    expected = descriptive_report(whole, n_boot=50)

    (frame,) = seen
    assert list(frame.columns) == descriptive_columns(whole.columns)
    assert {"annotator", "prompt", "rating", "unsure", "harm_level", *DEMOGRAPHIC_COLUMNS} == set(frame.columns)
    assert len(whole.columns) > len(frame.columns) + 60  # the features, trait scores and timings are left out
    coded = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    assert set(coded) == set(DEMOGRAPHIC_COLUMNS)  # a code per rating, not a string
    pd.testing.assert_frame_equal(frame.astype({c: whole[c].dtype for c in coded}), whole[frame.columns])
    assert len(frame) == len(whole) and (frame["unsure"].sum() > 0)
    n_excluded = (analysis.ratings_frame(study=study)["annotator_status"] == "excluded").sum()
    assert n_excluded > 0 and len(frame) == 96 - (0 if include_excluded else n_excluded)
    for row in report["prompts"]:
        row.pop("text")
    assert _without(report, {*VARYING, "study", "generated_at", "include_excluded"}) == _without(expected, VARYING)


@pytest.mark.django_db
def test_the_mixed_models_get_the_whole_study_frame(study, monkeypatch):
    seen = []
    monkeypatch.setattr(analysis, "fit_all", lambda frame, seed: seen.append(frame) or {"rq1": None})
    report = analysis.study_report(study=study, mixed_effects=True, n_boot=20)
    (frame,) = seen
    pd.testing.assert_frame_equal(frame, analysis.study_frame(study=study))
    assert report["mixed_effects"] == {"rq1": None}
