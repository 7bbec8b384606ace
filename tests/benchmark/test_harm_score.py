import json
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

EXAMPLE = Path(settings.BASE_DIR) / "benchmark" / "datasets" / "safetyanalyst" / "example_tree_fig2.json"


def run(*args) -> list[dict]:
    out = StringIO()
    call_command("harm_score", *args, "--json", stdout=out)
    return json.loads(out.getvalue())


def test_reference_weights_reproduce_the_published_example():
    [result] = run(str(EXAMPLE))
    assert result["H"] == pytest.approx(0.51704094, abs=1e-7)
    assert result["p_harmful"] == pytest.approx(1 / (1 + np.exp(-0.51704094)), abs=1e-7)


def test_a_list_is_scored_in_order_and_weights_can_be_swapped(tmp_path):
    example = json.loads(EXAMPLE.read_text())
    benign = {"harm_benefit_tree": []}
    path = tmp_path / "trees.json"
    path.write_text(json.dumps([example, benign, example]))
    results = run(str(path))
    assert [r["H"] for r in results] == pytest.approx([0.51704094, 0.0, 0.51704094], abs=1e-7)
    weights = np.load(
        Path(settings.BASE_DIR) / "benchmark/datasets/safetyanalyst/saved_params/SafetyReporter_both_wildjailbreak.npy"
    )
    weights[3] = weights[3] / 2  # halve the Hate/Toxicity weight: the example's H halves with it
    np.save(tmp_path / "w.npy", weights)
    [half] = run(str(EXAMPLE), "--weights", str(tmp_path / "w.npy"))
    assert half["H"] == pytest.approx(0.51704094 / 2, abs=1e-7)


@pytest.mark.parametrize(
    "content,message",
    [
        ("{not json", "not valid JSON"),
        ('{"tree": []}', "item 0 has no 'harm_benefit_tree'"),
        ('{"harm_benefit_tree": [{"stakeholder": 5}]}', r"trees\[0\]\[0\]\.stakeholder: expected str, got int"),
    ],
)
def test_bad_files_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(CommandError, match=message):
        run(str(path))


def test_bad_weights_are_refused(tmp_path):
    np.save(tmp_path / "short.npy", np.ones(5))
    with pytest.raises(CommandError, match="cannot use these weights"):
        run(str(EXAMPLE), "--weights", str(tmp_path / "short.npy"))
    with pytest.raises(CommandError, match="no such file"):
        run(str(tmp_path / "missing.json"))
