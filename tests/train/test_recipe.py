"""The automatic recipe: choices follow the data and the budget; explicit settings win."""

from __future__ import annotations

import numpy as np

from unetkit.config import RunConfig
from unetkit.data.sample import Sample
from unetkit.train.recipe import apply_recipe, summarize_data


def _samples(shape: tuple[int, int], channels: int, masks: list[np.ndarray]) -> list[Sample]:
    return [
        Sample(np.zeros((channels, *shape), dtype=np.float32), m.astype(np.int64)) for m in masks
    ]


def test_street_scene_layout_is_detected_as_oriented() -> None:
    sky_top = np.zeros((60, 80), dtype=np.int64)
    sky_top[:20] = 1  # "sky" only at the top, "road" at the bottom
    sky_top[40:] = 2
    summary = summarize_data(_samples((60, 80), 3, [sky_top] * 3), 3)
    assert summary.oriented and summary.in_channels == 3
    config, chosen = apply_recipe(RunConfig(), summary)
    assert chosen["data.flips"] == "last_axis"
    assert config.model.in_channels == 3 and config.model.out_channels == 3


def test_microscopy_like_labels_are_not_oriented() -> None:
    rng = np.random.default_rng(0)
    masks = [(rng.random((64, 64)) < 0.3).astype(np.int64) for _ in range(4)]
    summary = summarize_data(_samples((64, 64), 1, masks), 2)
    assert not summary.oriented
    assert apply_recipe(RunConfig(), summary)[1]["data.flips"] == "all"


def test_patch_and_width_follow_budget_and_image_size() -> None:
    masks = [np.zeros((512, 512), dtype=np.int64)] * 2
    summary = summarize_data(_samples((512, 512), 1, masks), 2)
    short = apply_recipe(RunConfig(train=RunConfig().train.__class__(max_minutes=3)), summary)[0]
    long = apply_recipe(RunConfig(train=RunConfig().train.__class__(max_minutes=120)), summary)[0]
    assert short.data.patch_size == (128, 128) and long.data.patch_size == (256, 256)
    assert short.model.widths[0] < long.model.widths[0]
    small = summarize_data(_samples((40, 56), 1, [np.zeros((40, 56), np.int64)] * 2), 2)
    patch = apply_recipe(RunConfig(), small)[0].data.patch_size
    assert all(p <= s and p % 8 == 0 for p, s in zip(patch, (40, 56), strict=True))


def test_explicit_settings_are_kept() -> None:
    summary = summarize_data(_samples((64, 64), 1, [np.zeros((64, 64), np.int64)] * 2), 2)
    base = RunConfig()
    explicit = {"train.lr", "model.widths", "data.augment.p_elastic"}
    config, chosen = apply_recipe(base, summary, explicit)
    assert config.train.lr == base.train.lr and config.model.widths == base.model.widths
    assert "data.augment" not in chosen and "train.lr" not in chosen


def test_class_aware_sampling_draws_among_present_foreground_classes() -> None:
    from unetkit.config import DataConfig
    from unetkit.tasks.segment import sampled_classes

    rare = np.zeros((64, 64), dtype=np.int64)
    rare[:32] = 1
    rare[40:42, 40:42] = 2
    summary = summarize_data(_samples((64, 64), 1, [rare] * 2), 3)
    # the recipe chooses it with two foreground classes or more, not for binary masks
    assert apply_recipe(RunConfig(), summary)[0].data.sampling == "class_aware"
    binary = summarize_data(_samples((64, 64), 1, [np.minimum(rare, 1)] * 2), 2)
    assert apply_recipe(RunConfig(), binary)[0].data.sampling == "foreground"
    # an instance target's interior and border are not classes to balance
    target = summarize_data(_samples((64, 64), 1, [rare] * 2), 3, instance_target=True)
    assert apply_recipe(RunConfig(), target)[0].data.sampling == "foreground"
    freqs = np.array([0.05, 0.5, 0.0, 0.4, 0.05])
    config = RunConfig(data=DataConfig(sampling="class_aware", ignore_index=4))
    assert sampled_classes(config, freqs) == (1, 3)  # present, not background, not ignored
    assert sampled_classes(RunConfig(), freqs) is None


