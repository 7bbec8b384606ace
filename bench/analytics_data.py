"""Synthetic studies for the analytics benchmarks: the release's 150 prompts rated by many simulated people.

`synthetic_long(n_annotators, seed)` returns the long ratings frame in the shape of
`benchmark.science.release.Release.long` (and of `annotation.selectors.ratings_frame`):
`annotator`, `prompt`, `rating` (integer 0–100, NaN when Unsure), `unsure`, `trial`, the ten
demographic columns (strings drawn from the release's answers with their frequencies), `Factor_1..3`,
`harm_level` and the 62 prompt features of the release.

Ratings come from a plausible model, on the 0–100 scale before rounding and clipping:
prompt effect (harm level + a few features + prompt noise) + annotator offset (traits + person noise)
+ trait × feature interactions + residual noise; about 2% of answers are "Unsure".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.science.release import DEMOGRAPHIC_COLUMNS, FACTOR_COLUMNS, RELEASE_DIR, release_read

RELEASE = RELEASE_DIR
UNSURE_RATE = 0.02


def _z(values: np.ndarray) -> np.ndarray:
    sd = values.std()
    return (values - values.mean()) / sd if sd > 0 else values * 0.0


def synthetic_long(n_annotators: int, seed: int = 0, *, release_dir: Path | str = RELEASE) -> pd.DataFrame:
    """A study of `n_annotators` simulated people × the release's 150 prompts, seeded (1.5M rows at 10,000)."""
    rng = np.random.default_rng(seed)
    release = release_read(release_dir)
    order = np.argsort(release.prompts["external_id"].astype(int).to_numpy(), kind="stable")
    prompts = release.prompts.iloc[order]  # by Question_Index
    people = release.demographics.replace("", np.nan)  # an empty answer is missing
    for k, column in enumerate(FACTOR_COLUMNS):
        people[column] = release.factors[:, k]
    features = list(release.feature_columns)
    demographics = list(DEMOGRAPHIC_COLUMNS)
    n_p = len(prompts)
    n_a = int(n_annotators)

    # Prompts: harm level carries most of the signal, a few features add to it, the rest is noise.
    harm = prompts["harm_level"].to_numpy(dtype=float)
    feat = prompts[features].to_numpy(dtype=float)
    feat_z = np.apply_along_axis(_z, 0, feat)
    weights = np.zeros(len(features))
    for name, w in (
        ("action_Child_Harm", 6.0),
        ("action_Self_harm", 5.0),
        ("effect_Psychological", -4.0),
        ("action_Violence_Extremism", 4.0),
        ("value_topic_12", -3.0),
    ):
        if name in features:
            weights[features.index(name)] = w
    prompt_effect = 50.0 + 18.0 * _z(harm) + feat_z @ weights + rng.normal(0.0, 9.0, n_p)

    # Annotators: each demographic answer drawn from the release's answers, independently.
    demo = {c: people[c].to_numpy(dtype=object)[rng.integers(0, len(people), n_a)] for c in demographics}
    factors = {
        f"Factor_{k}": rng.normal(
            people[f"Factor_{k}"].astype(float).mean(), people[f"Factor_{k}"].astype(float).std(), n_a
        )
        for k in (1, 2, 3)
    }
    tox = (
        pd.Series(demo["Toxicity_Experience"])
        .str.strip()
        .map(
            {
                "Not a problem": 0,
                "Rarely a problem": 1,
                "Sometimes a problem": 2,
                "Often a problem": 3,
                "Very often a problem": 4,
            }
        )
        .fillna(2)
        .to_numpy(dtype=float)
    )
    edu = (
        pd.Series(demo["Education"])
        .str.lower()
        .map(
            lambda v: (
                0
                if v.startswith("high")
                else 1
                if v.startswith("some")
                else 2
                if v.startswith("assoc")
                else 3
                if v.startswith("bach")
                else 4
            )
        )
        .to_numpy(dtype=float)
    )
    f1, f2 = _z(factors["Factor_1"]), _z(factors["Factor_2"])
    offset = 3.0 * _z(tox) - 3.0 * _z(edu) + 2.0 * f2 + rng.normal(0.0, 12.0, n_a)

    # Interactions: people high on Factor_1 see sexual content as more harmful, child harm as less.
    inter = np.zeros((n_a, n_p))
    for name, w in (("action_Sexual_Content", 2.0), ("action_Child_Harm", -1.5)):
        if name in features:
            inter += w * f1[:, None] * feat_z[:, features.index(name)][None, :]

    ratings = prompt_effect[None, :] + offset[:, None] + inter + rng.normal(0.0, 22.0, (n_a, n_p))
    ratings = np.clip(np.rint(ratings), 0.0, 100.0)
    unsure = rng.random((n_a, n_p)) < UNSURE_RATE
    ratings[unsure] = np.nan
    trials = np.argsort(rng.random((n_a, n_p)), axis=1) + 1

    row_a = np.repeat(np.arange(n_a), n_p)
    row_p = np.tile(np.arange(n_p), n_a)
    ids = np.array([f"S{i + 1:06d}" for i in range(n_a)], dtype=object)
    qids = prompts["external_id"].to_numpy(dtype=object)
    columns: dict[str, object] = {
        "annotator": pd.array(ids[row_a], dtype="str"),
        "prompt": pd.array(qids[row_p], dtype="str"),
        "rating": ratings.reshape(-1),
        "unsure": unsure.reshape(-1),
        "trial": trials.reshape(-1).astype(np.int64),
    }
    for c in demographics:
        columns[c] = pd.array(demo[c][row_a], dtype="str")
    for c, values in factors.items():
        columns[c] = values[row_a]
    columns["harm_level"] = harm[row_p]
    # The 62 feature columns as one block made in place (features × rows), the other columns inserted
    # before it: a frame built from a dict of columns would copy them all once more (a second 0.7 GB at
    # 1.5M rows) to consolidate them.
    frame = pd.DataFrame(feat.T[:, row_p].T, columns=features, copy=False)
    for position, (name, values) in enumerate(columns.items()):
        frame.insert(position, name, values)
    return frame


