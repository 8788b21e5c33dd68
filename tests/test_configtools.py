"""Config dataclasses from plain data: unknown keys, wrong types, choices, overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from unetkit.configtools import (
    ConfigValueError,
    apply_overrides,
    dump_yaml,
    from_dict,
    load_yaml,
    to_dict,
)


@dataclass(frozen=True)
class Inner:
    lr: float = 1e-3
    mode: Literal["a", "b"] = "a"

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr: expected a positive number, got {self.lr}")


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    sizes: tuple[int, ...] = (1, 2)
    inner: Inner = field(default_factory=Inner)
    flag: bool = False
    limit: int | None = None


def test_round_trip_through_yaml(tmp_path) -> None:
    obj = Outer(name="y", sizes=(3, 4, 5), inner=Inner(lr=0.5, mode="b"), limit=3)
    path = tmp_path / "c.yaml"
    path.write_text(dump_yaml(obj))
    assert from_dict(Outer, load_yaml(str(path))) == obj
    assert to_dict(obj)["sizes"] == [3, 4, 5]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"nmae": "z"}, "nmae: unknown setting (did you mean 'name'?)"),
        ({"inner": {"lr": "fast"}}, "inner.lr: expected a number"),
        ({"inner": {"mode": "c"}}, "inner.mode: 'c' is not one of 'a', 'b'"),
        ({"inner": {"lr": -1}}, "inner.lr: expected a positive number"),
        ({"sizes": [1, "two"]}, "sizes[1]: expected an integer"),
        ({"flag": "yes"}, "flag: expected true or false"),
        ({"inner": 3}, "inner: expected a mapping"),
        ({"limit": 2.5}, "limit: expected integer or null"),
    ],
)
def test_errors_name_the_dotted_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigValueError) as info:
        from_dict(Outer, data)
    assert message in str(info.value)


def test_overrides_are_typed_by_yaml() -> None:
    data = apply_overrides({"inner": {"lr": 0.1}}, ["inner.lr=2e-3", "sizes=[8, 9]", "flag=true"])
    obj = from_dict(Outer, data)
    assert obj.inner.lr == pytest.approx(2e-3)
    assert obj.sizes == (8, 9) and obj.flag is True
    with pytest.raises(ConfigValueError, match="key=value"):
        apply_overrides({}, ["novalue"])
    with pytest.raises(ConfigValueError, match="is a value, not a section"):
        apply_overrides({"name": "x"}, ["name.sub=1"])
