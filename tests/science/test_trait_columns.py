"""Per-rating columns of a study's frame are never taken as annotator traits by the predictors."""

import pandas as pd

from benchmark.science.predictors.common import trait_columns


def test_per_rating_times_flags_and_status_are_not_traits():
    frame = pd.DataFrame(
        {
            "annotator": ["a", "a", "b"],
            "prompt": ["p", "q", "p"],
            "rating": [10.0, 80.0, 50.0],
            "unsure": [False, False, False],
            "trial": [1, 2, 1],
            "rt_ms": [900, 15000, 4000],  # the rating's own response time
            "server_rt_ms": [950, 15100, 4100],
            "revised": [False, True, False],
            "annotator_status": ["completed", "completed", "excluded"],
            "Age": ["18-24 years old", "18-24 years old", "65 years old or above"],
            "care_score": [3.5, 3.5, 2.0],
        }
    )
    assert trait_columns(frame) == ["Age", "care_score"]
