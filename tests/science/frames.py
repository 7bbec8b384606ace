"""Tiny long frames built by hand for the science tests."""

import numpy as np
import pandas as pd


def long_frame(matrix, *, prompts=None, annotators=None, unsure=None, **annotator_columns) -> pd.DataFrame:
    """A long frame from an annotators × prompts list of lists (NaN = absent; `unsure` marks Unsure cells).

    Extra keyword arguments are annotator-level columns given as one value per annotator.
    """
    values = np.asarray(matrix, dtype=float)
    n_a, n_p = values.shape
    annotators = annotators or [f"A{i}" for i in range(n_a)]
    prompts = prompts or [f"q{j}" for j in range(n_p)]
    unsure = np.zeros_like(values, dtype=bool) if unsure is None else np.asarray(unsure, dtype=bool)
    rows = []
    for i in range(n_a):
        for j in range(n_p):
            if np.isnan(values[i, j]) and not unsure[i, j]:
                continue  # never shown
            row = {
                "annotator": annotators[i],
                "prompt": prompts[j],
                "rating": np.nan if unsure[i, j] else values[i, j],
                "unsure": bool(unsure[i, j]),
                "trial": j + 1,
            }
            for name, per_annotator in annotator_columns.items():
                row[name] = per_annotator[i]
            rows.append(row)
    return pd.DataFrame(rows)
