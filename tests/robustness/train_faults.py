"""Faults while training: each scenario breaks a real ``unetkit train`` run and checks the outcome.

Used twice, like ``catalogue``: by ``test_train_faults.py`` (each scenario asserts what must
hold: nothing lost, one clear line, exact resume) and by ``make_doc.py``, which runs every
scenario and writes the fault table of ``docs/robustness.md`` from the messages really printed.

All runs use one tiny deterministic config (:data:`TINY`: a 2-level U-Net with widths 4/8 on six
32x32 synthetic images, 6 epochs of 3 steps), so a run takes about a second plus the Python
start. Where the user's experience is a process being killed or signalled, the scenario kills a
real process; faults that need a hook inside (a full disk) are patched in-process.
"""

from __future__ import annotations

import errno
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import torch
from catalogue import cli_env, dataset, one_line, run_in_process

from unetkit.modelfile import read_tensors
from unetkit.train import checkpoint as ckpt

EPOCHS = 6
STEPS_PER_EPOCH = 3
TINY = [
    "--epochs",
    str(EPOCHS),
    "--deterministic",
    "--batch-size",
    "2",
    "model.widths=[4,8]",
    "data.synthetic_count=6",
    "data.synthetic_size=32",
    "data.patch_size=[32,32]",
    f"train.steps_per_epoch={STEPS_PER_EPOCH}",
    "train.overlays=0",
    "train.keep_checkpoints=2",
]
TOTAL_STEPS = EPOCHS * STEPS_PER_EPOCH


@dataclass(frozen=True)
class Fault:
    """What a scenario produced: ``result`` (exit statuses, what was kept) and ``message`` (the
    line(s) the user saw, run folder shown as ``run``). ``stable``: the message is the same on
    every run (else it depends on where a random kill landed, and the doc shows one example)."""

    result: str
    message: str
    stable: bool = True


# ----------------------------------------------------------------------------- running


