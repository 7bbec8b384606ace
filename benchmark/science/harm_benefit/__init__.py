"""SafetyAnalyst harm-benefit trees, their aggregation model, fitting and steering.

SafetyAnalyst (Li et al., "SafetyAnalyst: Interpretable, transparent, and steerable LLM safety
moderation") has an LLM write a *harm-benefit tree* for a prompt and turns the tree into a
harmfulness score ``H`` with a small parameterized aggregation model: the prompt is harmful when
``H > 0`` and ``P(harmful) = sigmoid(H)``. The weights can be fitted to labels or ratings and set by
hand, which is what makes the model *steerable* toward a person, a group or a whole study. This package
is our own implementation of that aggregation (written from the public description and a reading of
``src/aggregation.py`` in github.com/jl3676/SafetyAnalyst; no code copied) plus a feature-level variant
for prompts that carry only category distributions (the PluriHarms release). Pure numpy/scipy/pandas.

Modules (each docstring documents its part of the model):

* :mod:`.schema` -- the tree schema, :func:`tree_validate`, the category and level vocabularies, the
  taxonomy and example tree;
* :mod:`.aggregation` -- the 29 named weights (:class:`AggregationWeights`), effect-count tables
  (:func:`compile_trees`) and the score (:func:`tree_scores`);
* :mod:`.fitting` -- losses, the penalized objective and :class:`SafetyAnalystAggregator`;
* :mod:`.features` -- :class:`FeatureLevelSafetyAnalyst` on ``action_*`` / ``effect_*`` columns;
* :mod:`.steering` -- :func:`steer` and :class:`SteeringResult`;
* :mod:`.simulate` -- :func:`random_trees`.

Not implemented: the reference's harm-only / benefit-only analyses (their 23-value weight files have an
undocumented layout) and per-effect-category weights on trees (its 36-value layout).
"""

from .aggregation import (
    N_PARAMS,
    REFERENCE_EXAMPLE_H,
    REFERENCE_WEIGHTS_PATH,
    WEIGHT_LAYOUT,
    WEIGHT_NAMES,
    AggregationWeights,
    CompiledTrees,
    compile_trees,
    levels_from_ratios,
    tree_scores,
)
from .features import (
    ACTION_FEATURE_COLUMNS,
    EFFECT_FEATURE_COLUMNS,
    FeatureLevelSafetyAnalyst,
    FeatureWeights,
    feature_matrices,
)
from .fitting import SafetyAnalystAggregator
from .schema import (
    ACTION_CATEGORIES,
    DATA_DIR,
    EFFECT_CATEGORIES,
    EXAMPLE_TREE_PATH,
    EXTENT_LEVELS,
    LIKELIHOOD_LEVELS,
    N_ACTIONS,
    N_EFFECTS,
    TAXONOMY_PATH,
    TreeError,
    action_category,
    load_example_tree,
    load_taxonomy,
    tree_by_action,
    tree_validate,
)
from .simulate import random_trees
from .steering import SteeringResult, steer

__all__ = [
    "ACTION_CATEGORIES",
    "ACTION_FEATURE_COLUMNS",
    "DATA_DIR",
    "EFFECT_CATEGORIES",
    "EFFECT_FEATURE_COLUMNS",
    "EXAMPLE_TREE_PATH",
    "EXTENT_LEVELS",
    "LIKELIHOOD_LEVELS",
    "N_ACTIONS",
    "N_EFFECTS",
    "N_PARAMS",
    "REFERENCE_EXAMPLE_H",
    "REFERENCE_WEIGHTS_PATH",
    "TAXONOMY_PATH",
    "WEIGHT_LAYOUT",
    "WEIGHT_NAMES",
    "AggregationWeights",
    "CompiledTrees",
    "FeatureLevelSafetyAnalyst",
    "FeatureWeights",
    "SafetyAnalystAggregator",
    "SteeringResult",
    "TreeError",
    "action_category",
    "compile_trees",
    "feature_matrices",
    "levels_from_ratios",
    "load_example_tree",
    "load_taxonomy",
    "random_trees",
    "steer",
    "tree_by_action",
    "tree_scores",
    "tree_validate",
]
