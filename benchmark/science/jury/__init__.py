"""Error by group and the jury view (issue 13): whose judgment does a model match, and what would a
chosen population say?

  - `groups`: MAE per level of each trait column, the gap between the best- and worst-served level
    and its permutation test.
  - `raking`: weights over real annotators that match a population mix (iterative proportional
    fitting), saying which marginal cannot be met.
  - `census`: population mixes shipped with their source ("as a named census").
  - `panel`: juries of N synthetic annotators drawn with those weights, their predicted ratings and
    the share above a harm threshold, with intervals over juries and over the predictor's fit.
  - `validation`: held-out annotators' own mix against the jury's prediction and the naive answer.
"""

from .census import census_names, census_read
from .groups import error_by_group, group_labels, seeds_error_by_group
from .panel import (
    DEFAULT_PREDICTOR,
    DEFAULT_RATINGS_PREDICTOR,
    JuryFit,
    jury_draw,
    jury_fit,
    jury_predictors,
    people_table,
    person_columns,
)
from .raking import MixError, RakeResult, marginals, mix_check, rake
from .validation import VALIDATION_COLUMNS, jury_validate

__all__ = [
    "DEFAULT_PREDICTOR",
    "DEFAULT_RATINGS_PREDICTOR",
    "VALIDATION_COLUMNS",
    "census_names",
    "census_read",
    "JuryFit",
    "MixError",
    "RakeResult",
    "error_by_group",
    "group_labels",
    "jury_draw",
    "jury_fit",
    "jury_predictors",
    "jury_validate",
    "marginals",
    "mix_check",
    "people_table",
    "person_columns",
    "rake",
    "seeds_error_by_group",
]
