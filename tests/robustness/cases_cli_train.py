"""`unetkit train` refused before training (nothing written)."""

from __future__ import annotations

from builders import TRAIN_TINY, _cli_dataset, _old_run, _rm, _train
from catalogue_kit import CliCase

CASES: list[CliCase] = [
    CliCase(
        "cli train",
        "output folder holds another run",
        _train("--out", "run", *TRAIN_TINY, build=lambda t: _old_run(t / "run")),
        ("--out: run already holds a run; continue it with --resume run", "--overwrite"),
        subprocess=True,
    ),
    CliCase(
        "cli train",
        "--overwrite on a non-empty folder that is not a run",
        _train(
            "--out",
            "run",
            "--overwrite",
            *TRAIN_TINY,
            build=lambda t: (t / "run").mkdir() or (t / "run" / "thesis.tex").write_text("x"),
        ),
        ("--out: run is not empty and is not a unetkit run (thesis.tex)",),
    ),
    CliCase(
        "cli train",
        "--overwrite with a broken dataset: the old run is kept",
        _train(
            "--out",
            "run",
            "--overwrite",
            "--data",
            "ds",
            "--epochs",
            "1",
            build=lambda t: (_old_run(t / "run"), _cli_dataset(_rm("masks/s1.png"))(t)),
        ),
        ("s1",),
    ),
    CliCase(
        "cli train",
        "--overwrite with a bad config value: the old run is kept",
        _train(
            "--out",
            "run",
            "--overwrite",
            *TRAIN_TINY,
            "train.lr=-1",
            build=lambda t: _old_run(t / "run"),
        ),
        ("lr",),
    ),
    CliCase(
        "cli train",
        "--out under a regular file (unwritable, also as root)",
        _train(
            "--out",
            "notes.txt/run",
            *TRAIN_TINY,
            build=lambda t: (t / "notes.txt").write_text("x"),
        ),
        ("--out: notes.txt/run: cannot create the folder, notes.txt is a file",),
    ),
    CliCase(
        "cli train",
        "--out is a file",
        _train(
            "--out", "notes.txt", *TRAIN_TINY, build=lambda t: (t / "notes.txt").write_text("x")
        ),
        ("--out: notes.txt is a file",),
    ),
    CliCase(
        "cli train",
        "--resume and --overwrite together",
        _train("--resume", "run", "--overwrite", build=lambda t: _old_run(t / "run")),
        ("--resume and --overwrite: choose one",),
    ),
    CliCase(
        "cli train",
        "--resume of a folder that is not a run",
        _train("--resume", "ds", build=_cli_dataset()),
        ("--resume: ds: no config.yaml",),
    ),
]

CASES += [
    CliCase(
        "cli train",
        "--init-from a pickled PyTorch file",
        _train(
            "--out", "run", "--init-from", "w.pt", *TRAIN_TINY,
            build=lambda t: (t / "w.pt").write_bytes(b"\x80\x04\x95 pickled"),
        ),
        ("--init-from w.pt: w.pt: is a pickled PyTorch file; unetkit never loads pickles",),
    ),
    CliCase(
        "cli train",
        "--init-from a corrupt model file",
        _train(
            "--out", "run", "--init-from", "m.safetensors", *TRAIN_TINY,
            build=lambda t: (t / "m.safetensors").write_bytes(b"\x10\x00garbage"),
        ),
        ("--init-from m.safetensors: m.safetensors: not a readable safetensors file",),
    ),
    CliCase(
        "cli train",
        "data.target_spacing with a negative number",
        _train("--out", "run", *TRAIN_TINY, "data.target_spacing=[1,-2]"),
        ("target_spacing: expected one positive number per spatial axis",),
    ),
    CliCase(
        "cli train",
        "data.target_spacing with another number of axes than the images",
        _train(
            "--out",
            "run",
            "--data",
            "ds",
            *TRAIN_TINY,
            "data.target_spacing=[4,1,1]",
            build=_cli_dataset(),
        ),
        ("data.target_spacing: [4.0, 1.0, 1.0] has 3 numbers", "are 2D"),
    ),
]
