"""Run folders, locks, resume and memory: the cases of ``unetkit train``/``predict`` that must
never lose data, each run as a user would (a real ``python -m unetkit`` subprocess, real files).

Two kinds, both used by ``test_cases_train.py`` and by ``make_doc.py`` (docs/robustness.md):

- :data:`CASES`: one command that must be refused: exit 2, one ``unetkit: error:`` line with the
  expected fragments, no fragment suggesting a destructive command, and the folder tree
  byte-for-byte as it was (every file's SHA-256 and every folder);
- :data:`SCENARIOS`: several commands (a second process, a ``SIGKILL``, a failed then corrected
  attempt, a moved dataset) with their own assertions; each returns what happened and the line
  the user saw.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

SRC = Path(__file__).resolve().parents[2] / "src"
TINY = [
    "model.widths=[4,8]",
    "data.synthetic_count=4",
    "data.synthetic_size=32",
    "data.patch_size=[32,32]",
    "train.steps_per_epoch=1",
    "train.int8_calibration=false",
]
DESTRUCTIVE = ("--overwrite", "rm -", "delete it")
MARKER = ".unetkit-run.json"
LOCK = ".unetkit-lock"


# ----------------------------------------------------------------------------- helpers


def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("UNETKIT_")}
    out["PYTHONPATH"] = str(SRC) + os.pathsep + out.get("PYTHONPATH", "")
    out.update(extra or {})
    return out


def unetkit(
    args: list[str], cwd: Path, extra_env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """``python -m unetkit ARGS`` in ``cwd``, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "unetkit", *args],
        cwd=cwd,
        env=env(extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "unetkit", *args],
        cwd=cwd,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def tree(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: SHA-256 of files, ``"dir"`` for folders."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def dataset(root: Path, n: int = 4, size: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        img = rng.integers(0, 256, (size, size), dtype=np.uint8)
        mask = np.zeros((size, size), np.uint8)
        mask[4 : 12 + i, 6:20] = 1
        Image.fromarray(img).save(root / "images" / f"s{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"s{i}.png")
    return root


def tiny_run(tmp: Path, out: str = "run", *extra: str, cwd: Path | None = None) -> Path:
    """A finished one-epoch run in ``tmp/out`` (a real subprocess)."""
    r = unetkit(["train", "--out", out, "--epochs", "1", "--quiet", *TINY, *extra], cwd or tmp)
    assert r.returncode == 0, r.stderr
    return (cwd or tmp) / out


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one ``unetkit: error:`` line, checked to be alone and without a traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("unetkit: error: "), proc.stderr
    return lines[0].removeprefix("unetkit: error: ")


def shown(text: str, tmp: Path) -> str:
    return text.replace(f"{tmp}/", "").replace(str(tmp), ".")


# ----------------------------------------------------------------------------- single commands


@dataclass(frozen=True)
class Case:
    """``build(tmp)`` makes the input and returns the arguments (run with ``cwd=tmp``)."""

    area: str
    name: str
    build: Callable[[Path], list[str]]
    expect: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    #: entries the command may create although refused (predict's output folder and its
    #: ownership manifest are made before the first image is read: infer/files.py)
    may_create: tuple[str, ...] = ()


def check_case(case: Case, tmp: Path) -> str:
    """Run ``case``: refused in one line with ``expect``, nothing destructive suggested, the
    folder tree unchanged. Returns the line (paths relative to ``tmp``)."""
    args = case.build(tmp)
    before = tree(tmp)
    line = error_line(unetkit(args, tmp, case.env))
    for fragment in case.expect:
        assert fragment in line, (fragment, line)
    for bad in DESTRUCTIVE:
        assert bad not in line or "deletes only the files that run wrote" in line, (bad, line)
    after = {k: v for k, v in tree(tmp).items() if k not in case.may_create}
    assert after == before, "the command changed the folder"
    return shown(line, tmp)


def _legacy_run(tmp: Path) -> None:
    """What an older unetkit or another tool leaves: config.yaml, last/, no marker."""
    (tmp / "run" / "last").mkdir(parents=True)
    (tmp / "run" / "config.yaml").write_text("model: {}\n")
    (tmp / "run" / "model.safetensors").write_bytes(b"someone's weights")


def _run_with_user_file(tmp: Path) -> None:
    tiny_run(tmp)
    (tmp / "run" / "notes.txt").write_text("my notes\n")


def _args(*args: str, build: Callable[[Path], object] | None = None) -> Callable[[Path], list]:
    def make(tmp: Path) -> list[str]:
        if build is not None:
            build(tmp)
        return list(args)

    return make


def _moved_data(tmp: Path) -> None:
    dataset(tmp / "ds")
    tiny_run(tmp, "run", "--data", "ds")
    (tmp / "ds").rename(tmp / "ds-moved")


def _huge_model_file(tmp: Path) -> None:
    """A 2 kB model file whose stored config declares widths of 8192 (billions of parameters)."""
    import dataclasses

    from safetensors import safe_open

    from unetkit.model import UNet, UNetConfig
    from unetkit.modelfile import save, write_tensors

    small = save(UNet(UNetConfig(widths=(4, 8), norm="none")), tmp / "small.safetensors")
    with safe_open(str(small), framework="pt") as fh:
        meta = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    huge = UNetConfig(widths=(8192,) * 6, norm="none")
    meta["config"] = json.dumps(dataclasses.asdict(huge))
    meta.pop("sha256_metadata", None)
    write_tensors(tmp / "huge.safetensors", tensors, meta)
    small.unlink()


def _model_and_big_image(tmp: Path) -> None:
    from unetkit.model import UNet, UNetConfig
    from unetkit.modelfile import save

    save(UNet(UNetConfig(widths=(16, 32, 64))).eval(), tmp / "m.safetensors")
    (tmp / "in").mkdir()
    Image.fromarray(np.zeros((2048, 2048), np.uint8)).save(tmp / "in" / "big.png")


CASES: list[Case] = [
    Case(
        "run folder",
        "--out holds config.yaml, last/ and a model but no unetkit marker (another tool, or an "
        "older unetkit)",
        _args("train", "--out", "run", "--overwrite", *TINY, build=_legacy_run),
        ("without unetkit's .unetkit-run.json", "will not delete", "--resume run"),
    ),
    Case(
        "run folder",
        "--overwrite on a unetkit run that also holds a user's file",
        _args("train", "--out", "run", "--overwrite", *TINY, build=_run_with_user_file),
        ("files unetkit did not write (notes.txt)", "never deletes those"),
    ),
    Case(
        "run folder",
        "--out holds a finished unetkit run",
        _args("train", "--out", "run", *TINY, build=tiny_run),
        ("already holds a run; continue it with --resume run",),
    ),
    Case(
        "run folder",
        "--out is a dataset folder (a typo)",
        _args("train", "--out", "ds", "--overwrite", *TINY, build=lambda t: dataset(t / "ds")),
        ("ds is not empty and is not a unetkit run (images, masks)", "choose another --out"),
    ),
    Case(
        "resume",
        "--resume with a different --batch-size, --loss and model override",
        _args(
            "train",
            "--resume",
            "run",
            "--batch-size",
            "3",
            "--loss",
            "ce",
            "model.widths=[8,16]",
            build=tiny_run,
        ),
        ("3 option(s) differ from the stored run", "--batch-size 3 (run:", "--loss ce (run:"),
    ),
    Case(
        "resume",
        "--resume with --out naming another folder",
        _args("train", "--resume", "run", "--out", "run2", build=tiny_run),
        ("a resumed run continues in its own folder",),
    ),
    Case(
        "resume",
        "--resume of a run whose dataset folder was moved",
        _args("train", "--resume", "run", build=_moved_data),
        ("does not exist (moved?); give its new place with --data DIR",),
    ),
    Case(
        "resume",
        "--resume --data pointing at a folder with other files",
        _args(
            "train",
            "--resume",
            "run",
            "--data",
            "other",
            build=lambda t: (_moved_data(t), dataset(t / "other", n=5)),
        ),
        ("--data: other does not hold the same files",),
    ),
    Case(
        "resume",
        "--resume of a folder without checkpoint or marker",
        _args(
            "train",
            "--resume",
            "run",
            build=lambda t: (t / "run").mkdir() or (t / "run" / "config.yaml").write_text("{}"),
        ),
        ("no checkpoint (last/ or checkpoints/) to continue from",),
    ),
    Case(
        "memory",
        "training step larger than the memory available",
        _args("train", "--out", "run", "--epochs", "1", "--batch-size", "64", *TINY),
        ("memory: a training step with --batch-size 64", "--batch-size", "would fit"),
        env={"UNETKIT_MEMORY_AVAILABLE": "300M"},
    ),
    Case(
        "memory",
        "prediction with --tile whole on a 2048x2048 image",
        _args(
            "predict",
            "--model",
            "m.safetensors",
            "--input",
            "in",
            "--output",
            "out",
            "--tile",
            "whole",
            "--precision",
            "fp32",
            build=_model_and_big_image,
        ),
        ("memory: predicting 1 tile(s) of 2048 2048", "--tile", "would fit"),
        env={"UNETKIT_MEMORY_AVAILABLE": "1G"},
        may_create=("out", "out/.unetkit-predict.json"),
    ),
    Case(
        "memory",
        "a 2 kB model file that declares billions of parameters",
        _args("info", "--model", "huge.safetensors", build=_huge_model_file),
        ("huge.safetensors: declares a model of", "not building it"),
        env={"UNETKIT_MEMORY_AVAILABLE": "8G"},
    ),
]


# ----------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Outcome:
    """What happened (for the document) and the line the user saw."""

    what: str
    message: str


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


LONG = [*TINY[:-2], "train.steps_per_epoch=400", "--epochs", "2", "--quiet"]


def second_writer_is_refused(tmp: Path) -> Outcome:
    """A second ``train`` and a ``--resume`` on a folder a running ``train`` holds: refused,
    naming its pid; the first run finishes unharmed."""
    first = start(["train", "--out", "run", *LONG], tmp)
    try:
        _wait_for(tmp / "run" / LOCK, first)
        second = unetkit(["train", "--out", "run", "--overwrite", *TINY], tmp)
        resume = unetkit(["train", "--resume", "run"], tmp)
        line = error_line(second)
        assert f"in use by another unetkit process (pid {first.pid} " in line, line
        assert f"(pid {first.pid} " in error_line(resume)
    finally:
        first.send_signal(signal.SIGINT)  # it checkpoints and stops
        _out, err = first.communicate(timeout=300)
    assert first.returncode == 130, err
    assert not (tmp / "run" / LOCK).exists()
    return Outcome("exit 2 for both; the running run is untouched", shown(line, tmp))


def killed_holder_lock_is_taken_over(tmp: Path) -> Outcome:
    """``SIGKILL`` leaves the lock behind; the next ``--resume`` sees its pid is gone, takes it
    over with a note and continues."""
    first = start(["train", "--out", "run", *LONG], tmp)
    _wait_for(tmp / "run" / "last", first)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    lock = json.loads((tmp / "run" / LOCK).read_text())
    assert lock["pid"] == first.pid
    r = unetkit(["train", "--resume", "run", "--epochs", "1"], tmp)
    assert r.returncode == 0, r.stderr
    notes = [ln for ln in r.stdout.splitlines() if "took over the lock" in ln]
    assert len(notes) == 1 and f"pid {first.pid} " in notes[0], r.stdout
    assert not (tmp / "run" / LOCK).exists()
    return Outcome("`--resume` exit 0; the stale lock named and replaced", shown(notes[0], tmp))


def refused_resume_changes_nothing(tmp: Path) -> Outcome:
    """Refused resumes (conflicting options, memory, other data, a bad override) leave every
    byte of the run as it was, including unfinished temporaries of a killed write."""
    dataset(tmp / "ds")
    tiny_run(tmp, "run", "--data", "ds")
    (tmp / "run" / ".model.safetensors.x1.tmp").write_bytes(b"half")  # a killed write's temporary
    dataset(tmp / "other", n=5, seed=3)
    before = tree(tmp / "run")
    attempts = [
        (["--batch-size", "7"], {}),
        (["--data", "other"], {}),
        (["train.lr=0.5"], {}),
        ([], {"UNETKIT_MEMORY_AVAILABLE": "200M"}),
        (["--epochs", "0"], {}),
    ]
    lines = []
    for extra, extra_env in attempts:
        lines.append(error_line(unetkit(["train", "--resume", "run", *extra], tmp, extra_env)))
        assert tree(tmp / "run") == before, (extra, lines[-1])
    return Outcome(f"{len(attempts)} refusals, exit 2; the run's tree hashes equal", lines[2])


def failed_attempt_then_corrected(tmp: Path) -> Outcome:
    """A first attempt that fails (in preflight, or mid-epoch before any checkpoint) never makes
    the corrected second attempt 'already hold a run'."""
    env_small = {"UNETKIT_MEMORY_AVAILABLE": "300M"}
    bad = unetkit(["train", "--out", "run", "--batch-size", "64", *TINY], tmp, env_small)
    error_line(bad)
    assert not (tmp / "run").exists()  # refused in preflight: nothing created
    nan = unetkit(
        [
            "train",
            "--out",
            "run",
            "--epochs",
            "1",
            *TINY[:-2],
            "train.lr=1e30",
            "train.steps_per_epoch=3",
        ],
        tmp,
    )
    assert "non-finite loss" in error_line(nan)
    assert (tmp / "run" / MARKER).is_file() and not (tmp / "run" / "last").exists()
    good = unetkit(["train", "--out", "run", "--epochs", "1", *TINY], tmp)
    assert good.returncode == 0, good.stderr
    said = [ln for ln in good.stdout.splitlines() if "earlier attempt" in ln]
    assert len(said) == 1, good.stdout
    return Outcome("the corrected run exit 0 without --overwrite", shown(said[0], tmp))


def resume_from_anywhere_and_relocated_data(tmp: Path) -> Outcome:
    """A run trained with a relative ``--data`` resumes from another working folder; after the
    dataset moved, ``--data NEW`` with the same files continues it."""
    dataset(tmp / "ds")
    tiny_run(tmp, "run", "--data", "ds")
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    r = unetkit(["train", "--resume", str(tmp / "run"), "--epochs", "2", "--quiet"], elsewhere)
    assert r.returncode == 0, r.stderr
    shutil.move(tmp / "ds", tmp / "moved-ds")
    r = unetkit(["train", "--resume", "run", "--epochs", "3", "--data", "moved-ds"], tmp)
    assert r.returncode == 0, r.stderr
    assert "moved-ds" in (tmp / "run" / "config.yaml").read_text()
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("finished"))
    return Outcome("exit 0 from another folder, and with --data after the move", shown(line, tmp))


def older_run_resumes_but_is_never_overwritten(tmp: Path) -> Outcome:
    """A run folder of an older unetkit (no marker) still resumes (and gets a marker listing
    only run entries); ``--overwrite`` never deletes it while it holds a user's file."""
    tiny_run(tmp)
    (tmp / "run" / MARKER).unlink()
    (tmp / "run" / "notes.txt").write_text("mine\n")
    r = unetkit(["train", "--resume", "run", "--epochs", "2", "--quiet"], tmp)
    assert r.returncode == 0, r.stderr
    marker = json.loads((tmp / "run" / MARKER).read_text())
    assert "notes.txt" not in marker["entries"] and "last" in marker["adopted"]
    line = error_line(unetkit(["train", "--out", "run", "--overwrite", *TINY], tmp))
    assert (tmp / "run" / "notes.txt").read_text() == "mine\n"
    return Outcome("`--resume` exit 0; then `--overwrite` exit 2, notes.txt kept", line)


SCENARIOS: list[tuple[str, Callable[[Path], Outcome]]] = [
    ("second `train`/`--resume` while a run holds the folder", second_writer_is_refused),
    ("`--resume` after the holder was SIGKILLed", killed_holder_lock_is_taken_over),
    ("refused `--resume` (5 kinds)", refused_resume_changes_nothing),
    ("failed first attempt, then the corrected one", failed_attempt_then_corrected),
    ("relative `--data`, resumed elsewhere, then moved", resume_from_anywhere_and_relocated_data),
    ("run folder of an older unetkit (no marker)", older_run_resumes_but_is_never_overwritten),
]


# ----------------------------------------------------------------------------- the document

DOC_INTRO = """
## Run folders, locks, resume and memory — `unetkit train`, `predict`, model files

Generated from `tests/robustness/cases_train.py`; every command is a real subprocess. A run
folder is recognised only by `.unetkit-run.json`, which unetkit writes (its identity, a run id,
the entries a run writes); `--overwrite` deletes only those entries, and a folder holding
anything else is refused with a message that suggests no deletion. Folders of older unetkit
versions (no marker) are never deleted, but resume when they hold a checkpoint (and then get a
marker). One writer per folder: `.unetkit-lock` (pid, host, start time; `O_EXCL`). Everything
that can fail (config, data, memory, one training step and one validation image on a throwaway
model, the checkpoint and the options of a `--resume`) is checked before the folder is created
or changed. A refused command leaves the folder tree byte for byte as it was.
"""


def doc_section() -> str:
    """The Markdown section for docs/robustness.md (runs every case and scenario)."""
    import tempfile

    rows = []
    for case in CASES:
        with tempfile.TemporaryDirectory() as d:
            line = check_case(case, Path(d))
        rows.append(row_of(case, line))
    table = "| case | result | message |\n|---|---|---|\n" + "\n".join(rows) + "\n"
    srows = []
    for name, scenario in SCENARIOS:
        with tempfile.TemporaryDirectory() as d:
            o = scenario(Path(d))
        srows.append(f"| {name} | {o.what} | {_cell(o.message)} |")
    scenarios = "\n| scenario | what happens | message |\n|---|---|---|\n" + "\n".join(srows)
    return DOC_INTRO + "\n" + table + scenarios + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def row_of(case: Case, line: str) -> str:
    """The document's row for ``case`` whose command printed ``line``."""
    return f"| {case.area}: {case.name} | exit 2 | {_cell(line)} |"
