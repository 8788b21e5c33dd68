"""Bad configs through ``from_dict``, ``load_yaml`` and overrides: the key is named."""

from __future__ import annotations

from pathlib import Path

import pytest
from catalogue import CONFIG_CASES, DOC, ApiCase, check_api_case, doc_row

from unetkit.configtools import ConfigValueError, from_dict, load_yaml
from unetkit.model import UNet, UNetConfig


@pytest.mark.parametrize("case", CONFIG_CASES, ids=lambda c: c.name)
def test_bad_config_names_the_key(case: ApiCase, tmp_path: Path) -> None:
    outcome = check_api_case(case, tmp_path)
    row = doc_row(case.name, outcome.result, outcome.message, tmp_path)
    assert row in DOC.read_text(encoding="utf-8"), (
        f"docs/robustness.md is stale for {case.name!r}; run tests/robustness/make_doc.py"
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"norm": {"type": "group", "groups": 4, "eps": "tiny"}}, "norm.eps: expected a finite"),
        ({"norm": {"type": "batch", "affine": 1}}, "norm.affine: expected true or false"),
        ({"act": {"type": "gelu", "approximate": "fast"}}, "act.approximate: expected 'none'"),
        ({"act": {"type": "relu", "negative_slope": 0.1}}, "act.negative_slope: not an option"),
    ],
)
def test_layer_options_are_checked_before_building(spec: dict, message: str) -> None:
    with pytest.raises(ConfigValueError, match=message):
        from_dict(UNetConfig, {"widths": [4, 8], **spec})


def test_valid_layer_options_still_build() -> None:
    config = from_dict(
        UNetConfig,
        {
            "widths": [4, 8],
            "norm": {"type": "group", "groups": 2, "eps": 1e-3, "affine": False},
            "act": {"type": "leaky_relu", "negative_slope": 0.2, "inplace": True},
        },
    )
    model = UNet(config)
    assert model.config.norm == {"type": "group", "groups": 2, "eps": 1e-3, "affine": False}


def test_yaml_aliases_are_refused(tmp_path: Path) -> None:
    # aliases can build exponentially large data from a few lines ("billion laughs")
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigValueError, match=r"laughs\.yaml: not valid YAML .*line 2"):
        load_yaml(str(path))


def test_deeply_nested_yaml_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigValueError, match=r"deep\.yaml: not valid YAML"):
        load_yaml(str(path))


def test_huge_values_are_shortened_in_messages() -> None:
    with pytest.raises(ConfigValueError) as info:
        from_dict(UNetConfig, {"in_channels": "x" * 100_000})
    assert len(str(info.value)) < 200
    with pytest.raises(ConfigValueError, match=r"dropout: .* too large for a number"):
        from_dict(UNetConfig, {"dropout": 10**400})
