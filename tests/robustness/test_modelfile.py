"""Untrusted, corrupt and foreign model files: refused with the file (and shapes) named."""

from __future__ import annotations

from pathlib import Path

import pytest
from catalogue import DOC, MODELFILE_CASES, ApiCase, check_api_case, doc_row

from unetkit.errors import ModelFileError
from unetkit.modelfile import load


@pytest.mark.parametrize("case", MODELFILE_CASES, ids=lambda c: c.name)
def test_bad_model_file_is_refused_clearly(case: ApiCase, tmp_path: Path) -> None:
    outcome = check_api_case(case, tmp_path)
    row = doc_row(case.name, outcome.result, outcome.message, tmp_path)
    assert row in DOC.read_text(encoding="utf-8"), (
        f"docs/robustness.md is stale for {case.name!r}; run tests/robustness/make_doc.py"
    )


class _Boom:
    def __reduce__(self):  # runs at unpickling time
        return (Path.touch, (Path(self.target),))

    def __init__(self, target: Path) -> None:
        self.target = str(target)


def test_loading_a_malicious_pickle_never_runs_it(tmp_path: Path) -> None:
    import pickle

    marker = tmp_path / "pwned"
    for name in ("evil.pt", "evil.pth", "evil.ckpt", "evil.bin"):
        (tmp_path / name).write_bytes(pickle.dumps({"w": _Boom(marker)}))
        with pytest.raises(ModelFileError, match="pickle"):
            load(tmp_path / name)
    assert not marker.exists()


def test_pickle_renamed_to_safetensors_is_not_unpickled(tmp_path: Path) -> None:
    import pickle

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"w": _Boom(marker)}))
    with pytest.raises(ModelFileError, match=r"evil\.safetensors: not a readable safetensors"):
        load(path)
    assert not marker.exists()
