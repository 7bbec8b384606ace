"""Named census mixes shipped with the product (`benchmark/datasets/census/*.json`, each with its
source and mapping; see PROVENANCE.md there).

A file holds the published figures (`published`: {column: {row: percent}}) and how the export's
levels map onto the table's rows (`mapping`: {column: {level: [rows]}}); `census_read` turns them into
a mix ({column: {level: share}}): a level's share is the sum of its rows over the sum of every mapped
row of that column."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["CENSUS_DIR", "census_mix", "census_names", "census_read"]

CENSUS_DIR = Path(__file__).resolve().parents[2] / "datasets" / "census"


def census_names() -> list[str]:
    return sorted(p.stem for p in CENSUS_DIR.glob("*.json"))


def census_mix(document: dict) -> dict:
    mix = {}
    for column, levels in document["mapping"].items():
        published = document["published"][column]
        sums = {level: sum(float(published[row]) for row in rows) for level, rows in levels.items()}
        total = sum(sums.values())
        mix[column] = {level: value / total for level, value in sums.items()}
    return mix


def census_read(name: str) -> dict:
    """{name, title, source, notes, mix} of a shipped census; KeyError for an unknown name."""
    if name not in census_names():
        raise KeyError(f"unknown census {name!r}; shipped: {', '.join(census_names())}")
    document = json.loads((CENSUS_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return {
        "name": document["name"],
        "title": document["title"],
        "source": document["source"],
        "notes": document.get("notes", []),
        "mix": census_mix(document),
    }
