"""The task protocol's types (documented in :mod:`unetkit.tasks`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from torch import Tensor, nn

from unetkit.data.sample import Sample
from unetkit.precision import FloatPrecision
from unetkit.train.distributed import DistInfo
from unetkit.train.validate import ValResult


@dataclass(frozen=True)
class TaskBatch:
    """One step's network input and loss target.

    Attributes:
        inputs: ``(B, C_in, *S)`` float32, what the network sees.
        target: what the loss compares the output with: segment ``(B, *S)`` int64 labels;
            restore ``(B, C_out, *S)`` float32 (normalised intensities).
        weights: per-pixel loss weights ``(B, *S)`` (segment's border weights; restore's
            blind-spot mask ``(B, C_out, *S)``), or ``None`` for all pixels equally.
        conditioning: keyword arguments of the forward (``model(x, **conditioning)``); empty
            unless the task conditions the network (diffusion: noise level, class).
    """

    inputs: Tensor
    target: Tensor
    weights: Tensor | None = None
    conditioning: dict[str, Tensor] = field(default_factory=dict)


class BatchSource(Protocol):
    """Reproducible, rank-sharded training batches: whatever the same task's
    :meth:`Objective.inputs` takes (segment: :class:`~unetkit.train.loader.ShardedBatches`
    giving a :class:`~unetkit.train.loader.TorchBatch`; restore: ``RestoreBatch``)."""

    def batch(self, epoch: int, index: int) -> Any: ...

    def stems(self, epoch: int, index: int) -> list[str]: ...


class Objective(Protocol):
    """What a task tells the trainer (see :mod:`unetkit.tasks`)."""

    name: str
    score_name: str
    batches: BatchSource

    def inputs(self, batch: Any) -> TaskBatch:
        """Network input, target and loss weights of one batch (may draw from torch's RNG)."""
        ...

    def loss(self, outputs: Tensor | list[Tensor], batch: TaskBatch) -> Tensor:
        """Scalar loss of fp32 ``outputs`` (or the deep-supervision list) against ``batch``."""
        ...

    def validate(
        self,
        model: nn.Module,
        samples: Sequence[Sample],
        info: DistInfo,
        *,
        precision: FloatPrecision = "fp32",
        channels_last: bool = False,
        keep_predictions: int = 0,
    ) -> ValResult:
        """Whole-image validation; ``ValResult.score`` is what "best" means (higher wins)."""
        ...

    def metadata(self) -> dict[str, Any]:
        """Entries for the model file's ``extra`` metadata (empty for segment)."""
        ...