def test_cross_entropy_is_weighted_only_for_strongly_imbalanced_own_classes() -> None:
    import dataclasses

    from unetkit.train.prepare import IMBALANCE_FOR_WEIGHTS, foreground_imbalance

    mask = np.zeros((64, 64), dtype=np.int64)
    mask[:32] = 1
    mask[40:42, 40:42] = 2  # 4 pixels of class 2 against 2048 of class 1: 512x
    summary = summarize_data(_samples((64, 64), 1, [mask] * 2), 3)
    assert foreground_imbalance(summary.class_frequencies) == 512.0
    assert apply_recipe(RunConfig(), summary)[0].train.class_weighting == "sqrt"
    # under the threshold (as Drosophila, 27x): class-aware sampling alone
    mild = dataclasses.replace(summary, class_frequencies=(0.5, 0.4, 0.4 / IMBALANCE_FOR_WEIGHTS))
    assert apply_recipe(RunConfig(), mild)[0].train.class_weighting == "none"
    # the background (class 0) and absent classes do not count; one class is not imbalanced
    assert foreground_imbalance((0.99, 0.005, 0.0, 0.005)) == 1.0
    assert foreground_imbalance((0.9, 0.1)) == 1.0
    # an instance target's interior and border, and an explicit setting, are left alone
    target = dataclasses.replace(summary, instance_target=True)
    assert apply_recipe(RunConfig(), target)[0].train.class_weighting == "none"
    explicit = {"train.class_weighting"}
    assert apply_recipe(RunConfig(), summary, explicit)[0].train.class_weighting == "none"


def test_the_recipe_lets_the_measured_step_choose_the_precision() -> None:
    """bf16 only where this run's own step is measured faster (the trainer times both)."""
    summary = summarize_data(_samples((64, 64), 1, [np.eye(64, dtype=np.int64)] * 2), 2)
    assert apply_recipe(RunConfig(), summary)[0].train.precision == "auto"
    kept = apply_recipe(RunConfig(), summary, {"train.precision"})[0]
    assert kept.train.precision == "fp32"  # an explicit choice (here the default) stays


def _polar(bright: int, dark: int, *, instances: bool = True) -> list[Sample]:
    """Images with one square object, brighter than the ground in ``bright`` images and darker
    in ``dark`` ones (plus noise)."""
    rng = np.random.default_rng(0)
    out = []
    for sign in [1.0] * bright + [-1.0] * dark:
        mask = np.zeros((32, 32), dtype=np.int64)
        mask[8:20, 10:22] = 1
        image = rng.normal(0, 0.2, (3, 32, 32)) + sign * mask
        out.append(Sample(image.astype(np.float32), mask, mask * 7 if instances else None))
    return out


def test_mixed_polarity_is_detected_and_adds_the_inversion() -> None:
    from unetkit.train.recipe import polarity_counts

    mixed = _polar(8, 3)
    assert polarity_counts(mixed, 2) == (8, 3)
    summary = summarize_data(mixed, 2)
    assert summary.mixed_polarity
    assert apply_recipe(RunConfig(), summary)[0].data.augment.p_invert == 0.5
    # the masks alone decide the objects where a dataset has no instance ids
    assert polarity_counts(_polar(2, 2, instances=False), 2) == (2, 2)


def test_one_polarity_or_too_few_of_the_other_keeps_the_plain_augmentation() -> None:
    for samples in (_polar(10, 0), _polar(0, 6), _polar(20, 1)):
        summary = summarize_data(samples, 2)
        assert not summary.mixed_polarity
        assert apply_recipe(RunConfig(), summary)[0].data.augment.p_invert == 0.0


def test_several_object_classes_have_no_polarity() -> None:
    from unetkit.train.recipe import polarity_counts

    samples = [Sample(s.image, s.mask * 2, None) for s in _polar(4, 4, instances=False)]
    assert polarity_counts(samples, 3) == (0, 0)
