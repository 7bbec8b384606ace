"""Disagreement targeting: predict each candidate's rating SD from a pilot, and lean the selection toward it.

A pilot is a few annotators who rated some prompts.  Their SD of one prompt is a noisy thing (10 raters),
but their mean is much steadier, and on a bounded scale the SD is largest where the mean is near the
middle.  So `DisagreementModel` learns the pilot *mean* from each prompt's features (harm level, action and
effect shares, value topics) and MiniLM embedding (ridge, penalty by leave-one-out), and scores a
candidate by how close its predicted mean is to the scale's midpoint, plus (by default) how close its
harm level is to the middle of the harm axis, the paper's heuristic; both standardised and added, then
mapped to the SD scale by a line fitted to the pilot SD (on cross-fitted predictions, so the map sees the
predictions' real noise).  `SDRidge` regresses the pilot SD on the same inputs directly, for comparison.

`disagreement_evaluate` measures these on a release: for each draw of `pilot_size` annotators, prompts
are split into folds; a model trained on the pilot's ratings of the other folds predicts each held-out
prompt, and the predictions are compared (Spearman ρ) with the SD among the annotators outside the pilot.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from .pool import FEATURE_DIMENSIONS, Pool

ALPHAS = np.logspace(-1, 5, 25)
MIN_RATINGS = 2  # an SD needs two ratings
INNER_FOLDS = 5


def prompt_sd(ratings: np.ndarray) -> np.ndarray:
    """Per-prompt SD (ddof 1) of an annotators × prompts matrix, NaN = Unsure; NaN with fewer than 2 ratings."""
    counts = np.isfinite(ratings).sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sd = np.nanstd(ratings, axis=0, ddof=1)
    return np.where(counts >= MIN_RATINGS, sd, np.nan)


def prompt_mean(ratings: np.ndarray) -> np.ndarray:
    counts = np.isfinite(ratings).sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(ratings, axis=0)
    return np.where(counts >= 1, mean, np.nan)


def harm_heuristic(harm_level: np.ndarray) -> np.ndarray:
    """The paper's heuristic: disagreement grows toward the middle of the harm axis."""
    return -np.abs(np.asarray(harm_level, dtype=np.float64) - 0.5)


def feature_matrix(pool: Pool) -> np.ndarray:
    """Harm level, |level − 0.5|, (level − 0.5)², then the pool's action, effect and |value topic| columns."""
    h = pool.frame["harm_level"].to_numpy(dtype=np.float64)
    columns = [h, np.abs(h - 0.5), (h - 0.5) ** 2]
    for prefix in FEATURE_DIMENSIONS.values():
        block = pool.frame[[c for c in pool.feature_columns if c.startswith(prefix)]].to_numpy(dtype=np.float64)
        columns.extend(np.abs(block).T)
    return np.column_stack(columns)


class _Ridge:
    """Ridge on standardised features and (optionally) embeddings scaled so that the two blocks carry the
    same total variance (neither drowns the other under one penalty); rows with a NaN target are skipped."""

    def __init__(self, use_embedding: bool):
        self.use_embedding = use_embedding

    def _design(self, features, embeddings):
        X = (features - self.mean_) / self.scale_
        if self.use_embedding:
            X = np.hstack([X, (embeddings - self.embedding_mean_) * self.embedding_scale_])
        return X

    def fit(self, features, y, embeddings=None):
        from sklearn.linear_model import RidgeCV  # noqa: PLC0415  (scikit-learn is slow to import: only on a fit)

        if self.use_embedding and embeddings is None:
            raise ValueError("use_embedding needs the embeddings")
        keep = np.isfinite(y)
        features, y = features[keep], y[keep]
        self.mean_ = features.mean(axis=0)
        sd = features.std(axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0)
        if self.use_embedding:
            embeddings = embeddings[keep]
            self.embedding_mean_ = embeddings.mean(axis=0)
            total = float(((embeddings - self.embedding_mean_) ** 2).sum(axis=1).mean())
            self.embedding_scale_ = np.sqrt(features.shape[1] / total) if total > 0 else 1.0
        self.model_ = RidgeCV(alphas=ALPHAS).fit(self._design(features, embeddings), y)
        return self

    def predict(self, features, embeddings=None):
        return self.model_.predict(self._design(features, embeddings))


class SDRidge:
    """Ridge straight on the pilot SD (features, optionally embeddings) → SD."""

    def __init__(self, *, use_embedding: bool = True):
        self.use_embedding = use_embedding

    def fit(self, features, pilot_mean, pilot_sd, harm_level, embeddings=None) -> SDRidge:
        self.ridge_ = _Ridge(self.use_embedding).fit(features, pilot_sd, embeddings)
        return self

    def predict(self, features, harm_level, embeddings=None) -> np.ndarray:
        return self.ridge_.predict(features, embeddings)


