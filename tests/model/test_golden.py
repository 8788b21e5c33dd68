"""Golden outputs and determinism: a fixed seed's output of a few small models is stored in
``golden.json`` beside this file, so any numeric change of the network (init, a block, the
walk, padding) is seen; the same seed always gives identical weights and outputs.

To record new golden values after an intended change: ``python -m tests.model.test_golden``
(and say in the commit why the numbers moved).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tests import model_cases
from tests.model_cases import Case

GOLDEN = Path(__file__).with_name("golden.json")
MODELS = {
    "2d-default": Case(2, {}),
    "1d-residual-interp": Case(1, {"block": "residual", "up": "interp", "act": "leaky_relu"}),
    "3d-instance-add": Case(3, {"norm": "instance", "fusion": "add"}),
    "2d-resenc-stages": Case(
        2, {"block": "residual", "down": "strided", "encoder_blocks": (1, 2, 3)}
    ),
    "2d-valid-concat1x1": Case(2, {"padding": "valid", "fusion": "concat_1x1"}),
}


def fingerprint(case: Case) -> dict[str, Any]:
    """Summary numbers of the eval-mode output of ``case`` built from seed 0 on input seed 1."""
    model = model_cases.make_model(case, seed=0).eval()
    x = model_cases.make_input(model, seed=1)
    with torch.no_grad():
        y = model(x).double()
    keys = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in model.state_dict().items())
    return {
        "shape": list(y.shape),
        "sum": float(y.sum()),
        "abs_sum": float(y.abs().sum()),
        "square_sum": float(y.square().sum()),
        "first": [float(v) for v in y.flatten()[:6]],
        "parameters": sum(p.numel() for p in model.parameters()),
        "state_dict_sha256": hashlib.sha256(keys.encode()).hexdigest(),
    }


@pytest.mark.parametrize("name", sorted(MODELS))
def test_output_of_a_fixed_seed_matches_the_stored_golden_values(name: str) -> None:
    want = json.loads(GOLDEN.read_text())[name]
    got = fingerprint(MODELS[name])
    assert got["shape"] == want["shape"]
    assert got["parameters"] == want["parameters"]
    assert got["state_dict_sha256"] == want["state_dict_sha256"], "state-dict keys changed"
    for key in ("sum", "abs_sum", "square_sum", "first"):
        torch.testing.assert_close(
            torch.tensor(got[key]), torch.tensor(want[key]), rtol=1e-4, atol=1e-5, msg=key
        )


@pytest.mark.parametrize("case", model_cases.cases(dims=(1, 2, 3), padding="same")[::5])
def test_same_seed_gives_identical_weights_and_outputs(case: Case) -> None:
    a = model_cases.make_model(case, seed=3).eval()
    b = model_cases.make_model(case, seed=3).eval()
    for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(ta, tb), name
    x = model_cases.make_input(a, seed=4)
    with torch.no_grad():
        ya, yb, again = a(x), b(x), a(x)
    assert torch.equal(ya, yb) and torch.equal(ya, again)
    other = model_cases.make_model(case, seed=5).eval()
    with torch.no_grad():
        assert not torch.equal(other(x), ya), "another seed should give another model"


if __name__ == "__main__":
    table = {name: fingerprint(case) for name, case in sorted(MODELS.items())}
    GOLDEN.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {GOLDEN}")
