"""Decode, predict and encode in a pipeline: the network never waits for PNG or TIFF codecs.

Inputs go in groups of ``group_size`` (the batch size, so that small images of one size share
network calls). While group ``g`` is predicted in the calling thread, two worker threads decode
group ``g + 1`` and encode and write group ``g - 1`` (codecs release the GIL). A group's outputs
are claimed (recorded in the output folder, one record per group) in the calling thread just
before their writes are queued, results are reported in input order once written, and a file
that cannot be decoded stops the run after the inputs before it are written, as predicting one
by one would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

P = TypeVar("P")  # the outputs of one input
R = TypeVar("R")  # one input's prediction


def run_pipeline(
    items: Sequence[tuple[Path, P, bool]],
    *,
    group_size: int,
    read: Callable[[Path], np.ndarray],
    predict: Callable[[list[Path], list[np.ndarray]], list[R]],
    claim: Callable[[list[tuple[Path, P]]], None],
    write: Callable[[Path, P, np.ndarray, R], None],
    emit: Callable[[Path, P, str], None],
) -> None:
    """Run every ``(source, outputs, done)`` item; ``done`` items are reported ``"skipped"``.

    ``emit(source, outputs, status)`` is called in input order, after the outputs are written.
    """
    groups = [list(items[i : i + group_size]) for i in range(0, len(items), max(1, group_size))]
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="unetkit-io") as pool:

        def start(group: list[tuple[Path, P, bool]]) -> list[Future[np.ndarray] | None]:
            return [None if done else pool.submit(read, src) for src, _, done in group]

        writing: list[tuple[tuple[Path, P, bool], Future[Any] | None]] = []

        def finish_writes() -> None:
            for (src, outputs, done), fut in writing:
                if fut is not None:
                    fut.result()
                emit(src, outputs, "skipped" if done else "predicted")
            writing.clear()

        reads = start(groups[0]) if groups else []
        for g, group in enumerate(groups):
            images: list[np.ndarray | None] = []
            error: BaseException | None = None
            for fut in reads:
                try:
                    images.append(None if fut is None else fut.result())
                except Exception as exc:  # decoded in a worker; raised here, in order
                    error = exc
                    break
            group = group[: len(images)]
            reads = start(groups[g + 1]) if error is None and g + 1 < len(groups) else []
            todo = [i for i, (_, _, done) in enumerate(group) if not done]
            preds = predict([group[i][0] for i in todo], [images[i] for i in todo])  # type: ignore[misc]
            finish_writes()
            predicted = dict(zip(todo, preds, strict=True))
            if predicted:
                claim([(group[i][0], group[i][1]) for i in predicted])
            for i, item in enumerate(group):
                fut = None
                if i in predicted:
                    fut = pool.submit(write, item[0], item[1], images[i], predicted[i])
                writing.append((item, fut))
            if error is not None:
                finish_writes()
                raise error
        finish_writes()