class DisagreementModel:
    """Predicted SD from the predicted mean's closeness to the midpoint (+ the harm heuristic).

    `fit(features, pilot_mean, pilot_sd, harm_level, embeddings=None)`; `predict(features, harm_level,
    embeddings=None)`.  `midpoint` is the middle of the rating scale (50 on 0–100)."""

    def __init__(
        self, *, use_embedding: bool = True, with_heuristic: bool = True, midpoint: float = 50.0, seed: int = 0
    ):
        self.use_embedding = use_embedding
        self.with_heuristic = with_heuristic
        self.midpoint = midpoint
        self.seed = seed

    def _score(self, predicted_mean, harm_level):
        score = (-np.abs(predicted_mean - self.midpoint) - self.closeness_mean_) / self.closeness_sd_
        if self.with_heuristic:
            score = score + (harm_heuristic(harm_level) - self.heuristic_mean_) / self.heuristic_sd_
        return score

    def fit(self, features, pilot_mean, pilot_sd, harm_level, embeddings=None) -> DisagreementModel:
        from sklearn.linear_model import LinearRegression  # noqa: PLC0415  (as in _Ridge.fit)

        if self.use_embedding and embeddings is None:
            raise ValueError("use_embedding needs the embeddings")
        n = len(features)
        # cross-fitted means: the map to the SD scale must see predictions as noisy as a new candidate's
        inner = np.full(n, np.nan)
        assignment = np.random.default_rng(self.seed).permutation(np.arange(n) % INNER_FOLDS)
        for fold in range(INNER_FOLDS):
            test = assignment == fold
            ridge = _Ridge(self.use_embedding).fit(
                features[~test], pilot_mean[~test], embeddings[~test] if self.use_embedding else None
            )
            inner[test] = ridge.predict(features[test], embeddings[test] if self.use_embedding else None)
        self.mean_model_ = _Ridge(self.use_embedding).fit(features, pilot_mean, embeddings)
        closeness = -np.abs(inner - self.midpoint)
        self.closeness_mean_, self.closeness_sd_ = closeness.mean(), max(closeness.std(), 1e-9)
        heuristic = harm_heuristic(harm_level)
        self.heuristic_mean_, self.heuristic_sd_ = heuristic.mean(), max(heuristic.std(), 1e-9)
        score = self._score(inner, harm_level)
        keep = np.isfinite(pilot_sd)
        self.to_sd_ = LinearRegression().fit(score[keep, None], pilot_sd[keep])
        return self

    def predict_mean(self, features, embeddings=None) -> np.ndarray:
        return self.mean_model_.predict(features, embeddings if self.use_embedding else None)

    def predict(self, features, harm_level, embeddings=None) -> np.ndarray:
        score = self._score(self.predict_mean(features, embeddings), harm_level)
        return self.to_sd_.predict(score[:, None])


def _rho(a: np.ndarray, b: np.ndarray) -> float:
    keep = np.isfinite(a) & np.isfinite(b)
    return float(spearmanr(a[keep], b[keep]).statistic)


# name → (model class, its options); the evaluation fits each out of fold
MODELS = {
    "sd_ridge_features": (SDRidge, {"use_embedding": False}),
    "sd_ridge_features_embedding": (SDRidge, {"use_embedding": True}),
    "mean_route_features_embedding": (DisagreementModel, {"use_embedding": True, "with_heuristic": False}),
    "mean_route_features": (DisagreementModel, {"use_embedding": False, "with_heuristic": True}),
    "mean_route_features_embedding_heuristic": (DisagreementModel, {"use_embedding": True, "with_heuristic": True}),
}
DEFAULT_MODEL = "mean_route_features_embedding_heuristic"