def start(tmp: Path, *args: str) -> subprocess.Popen:
    """``python -m unetkit train ARGS`` in folder ``tmp``, output unbuffered, not waited for."""
    return subprocess.Popen(
        [sys.executable, "-m", "unetkit", "train", *args],
        cwd=tmp,
        env=cli_env({"PYTHONUNBUFFERED": "1"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def finish(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m unetkit train ARGS`` in folder ``tmp``, to the end."""
    return subprocess.run(
        [sys.executable, "-m", "unetkit", "train", *args],
        cwd=tmp,
        env=cli_env({}),
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def wait_for_line(proc: subprocess.Popen, prefix: str) -> list[str]:
    """Read stdout until a line starts with ``prefix``; returns the lines read."""
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(prefix):
            return lines
    raise AssertionError(f"no line starting with {prefix!r}; got {lines[-5:]}")


def weights(run: Path, name: str = "last/model.safetensors") -> dict[str, torch.Tensor]:
    return read_tensors(run / name)[0]


def assert_same_run(run: Path, reference: Path) -> None:
    """Final weights (``last/`` and the best ``model.safetensors``) and optimiser state equal
    the reference run's, bit for bit."""
    for name in ("last/model.safetensors", "model.safetensors", "last/state.safetensors"):
        a, b = weights(run, name), weights(reference, name)
        keys = [k for k in b if not k.startswith("rng/")]
        assert keys and set(keys) <= a.keys(), name
        for key in keys:
            assert torch.equal(a[key], b[key]), f"{name}: {key} differs from the reference"
    state = ckpt.read_checkpoint(run / ckpt.LAST).state
    assert state.finished and state.step == TOTAL_STEPS and state.epoch == EPOCHS


def all_finite(path: Path) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in read_tensors(path)[0].values())


def shown(text: str, tmp: Path) -> str:
    """``text`` with the scenario folder removed from paths and temporary names generalised."""
    text = text.replace(f"{tmp}/", "").replace(str(tmp), ".")
    return re.sub(r"\.(last|epoch|model\.safetensors)\.[A-Za-z0-9_]+\.tmp", r".\1.XXXX.tmp", text)


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one ``unetkit: error:`` line of a failed command (asserted to be alone, no traceback)."""
    both = proc.stdout + proc.stderr
    assert "Traceback" not in both, both
    assert proc.stderr.startswith("unetkit: error: ") and one_line(proc.stderr), proc.stderr
    return proc.stderr.strip().removeprefix("unetkit: error: ")


def reference_run(folder: Path) -> tuple[Path, float]:
    """An uninterrupted run in ``folder/run``; returns it and the seconds its training took
    (from the ``run folder:`` line to the exit), the window in which random kills land."""
    folder.mkdir(parents=True, exist_ok=True)
    proc = start(folder, "--out", "run", *TINY)
    try:
        wait_for_line(proc, "run folder:")
        began = time.monotonic()
        _, stderr = proc.communicate(timeout=600)
        seconds = time.monotonic() - began
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    return folder / "run", seconds


# ----------------------------------------------------------------------------- scenarios


def sigkill_then_resume(tmp: Path, reference: Path, window: float, seed: int = 7) -> Fault:
    """SIGKILL a real run at seeded random moments (3 times), then ``--resume`` until done."""
    rng = random.Random(seed)
    kills, landed, commands = 0, 0, 0
    resume_lines: list[str] = []
    while True:
        fresh = not (tmp / "run" / "config.yaml").is_file()  # killed before the run began
        args = ["--out", "run", *TINY] if fresh else ["--resume", "run"]
        proc = start(tmp, *args)
        commands += 1
        try:
            if kills < 3:
                wait_for_line(proc, "run folder:" if fresh else "resuming")
                time.sleep(rng.uniform(0.0, window))
                kills += 1
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    landed += 1
            stdout, stderr = proc.communicate(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
        if not fresh:
            said = ("resuming", "removed", "run: no checkpoint")
            resume_lines += [ln for ln in stdout.splitlines() if ln.startswith(said)]
        assert "Traceback" not in stderr, stderr
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, stderr)
        assert commands < 10, "the run never finished"
    assert landed >= 1, "no kill landed while the run was training; the test proved nothing"
    assert_same_run(tmp / "run", reference)
    return Fault(
        f"{landed} of 3 random kills landed; `--resume` exit 0; weights equal the "
        "uninterrupted run's",
        shown(" / ".join(dict.fromkeys(resume_lines)), tmp),
        stable=False,
    )


# Patches the checkpoint writer, then runs ``unetkit train ARGV``: the second write of last/
# is killed (SIGKILL, no clean-up) after its temporary folder is complete and before the rename
# ("before_rename") or after the old last/ was moved aside ("between_renames").
CRASH_DRIVER = """
import os, signal, sys
import unetkit.train.checkpoint as ck
from unetkit.cli import main

stage, calls, real = sys.argv[1], [0], ck._replace_dir

def replace_dir(src, dst):
    if dst.name == "last":
        calls[0] += 1
        if calls[0] == 2:
            if stage == "between_renames":
                os.replace(dst, dst.with_name(".last.old"))
            os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst)

ck._replace_dir = replace_dir
sys.exit(main(["train", *sys.argv[2:]]))
"""


def killed_while_checkpointing(tmp: Path, reference: Path, stage: str) -> Fault:
    """A kill inside the second checkpoint write keeps the first; ``--resume`` cleans up and
    continues to the same final weights."""
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_DRIVER, stage, "--out", "run", "--quiet", *TINY],
        cwd=tmp,
        env=cli_env({}),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    run = tmp / "run"
    temps = [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    assert len(temps) == 1 and temps[0].startswith(".last."), temps  # the unfinished write
    kept = run / ("last" if stage == "before_rename" else ".last.old")
    assert (run / "last").is_dir() == (stage == "before_rename")
    assert ckpt.read_checkpoint(kept).state.epoch == 1  # the previous checkpoint, verified
    assert ckpt.load_latest(run).folder == kept
    resumed = finish(tmp, "--resume", "run")
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp") or p.name.endswith(".old")]
    assert_same_run(run, reference)
    said = [ln for ln in resumed.stdout.splitlines() if ln.startswith("removed")]
    assert len(said) == 1 and temps[0] in said[0], resumed.stdout
    return Fault(
        f"killed (SIGKILL); {kept.name}/ of epoch 1 verifies; `--resume` exit 0, weights equal "
        "the uninterrupted run's",
        shown(said[0], tmp),
    )


def disk_full_while_checkpointing(tmp: Path) -> Fault:
    """``ENOSPC`` while the second checkpoint's state file is written (patched in-process)."""
    real = ckpt.write_tensors
    calls = [0]

    def full_disk(path: Path, tensors: object, metadata: object) -> None:
        calls[0] += 1
        if calls[0] == 2:
            Path(path).write_bytes(b"half a file")  # what a full disk leaves behind
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, tensors, metadata)  # type: ignore[arg-type]

    with mock.patch.object(ckpt, "write_tensors", full_disk):
        proc = run_in_process(["train", "--out", "run", "--quiet", *TINY], tmp, {})
    assert proc.returncode == 2, proc.stderr
    line = error_line(proc)
    assert line.startswith("run/last: cannot write the checkpoint: no space left on device")
    run = tmp / "run"
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")], "temporary left behind"
    assert ckpt.read_checkpoint(run / "last").state.epoch == 1  # the previous one, intact
    return Fault("exit 2; temporary folder removed; last/ of epoch 1 intact", shown(line, tmp))


def _paused_run(tmp: Path, epochs: int = 3) -> Path:
    proc = run_in_process(
        ["train", "--out", "run", "--quiet", "--stop-after", str(epochs), *TINY], tmp, {}
    )
    assert proc.returncode == 0, proc.stderr
    return tmp / "run"


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE: dict[str, tuple[Callable[[Path], None], str, int]] = {
    # damage to a paused run (last/ = epoch 3, ring = epoch-0002, epoch-0003): what is hurt,
    # the checkpoint that resume must fall back to, and its epoch
    "flipped byte in last/model.safetensors": (
        lambda run: _flip_last_byte(run / "last" / "model.safetensors"),
        "checkpoints/epoch-0003",
        3,
    ),
    "truncated last/ and checkpoints/epoch-0003": (
        lambda run: [
            _truncate(run / "last" / "state.safetensors"),
            _truncate(run / "checkpoints" / "epoch-0003" / "model.safetensors"),
        ],
        "checkpoints/epoch-0002",
        2,
    ),
}


def corrupt_checkpoint(tmp: Path, reference: Path, damage: str) -> Fault:
    """Damage checkpoints of a paused run; ``--resume`` names each damaged one, falls back to
    the newest good one, says so, and ends with the uninterrupted run's weights."""
    run = _paused_run(tmp)
    hurt, fallback, epoch = DAMAGE[damage]
    hurt(run)
    resumed = finish(tmp, "--resume", "run")
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    warnings = resumed.stderr.strip().splitlines()
    assert all(ln.startswith("damaged checkpoint skipped: run/") for ln in warnings[:-1])
    assert len(warnings) == (2 if epoch == 3 else 3), warnings
    assert "checksum" in warnings[0] or "truncated" in warnings[0] or "corrupt" in warnings[0]
    assert warnings[-1].startswith(f"resuming from the earlier checkpoint run/{fallback} ")
    assert f"(epoch {epoch}, step {epoch * STEPS_PER_EPOCH})" in warnings[-1]
    assert_same_run(run, reference)
    return Fault(
        f"`--resume` exit 0 from {fallback}; weights equal the uninterrupted run's",
        shown(" / ".join(warnings), tmp),
    )


def non_finite_loss(tmp: Path) -> Fault:
    """``train.lr=1e30``: the loss overflows on step 2."""
    proc = run_in_process(["train", "--out", "run", "--quiet", *TINY, "train.lr=1e30"], tmp, {})
    assert proc.returncode == 2
    line = error_line(proc)
    assert "non-finite loss at epoch 1, step 2 (batch of synthetic_" in line, line
    best = tmp / "run" / "model.safetensors"
    assert not best.exists() or all_finite(best)
    assert not (tmp / "run" / "last").exists()  # nothing from the broken run saved
    return Fault("exit 2; no model.safetensors or last/ written", shown(line, tmp))


def signalled(tmp: Path, reference: Path, sig: signal.Signals) -> Fault:
    """SIGINT/SIGTERM during epoch 3: a final (mid-epoch) checkpoint, exit 128+N, no traceback;
    ``--resume`` continues from it to the uninterrupted run's weights."""
    proc = start(tmp, "--out", "run", *TINY)
    try:
        wait_for_line(proc, "epoch 2/")
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, (proc.returncode, stderr)
    assert "Traceback" not in stdout + stderr, stderr
    state = ckpt.read_checkpoint(tmp / "run" / "last").state
    assert STEPS_PER_EPOCH * 2 <= state.step < TOTAL_STEPS and not state.finished
    said = [ln for ln in stdout.splitlines() if ln.startswith("continue with")]
    assert said == ["continue with: unetkit train --resume run"], stdout
    resumed = finish(tmp, "--resume", "run")
    assert resumed.returncode == 0 and "Traceback" not in resumed.stderr, resumed.stderr
    assert_same_run(tmp / "run", reference)
    return Fault(
        f"exit {128 + sig}; last/ written at the step reached; `--resume` exit 0, weights "
        "equal the uninterrupted run's",
        said[0],
    )


def overwrite_replaces_a_run(tmp: Path) -> Fault:
    """``--overwrite`` on a folder holding a unetkit run (its marker lists what it wrote): those
    entries are deleted (and it says so) once the new run has passed its preflight, and the new
    run is written in its place. (A folder with other files is refused: cases_train.py.)"""
    from unetkit.train.runfolder import new_marker, write_marker

    (tmp / "run" / "last").mkdir(parents=True)
    (tmp / "run" / "config.yaml").write_text("old run\n")
    write_marker(tmp / "run", new_marker())
    proc = run_in_process(["train", "--out", "run", "--overwrite", *TINY, "--epochs", "1"], tmp, {})
    assert proc.returncode == 0, proc.stderr
    said = [ln for ln in proc.stdout.splitlines() if ln.startswith("--overwrite")]
    assert said == ["--overwrite: deleted the previous run in run (config.yaml, last)"], proc.stdout
    assert sorted(p.name for p in (tmp / "run").iterdir() if p.name.startswith(".")) == [
        ".unetkit-run.json"
    ]
    assert [p.name for p in tmp.iterdir()] == ["run"]  # nothing left aside
    assert ckpt.read_checkpoint(tmp / "run" / "last").state.epoch == 1
    return Fault("exit 0; the new run in its place", said[0])


def image_smaller_than_patch(tmp: Path) -> Fault:
    """16x16 images with 32x32 patches: padded, trained, noted."""
    dataset(tmp / "ds", n=4, size=(16, 16))
    proc = run_in_process(
        [
            "train",
            "--data",
            "ds",
            "--out",
            "run",
            "--patch-size",
            "32",
            "32",
            "--epochs",
            "1",
            "--deterministic",
            "model.widths=[4,8]",
            "train.steps_per_epoch=2",
            "train.batch_size=2",
            "train.overlays=0",
        ],
        tmp,
        {},
    )
    assert proc.returncode == 0, proc.stderr
    said = [ln for ln in proc.stdout.splitlines() if "smaller than the patch" in ln]
    assert len(said) == 1, proc.stdout
    assert all_finite(tmp / "run" / "model.safetensors")
    return Fault("exit 0; trained on padded patches", said[0].removeprefix("note: "))


# ----------------------------------------------------------------------------- the table

# (case, scenario needing (tmp, reference, window)); each is run by make_doc.py and the tests
SCENARIOS: list[tuple[str, Callable[[Path, Path, float], Fault]]] = [
    ("SIGKILL at 3 seeded random moments, then `--resume`", sigkill_then_resume),
    (
        "SIGKILL inside a checkpoint write, before the rename",
        lambda t, r, w: killed_while_checkpointing(t, r, "before_rename"),
    ),
    (
        "SIGKILL inside a checkpoint write, between moving last/ aside and the rename",
        lambda t, r, w: killed_while_checkpointing(t, r, "between_renames"),
    ),
    (
        "disk full (ENOSPC) while writing a checkpoint",
        lambda t, r, w: disk_full_while_checkpointing(t),
    ),
    *(
        (f"corrupt checkpoint: {name}", lambda t, r, w, n=name: corrupt_checkpoint(t, r, n))
        for name in DAMAGE
    ),
    ("non-finite loss (`train.lr=1e30`)", lambda t, r, w: non_finite_loss(t)),
    ("SIGINT during training", lambda t, r, w: signalled(t, r, signal.SIGINT)),
    ("SIGTERM during training", lambda t, r, w: signalled(t, r, signal.SIGTERM)),
    ("`--overwrite` on a folder holding a run", lambda t, r, w: overwrite_replaces_a_run(t)),
    ("images smaller than the patch size", lambda t, r, w: image_smaller_than_patch(t)),
]


def doc_row(name: str, fault: Fault) -> str:
    return f"| {name} | {fault.result} | {fault.message.replace('|', '/')} |"


def doc_row_prefix(name: str, fault: Fault) -> str:
    """The part of a row that does not depend on where a random kill landed."""
    return f"| {name} | " if not fault.stable else doc_row(name, fault)
