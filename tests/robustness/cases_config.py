"""Bad configs: `from_dict(UNetConfig, ...)`, `load_yaml`, overrides."""

from __future__ import annotations

from pathlib import Path

from catalogue_kit import ApiCase, Steps, _nothing

# ----------------------------------------------------------------------------- configs


def _unet_config(data: object) -> Steps:
    def call(tmp: Path) -> object:
        from unetkit.configtools import from_dict
        from unetkit.model import UNetConfig

        return from_dict(UNetConfig, data)  # type: ignore[arg-type]

    return Steps(_nothing, call)


def _yaml(text: str | bytes | None, name: str = "config.yaml") -> Steps:
    def build(tmp: Path) -> None:
        path = tmp / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        elif text is not None:
            path.write_text(text)

    def call(tmp: Path) -> object:
        from unetkit.configtools import load_yaml

        return load_yaml(str(tmp / name))

    return Steps(build, call)


def _override(text: str) -> Steps:
    def call(tmp: Path) -> object:
        from unetkit.configtools import apply_overrides

        return apply_overrides({"model": {"depth": 4}}, [text])

    return Steps(_nothing, call)


CASES: list[ApiCase] = [
    ApiCase(
        "config",
        "unknown key (typo)",
        _unet_config({"paddng": "valid"}),
        ("paddng: unknown setting (did you mean 'padding'?)",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "wrong type (string for an integer)",
        _unet_config({"in_channels": "three"}),
        ("in_channels: expected an integer, got 'three'",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "wrong type (a number for a list)",
        _unet_config({"widths": 32}),
        ("widths: expected a list of integer",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "wrong type inside a list",
        _unet_config({"widths": [8, "x"]}),
        ("widths[1]: expected an integer",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "choice not allowed",
        _unet_config({"padding": "vaild"}),
        ("padding: 'vaild' is not one of", "did you mean 'valid'?"),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "out of range (dropout 1.5)",
        _unet_config({"dropout": 1.5}),
        ("dropout: expected a probability in [0, 1)",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "out of range (even kernel_size)",
        _unet_config({"kernel_size": 4}),
        ("kernel_size: expected an odd positive integer",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "out of range (spatial_dims 4)",
        _unet_config({"spatial_dims": 4}),
        ("spatial_dims: expected 1, 2 or 3",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "out of range (in_channels 0)",
        _unet_config({"in_channels": 0}),
        ("in_channels: expected a positive integer",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "nested value out of range (norm.groups 0)",
        _unet_config({"norm": {"type": "group", "groups": 0}}),
        ("norm.groups: expected a positive integer",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "nested unknown option (norm.foo)",
        _unet_config({"norm": {"type": "batch", "foo": 1}}),
        ("norm.foo",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "not a mapping",
        _unet_config([1, 2]),
        ("expected a mapping of settings",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "YAML syntax error",
        _yaml("model: [1, 2\n"),
        ("config.yaml: not valid YAML",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "YAML top level is a list",
        _yaml("- 1\n- 2\n"),
        ("config.yaml: expected a mapping of settings at the top level",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "YAML file that is not UTF-8 text",
        _yaml(b"model: \xff\xfe\n"),
        ("config.yaml", "UTF-8"),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "YAML file missing",
        _yaml(None, "missing.yaml"),
        ("missing.yaml", "no such file"),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "override without '='",
        _override("model.depth"),
        ("override 'model.depth': expected key=value",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "override into a value",
        _override("model.depth.x=1"),
        ("'depth' is a value, not a section",),
        raises=ValueError,
    ),
]