def out_of_fold(
    name: str,
    features: np.ndarray,
    pilot_ratings: np.ndarray,
    harm_level: np.ndarray,
    *,
    embeddings: np.ndarray | None,
    folds: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Each prompt's SD predicted by a model that never saw that prompt's pilot ratings."""
    cls, options = MODELS[name]
    pilot_mean, pilot_sd = prompt_mean(pilot_ratings), prompt_sd(pilot_ratings)
    n = len(features)
    assignment = rng.permutation(np.arange(n) % folds)
    predicted = np.full(n, np.nan)
    for fold in range(folds):
        test, train = assignment == fold, assignment != fold
        model = cls(**options).fit(
            features[train],
            pilot_mean[train],
            pilot_sd[train],
            harm_level[train],
            embeddings[train] if embeddings is not None else None,
        )
        predicted[test] = model.predict(
            features[test], harm_level[test], embeddings[test] if embeddings is not None else None
        )
    return predicted


def disagreement_evaluate(
    pool: Pool,
    ratings: np.ndarray,
    *,
    embeddings: np.ndarray | None,
    pilot_size: int = 10,
    draws: int = 20,
    folds: int = 5,
    seed: int = 0,
) -> dict:
    """Rank correlation of predicted and observed SD on held-out prompts, over `draws` random pilots.

    `ratings` is annotators × prompts in the pool's order (NaN = Unsure).  For each draw: the pilot's
    ratings train each model out of fold; the SD of everyone else is the truth.  Methods: the harm-level
    heuristic, each of `MODELS` (the embedding ones only with `embeddings`), and, as a reference, the
    pilot's own SD of the same prompt (what a pilot that rated every candidate would know).  Returns per
    method the Spearman ρ over draws (mean, SD, range, per draw) and draw 0's predictions.
    """
    n_annotators, n_prompts = ratings.shape
    if n_prompts != len(pool):
        raise ValueError("ratings must have one column per pool candidate")
    if not MIN_RATINGS <= pilot_size <= n_annotators - MIN_RATINGS:
        raise ValueError(f"the pilot needs {MIN_RATINGS} to {n_annotators - MIN_RATINGS} annotators")
    rng = np.random.default_rng(seed)
    features = feature_matrix(pool)
    harm = pool.frame["harm_level"].to_numpy(dtype=np.float64)
    names = [name for name, (_, options) in MODELS.items() if embeddings is not None or not options["use_embedding"]]
    rhos: dict[str, list[float]] = {"harm_heuristic": [], **{name: [] for name in names}, "pilot_sd_same_prompt": []}
    first = {}
    for draw in range(draws):
        pilot = np.zeros(n_annotators, dtype=bool)
        pilot[rng.choice(n_annotators, size=pilot_size, replace=False)] = True
        observed = prompt_sd(ratings[~pilot])
        fold_rng_seed = int(rng.integers(2**32))
        predictions = {"harm_heuristic": harm_heuristic(harm)}
        for name in names:
            predictions[name] = out_of_fold(
                name,
                features,
                ratings[pilot],
                harm,
                embeddings=embeddings,
                folds=folds,
                rng=np.random.default_rng(fold_rng_seed),  # the same folds for every model
            )
        predictions["pilot_sd_same_prompt"] = prompt_sd(ratings[pilot])
        for name, predicted in predictions.items():
            rhos[name].append(_rho(predicted, observed))
        if draw == 0:
            first = {"pilot": np.flatnonzero(pilot).tolist(), "observed_sd": observed, **predictions}
    summary = {
        name: {
            "mean": float(np.mean(values)),
            "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "min": float(np.min(values)),
            "max": float(np.max(values)),
            "per_draw": [float(v) for v in values],
        }
        for name, values in rhos.items()
    }
    return {
        "pilot_size": pilot_size,
        "draws": draws,
        "folds": folds,
        "seed": seed,
        "spearman": summary,
        "first_draw": first,
    }


def standardized(values: np.ndarray) -> np.ndarray:
    """z-scores (a selection's score weight then reads as objective units per SD of predicted disagreement)."""
    values = np.asarray(values, dtype=np.float64)
    sd = values.std()
    return (values - values.mean()) / sd if sd > 0 else np.zeros_like(values)


# ---------------------------------------------------------------- a pilot file, for the command and the job

PILOT_COLUMNS = ("external_id", "annotator", "rating")
MIN_PILOT_PROMPTS = 10


class PilotFormatError(ValueError):
    """A pilot file that cannot be used; the message names the rows and columns."""


def pilot_read(raw: bytes, pool: Pool, *, name: str = "pilot.csv", scale: tuple[float, float] = (0, 100)):
    """A pilot's ratings of pool candidates, long CSV (`external_id`, `annotator`, `rating`; an empty
    rating is Unsure) → annotators × candidates matrix (NaN where not rated or Unsure)."""
    try:
        frame = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise PilotFormatError(f"{name}: not a UTF-8 CSV file ({exc})") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in PILOT_COLUMNS if c not in frame.columns]
    if missing:
        raise PilotFormatError(f"{name}: missing column(s): {', '.join(missing)}")
    positions = {value: i for i, value in enumerate(pool.frame["external_id"])}
    problems = []
    ids = frame["external_id"].str.strip()
    who = frame["annotator"].str.strip()
    text = frame["rating"].str.strip()
    rating = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    for row in range(len(frame)):
        where = f"{name}, row {row + 1}"
        if ids.iloc[row] not in positions:
            problems.append(f"{where}, column external_id: {ids.iloc[row]!r} is not in the pool")
        if not who.iloc[row]:
            problems.append(f"{where}, column annotator: empty")
        if text.iloc[row] and not (np.isfinite(rating[row]) and scale[0] <= rating[row] <= scale[1]):
            problems.append(f"{where}, column rating: {text.iloc[row]!r} is not a number in {scale[0]:g}–{scale[1]:g}")
    pairs = pd.Series(list(zip(who, ids, strict=True)))
    for row in np.flatnonzero(pairs.duplicated().to_numpy()):
        problems.append(f"{name}, row {row + 1}: annotator {who.iloc[row]!r} rated {ids.iloc[row]!r} twice")
    if problems:
        shown = problems[:20] + ([f"… and {len(problems) - 20} more problem(s)"] if len(problems) > 20 else [])
        raise PilotFormatError("\n".join(shown))
    annotators = {a: i for i, a in enumerate(dict.fromkeys(who))}
    matrix = np.full((len(annotators), len(pool)), np.nan)
    matrix[who.map(annotators).to_numpy(), ids.map(positions).to_numpy()] = rating
    rated = int((np.isfinite(matrix).sum(axis=0) >= MIN_RATINGS).sum())
    if rated < MIN_PILOT_PROMPTS:
        raise PilotFormatError(
            f"{name}: only {rated} pool prompts have two or more pilot ratings; at least {MIN_PILOT_PROMPTS} are needed"
        )
    return matrix


def disagreement_predict(
    pool: Pool, pilot: np.ndarray, *, embeddings: np.ndarray | None = None, midpoint: float = 50.0
) -> np.ndarray:
    """Every candidate's predicted SD, from a model trained on the candidates the pilot rated (two or more
    ratings): the default model, without the embedding when `embeddings` is None."""
    features = feature_matrix(pool)
    harm = pool.frame["harm_level"].to_numpy(dtype=np.float64)
    train = np.isfinite(pilot).sum(axis=0) >= MIN_RATINGS
    model = DisagreementModel(use_embedding=embeddings is not None, midpoint=midpoint).fit(
        features[train],
        prompt_mean(pilot[:, train]),
        prompt_sd(pilot[:, train]),
        harm[train],
        embeddings[train] if embeddings is not None else None,
    )
    return model.predict(features, harm, embeddings)


def disagreement_holdout(
    pool: Pool,
    pilot: np.ndarray,
    *,
    embeddings: np.ndarray | None = None,
    midpoint: float = 50.0,
    folds: int = 5,
    seed: int = 0,
) -> dict:
    """How well the model `disagreement_predict` fits ranks prompts it never saw: the candidates the pilot
    rated (two or more ratings) are split into `folds`; a model trained on the other folds predicts each
    held-out prompt's SD, compared (Spearman ρ) with the pilot's own SD of it.  With few pilot annotators
    that SD is noisy, so ρ is a low estimate; the harm-level heuristic is scored on the same prompts."""
    rated = np.flatnonzero(np.isfinite(pilot).sum(axis=0) >= MIN_RATINGS)
    if len(rated) < 2 * folds:
        raise ValueError(f"a held-out check needs at least {2 * folds} rated prompts (got {len(rated)})")
    features = feature_matrix(pool)[rated]
    harm = pool.frame["harm_level"].to_numpy(dtype=np.float64)[rated]
    ratings = pilot[:, rated]
    emb = embeddings[rated] if embeddings is not None else None
    pilot_mean, observed = prompt_mean(ratings), prompt_sd(ratings)
    assignment = np.random.default_rng(seed).permutation(np.arange(len(rated)) % folds)
    predicted = np.full(len(rated), np.nan)
    for fold in range(folds):
        test, train = assignment == fold, assignment != fold
        model = DisagreementModel(use_embedding=emb is not None, midpoint=midpoint, seed=seed).fit(
            features[train], pilot_mean[train], observed[train], harm[train], emb[train] if emb is not None else None
        )
        predicted[test] = model.predict(features[test], harm[test], emb[test] if emb is not None else None)
    return {
        "spearman": _rho(predicted, observed),
        "harm_heuristic_spearman": _rho(harm_heuristic(harm), observed),
        "prompts": int(len(rated)),
        "folds": folds,
        "observed": "the pilot's SD of each held-out prompt",
    }
