"""Every predictor module, imported so that the registry (`base.REGISTRY`) is full.

`builtin_names()` lists the predictors that run with no configuration (no endpoint, no uploaded file):
what the benchmark runs by default.
"""

from __future__ import annotations

from benchmark.science.predictors import (  # noqa: F401
    baselines,
    collaborative,
    embeddings,
    features,
    llm,
    personalized,
    traits_model,
    uploaded,
)
from benchmark.science.predictors.base import AGGREGATE, CONDITIONS, REGISTRY, Predictor, get_predictor, register

try:  # written separately; the rest works before it lands
    from benchmark.science.predictors import safetyanalyst  # noqa: F401
except ImportError:
    safetyanalyst = None


def builtin_names() -> list[str]:
    """Registered predictors that need no configuration, in registration order."""
    return [name for name, cls in REGISTRY.items() if not getattr(cls, "needs_config", False)]


__all__ = ["AGGREGATE", "CONDITIONS", "REGISTRY", "Predictor", "builtin_names", "get_predictor", "register"]
