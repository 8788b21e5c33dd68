"""The ``--instances`` options of ``unetkit predict`` (one label per object) and their run."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from unetkit.infer.predictor import PredictOptions
from unetkit.instances.postprocess import InstanceParams
from unetkit.instances.spec import InstanceSpec
from unetkit.model import UNet

_PARAMS = (
    ("--seed-threshold", float, "interior probability a seed pixel needs"),
    ("--foreground-threshold", float, "interior + border probability an object pixel needs"),
    ("--min-seed-size", int, "seeds with fewer pixels are dropped"),
    ("--min-size", int, "objects with fewer pixels are removed"),
    ("--split-distance", int, "cut seeds at distance-map necks, maxima this far apart (0: off)"),
)


def add_instance_arguments(p: argparse.ArgumentParser) -> None:
    """``--instances``, ``--instances-fallback`` and the post-processing overrides."""
    g = p.add_argument_group(
        "instances",
        "one label per object (touching objects separated), from a model trained with an "
        "instance target (a dataset with instances/); outputs <stem>_instances.png|.tif and "
        "<stem>_objects.csv",
    )
    g.add_argument(
        "--instances", action="store_true", help="write instance label images and object tables"
    )
    g.add_argument(
        "--instances-fallback",
        choices=("none", "components"),
        default="none",
        help="components: accept a model trained without an instance target and label the "
        "connected components of its class map (touching objects stay merged); default none "
        "(such a model is refused)",
    )
    for flag, kind, text in _PARAMS:
        g.add_argument(
            flag, type=kind, metavar="V", help=f"{text} (default: the value tuned in training)"
        )


def params_from_args(args: argparse.Namespace, metadata: dict[str, Any]) -> InstanceParams | None:
    """The model's tuned parameters with the command-line overrides, or ``None`` if none given.

    Raises:
        ValueError: an override out of range (the message names the option).
    """
    given = {
        flag[2:].replace("-", "_"): getattr(args, flag[2:].replace("-", "_"))
        for flag, _, _ in _PARAMS
        if getattr(args, flag[2:].replace("-", "_")) is not None
    }
    if not given:
        return None
    if not args.instances:
        raise ValueError(f"--{next(iter(given)).replace('_', '-')}: only with --instances")
    spec = InstanceSpec.from_metadata(metadata, "the model")
    base = spec.params if spec is not None else InstanceParams()
    try:
        return replace(base, **given)
    except ValueError as exc:
        name = str(exc).split(" must")[0].removeprefix("InstanceParams.")
        raise ValueError(f"--{name.replace('_', '-')}: {exc}") from None


def run_instances(
    args: argparse.Namespace, model: UNet, metadata: dict[str, Any], options: PredictOptions
) -> int:
    """``unetkit predict --instances``: write the outputs, print one line per input and a sum."""
    from unetkit.infer.instance_files import InstanceFileResult, predict_instance_files

    params = params_from_args(args, metadata)

    def report(result: InstanceFileResult) -> None:
        if result.status == "skipped":
            print(f"skipped {result.input} (outputs exist; --overwrite to redo)")
        else:
            print(f"{result.input}: {result.objects} objects -> {result.outputs.labels.name}")

    results = predict_instance_files(
        model,
        metadata,
        args.input,
        args.out,
        options=options,
        params=params,
        fallback=args.instances_fallback,
        overwrite=args.overwrite,
        source=str(args.model),
        on_result=report,
        spacing=getattr(args, "spacing", None),
    )
    done = sum(r.status == "predicted" for r in results)
    print(f"predicted instances of {done}, skipped {len(results) - done}; outputs in {args.out}")
    return 0
