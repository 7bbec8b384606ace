"""Long per-trial tables in and out of the latent-state estimators.

The input is one row per (annotator, trial): `annotator`, `trial` (display position; any increasing
integers), `rating` (0…100, empty/NaN for Unsure; fractional values are rounded to the nearest integer,
the models' scale), `rt_ms` (empty/NaN when not recorded) and `consensus` (the mean rating of that prompt
by the other annotators, 0…100). `sequences_from_frame` checks it and says which row is wrong;
`annotator_summary` turns per-trial estimates into one row per annotator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .models import SCALE_MAX, Sequences

INPUT_COLUMNS = ("annotator", "trial", "rating", "rt_ms", "consensus")
# Expected share of disengaged trials from which an annotator is flagged for review (never excluded).
FLAG_SHARE = 0.2


class LatentInputError(ValueError):
    """Bad input, with a message that names the column or row (`row` is 0-based in the frame)."""


@dataclass
class Layout:
    """Where each input row went: its annotator's index and its position in that sequence."""

    annotators: list[str]
    row_annotator: np.ndarray
    row_position: np.ndarray


def _numbers(frame: pd.DataFrame, column: str, *, row_label) -> np.ndarray:
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(values) & raw.notna().to_numpy() & (raw.astype(str).str.strip() != "").to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise LatentInputError(f"{row_label(i)}: {column} {raw.iloc[i]!r} is not a number")
    return values


def sequences_from_frame(frame: pd.DataFrame, *, row_label=None) -> tuple[Sequences, Layout]:
    """Check the table and pad it into `Sequences` (one row per annotator, trials in order)."""
    row_label = row_label or (lambda i: f"row {i + 1}")
    missing = [c for c in INPUT_COLUMNS if c not in frame.columns]
    if missing:
        raise LatentInputError(f"missing column(s): {', '.join(missing)} (need {', '.join(INPUT_COLUMNS)})")
    if frame.empty:
        raise LatentInputError("no rows")
    frame = frame.reset_index(drop=True)
    annotator = frame["annotator"]
    blank = annotator.isna().to_numpy() | (annotator.astype(str).str.strip() == "").to_numpy()
    if blank.any():
        raise LatentInputError(f"{row_label(int(np.flatnonzero(blank)[0]))}: annotator is empty")
    annotator = annotator.astype(str).str.strip()

    trial = _numbers(frame, "trial", row_label=row_label)
    bad = np.isnan(trial) | (trial != np.round(trial))
    if bad.any():
        raise LatentInputError(f"{row_label(int(np.flatnonzero(bad)[0]))}: trial must be an integer")
    rating = _numbers(frame, "rating", row_label=row_label)
    bad = (rating < 0) | (rating > SCALE_MAX)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise LatentInputError(f"{row_label(i)}: rating {rating[i]:g} is outside the scale 0–{SCALE_MAX}")
    rating = np.round(rating)
    rt = _numbers(frame, "rt_ms", row_label=row_label)
    bad = ~np.isnan(rt) & ~(rt > 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise LatentInputError(f"{row_label(i)}: rt_ms {rt[i]:g} must be a positive number of milliseconds")
    consensus = _numbers(frame, "consensus", row_label=row_label)
    bad = np.isnan(consensus) | (consensus < 0) | (consensus > SCALE_MAX)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise LatentInputError(f"{row_label(i)}: consensus must be a number in 0–{SCALE_MAX}")

    codes, names = pd.factorize(annotator, sort=False)
    key = pd.DataFrame({"a": codes, "t": trial})
    dup = key.duplicated(keep="first").to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise LatentInputError(f"{row_label(i)}: annotator {annotator.iloc[i]!r} has trial {int(trial[i])} twice")
    order = np.lexsort((trial, codes))
    position = np.empty(len(frame), dtype=np.int64)
    counts = np.bincount(codes, minlength=len(names))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position[order] = np.arange(len(frame)) - np.repeat(starts, counts)
    n, n_trials = len(names), int(counts.max())
    shape = (n, n_trials)
    out = {name: np.full(shape, np.nan) for name in ("rating", "rt_ms", "consensus")}
    out["rating"][codes, position] = rating
    out["rt_ms"][codes, position] = rt
    out["consensus"][codes, position] = consensus
    mask = np.zeros(shape, dtype=bool)
    mask[codes, position] = True
    seqs = Sequences(rating=out["rating"], rt_ms=out["rt_ms"], consensus=out["consensus"], mask=mask)
    return seqs, Layout(annotators=[str(x) for x in names], row_annotator=codes, row_position=position)


def per_row(values: np.ndarray, layout: Layout) -> np.ndarray:
    """Per-trial estimates (n, T) back in the input's row order."""
    return values[layout.row_annotator, layout.row_position]


def annotator_summary(
    p_disengaged: np.ndarray, mask: np.ndarray, annotators: list[str], *, flag_share: float = FLAG_SHARE
) -> pd.DataFrame:
    """One row per annotator: trials, expected disengaged trials (Σ p), their share, and the review flag."""
    n_trials = mask.sum(axis=1)
    expected = np.where(mask, p_disengaged, 0.0).sum(axis=1)
    share = expected / np.maximum(n_trials, 1)
    return pd.DataFrame(
        {
            "annotator": annotators,
            "trials": n_trials,
            "expected_disengaged": expected,
            "disengaged_share": share,
            "flag_review": share >= flag_share,
        }
    )


def leave_one_out_consensus(
    prompt: np.ndarray, rating: np.ndarray, *, counts: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per rating row: the mean rating of the same prompt by the *other* rows (NaN ratings and rows
    with `counts` False are left out of every mean), and how many others that mean is over.

    A prompt nobody else rated has no consensus (NaN, 0 others).
    """
    prompt = np.asarray(prompt)
    rating = np.asarray(rating, dtype=float)
    counts = np.ones(len(rating), dtype=bool) if counts is None else np.asarray(counts, dtype=bool)
    use = counts & ~np.isnan(rating)
    _, item = np.unique(prompt, return_inverse=True)
    own = np.where(use, rating, 0.0)
    total = np.bincount(item, weights=own)[item]
    others = np.bincount(item, weights=use)[item] - use
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(others > 0, (total - own) / np.maximum(others, 1), np.nan)
    return mean, others.astype(np.int64)