def parts_of_long(long: pd.DataFrame):
    """A long frame (`synthetic_long`, or the release's) as the product reads a study from the database
    (`annotation.selectors.ratings_parts`): rating rows of ids, an annotators frame and a prompts frame as
    `rating_rows`, `annotators_frame` and `prompts_frame` return them. The frames the analyses get are then
    joined by the product's own code (`benchmark.analysis.descriptive_frame`, `mixed_frame`), so that the
    benchmark times and weighs what the analysis job builds. Needs Django set up (the selectors import models).
    """
    from annotation.selectors import ratings_parts_of

    a_codes, pseudonyms = pd.factorize(long["annotator"], sort=False)
    p_codes, external_ids = pd.factorize(long["prompt"], sort=False)
    first_a = np.unique(a_codes, return_index=True)[1]
    first_p = np.unique(p_codes, return_index=True)[1]
    n = len(long)
    rows = pd.DataFrame(
        {
            "annotator_id": a_codes.astype(np.int64) + 1,
            "prompt_id": p_codes.astype(np.int64) + 1,
            "rating": long["rating"].to_numpy(dtype=float),
            "unsure": long["unsure"].to_numpy(dtype=bool),
            "trial": long["trial"].to_numpy(dtype=np.int64),
            "rt_ms": pd.arrays.IntegerArray(np.full(n, 3000, dtype=np.int64), np.zeros(n, dtype=bool)),
            "server_rt_ms": pd.arrays.IntegerArray(np.full(n, 3100, dtype=np.int64), np.zeros(n, dtype=bool)),
            "revised": np.zeros(n, dtype=bool),
        }
    )
    demographics = [c for c in DEMOGRAPHIC_COLUMNS if c in long.columns]
    factors = [c for c in FACTOR_COLUMNS if c in long.columns]
    # As annotators_frame builds it: one Python value per annotator and column (None when unanswered).
    people_data: dict[str, object] = {
        "pseudonym": [str(p) for p in pseudonyms],
        "source_id": [str(p) for p in pseudonyms],
        "annotator_status": ["completed"] * len(pseudonyms),
        "exclusion_reason": [""] * len(pseudonyms),
    }
    for c in demographics:
        people_data[c] = [None if pd.isna(v) else str(v) for v in long[c].to_numpy(dtype=object)[first_a]]
    for c in factors:
        people_data[c] = long[c].to_numpy(dtype=float)[first_a]
    people = pd.DataFrame(people_data, index=pd.Index(np.arange(1, len(pseudonyms) + 1), name="annotator_id"))
    people.attrs["demographic_columns"] = demographics
    people.attrs["trait_columns"] = factors
    taken = {"annotator", "prompt", "rating", "unsure", "trial", *demographics, *factors}
    items = pd.DataFrame(
        {"external_id": [str(q) for q in external_ids], "text": [""] * len(external_ids)},
        index=pd.Index(np.arange(1, len(external_ids) + 1), name="prompt_id"),
    )
    for c in long.columns:
        if c not in taken:
            items[c] = long[c].to_numpy(dtype=float)[first_p]
    return ratings_parts_of(rows, people, items)
