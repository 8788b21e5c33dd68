"""Prefetched batches are the batches the source builds, whatever the order of requests."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from unetkit.train.prefetch import PrefetchedBatches


class Source:
    """A pure batch source that records which thread built what."""

    def __init__(self) -> None:
        self.built: list[tuple[int, int, str]] = []
        self.attribute = "read through"

    def batch(self, epoch: int, index: int) -> np.ndarray:
        self.built.append((epoch, index, threading.current_thread().name))
        if index in (-1, 7):
            raise ValueError(f"bad index {index}")
        return np.random.default_rng([epoch, index]).random(4)

    def stems(self, epoch: int, index: int) -> list[str]:
        return [f"{epoch}-{index}"]


def test_in_order_requests_are_served_by_the_worker_and_equal_the_source() -> None:
    src = Source()
    pre = PrefetchedBatches(src)
    for epoch, index in [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (5, 3), (5, 4)]:
        assert np.array_equal(pre.batch(epoch, index), Source().batch(epoch, index))
    assert (pre.hits, pre.misses) == (4, 3)  # the first, a new epoch, a jump
    pre.close()
    worker = [b for b in src.built if b[2].startswith("unetkit-batch")]
    assert {(e, i) for e, i, _ in worker} >= {(0, 1), (0, 2), (1, 1), (5, 4)}
    assert pre.stems(2, 3) == ["2-3"] and pre.attribute == "read through"


def test_errors_reach_the_caller_and_disabled_builds_on_request() -> None:
    pre = PrefetchedBatches(Source())
    with pytest.raises(ValueError, match="bad index -1"):  # built on request
        pre.batch(0, -1)
    assert np.array_equal(pre.batch(0, 6), Source().batch(0, 6))
    with pytest.raises(ValueError, match="bad index 7"):  # built by the worker, raised here
        pre.batch(0, 7)
    assert (pre.hits, pre.misses) == (1, 2)
    pre.close()
    src = Source()
    plain = PrefetchedBatches(src, enabled=False)
    plain.batch(0, 0)
    plain.batch(0, 1)
    assert [b[:2] for b in src.built] == [(0, 0), (0, 1)]
    assert all(not b[2].startswith("unetkit-batch") for b in src.built)


def test_close_stops_the_worker_and_a_later_request_restarts_it() -> None:
    pre = PrefetchedBatches(Source())
    pre.batch(0, 0)
    pre.close()
    assert not any(
        t.name.startswith("unetkit-batch") and t.is_alive() for t in threading.enumerate()
    )
    assert np.array_equal(pre.batch(0, 1), Source().batch(0, 1))
    pre.close()


def test_a_prefetched_run_has_the_same_weights_and_auto_is_off_on_a_cpu(tmp_path) -> None:
    import torch

    from unetkit.config import DataConfig, RunConfig, TrainConfig
    from unetkit.model import UNetConfig
    from unetkit.modelfile import read_tensors
    from unetkit.workflow import fit

    weights = {}
    for mode in ("on", "auto"):
        config = RunConfig(
            model=UNetConfig(widths=(4, 8)),
            data=DataConfig(synthetic_count=6, synthetic_size=32, patch_size=(32, 32)),
            train=TrainConfig(
                epochs=2, deterministic=True, steps_per_epoch=3, batch_size=2, threads=1,
                prefetch=mode, int8_calibration=False,
            ),
        )  # fmt: skip
        fit(config, tmp_path / mode, echo=lambda _: None)
        weights[mode], _ = read_tensors(tmp_path / mode / "last" / "model.safetensors")
    a, b = weights["on"], weights["auto"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_prefetch_setting_is_checked_and_auto_means_off_for_cpu_steps() -> None:
    from unetkit.config import RunConfig, TrainConfig, load_run_config
    from unetkit.train.distributed import DistInfo
    from unetkit.train.prepare import prepare_data
    from unetkit.train.step import StepRunner

    with pytest.raises(ValueError, match="prefetch"):
        load_run_config(None, ["train.prefetch=sometimes"])
    config = RunConfig()
    prepared = prepare_data(config.data)
    assert StepRunner(config, prepared, DistInfo()).batches.enabled is False
    on = RunConfig(train=TrainConfig(prefetch="on"))
    assert StepRunner(on, prepared, DistInfo()).batches.enabled is True
