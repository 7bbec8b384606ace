"""Capacity is decided at consent, one consent at a time per study, on a real PostgreSQL."""

import pytest

from annotation.models import Annotator
from annotation.services.recruitment import EntryRefused, RecruitmentParams, annotator_consent, annotator_enter
from tests.integration.test_concurrency import _study, run_together

pytestmark = pytest.mark.services


def test_simultaneous_consents_never_overfill_max_annotators(postgres):
    study = _study(max_annotators=3)
    arrived = [
        annotator_enter(study=study, params=RecruitmentParams(f"consenter{i:015d}", "s", "t"))[0] for i in range(8)
    ]
    assert len(arrived) == 8  # arriving is free: nobody has consented yet
    _, errors = run_together([lambda a=a: annotator_consent(annotator=a, agree=True) for a in arrived])
    assert Annotator.objects.filter(study=study, status="consented").count() == 3
    assert Annotator.objects.filter(study=study, status="new").count() == 5
    assert len(errors) == 5 and all(isinstance(e, EntryRefused) and e.reason == "full" for e in errors)
