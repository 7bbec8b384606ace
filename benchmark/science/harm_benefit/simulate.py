"""Random schema-valid trees for simulations and tests."""

from __future__ import annotations

import numpy as np

from .schema import EXTENT_LEVELS, LIKELIHOOD_LEVELS, load_taxonomy


def random_trees(
    n: int,
    *,
    seed: int | None = None,
    max_stakeholders: int = 3,
    max_actions: int = 2,
    max_effects: int = 3,
    p_benefit: float = 0.5,
    p_unknown: float = 0.05,
) -> list[list[dict]]:
    """Random schema-valid trees built from the taxonomy (for simulations and tests)."""
    rng = np.random.default_rng(seed)
    taxonomy = load_taxonomy()
    harm_actions = [
        (top, mid, leaf)
        for top, mids in taxonomy["harmful_action_taxonomy"].items()
        for mid, leaves in mids.items()
        for leaf in leaves
    ]
    harm_effects = [leaf for leaves in taxonomy["harmful_effect_taxonomy"].values() for leaf in leaves]
    benefit_effects = [leaf for leaves in taxonomy["beneficial_effect_taxonomy"].values() for leaf in leaves]

    def effects(names):
        return [
            {
                "effect": str(rng.choice(names)),
                "immediacy": bool(rng.random() < 0.5),
                "extent": str(rng.choice(EXTENT_LEVELS)).capitalize(),
                "likelihood": str(rng.choice(LIKELIHOOD_LEVELS)).capitalize(),
            }
            for _ in range(rng.integers(1, max_effects + 1))
        ]

    trees = []
    for _ in range(n):
        tree = []
        for s in range(rng.integers(1, max_stakeholders + 1)):
            actions = []
            for _ in range(rng.integers(1, max_actions + 1)):
                if rng.random() < p_unknown:
                    text = "Unclassified harmful action"
                else:
                    top, mid, leaf = harm_actions[rng.integers(len(harm_actions))]
                    text = f"##{top}## #{mid}# {leaf.split('. ', 1)[-1]}"
                actions.append({"action": text, "effects": effects(harm_effects)})
            tree.append({"stakeholder": f"Stakeholder {s}", "harms": actions})
            if rng.random() < p_benefit:
                tree.append(
                    {
                        "stakeholder": f"Stakeholder {s}",
                        "benefits": [
                            {"action": "The response could inform the user.", "effects": effects(benefit_effects)}
                        ],
                    }
                )
        trees.append(tree)
    return trees
