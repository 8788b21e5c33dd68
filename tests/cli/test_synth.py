"""``unetkit synth``: the built-in data on disk reads back exactly and passes check-data."""

from __future__ import annotations

import numpy as np
import pytest

from unetkit.data.synthetic import make_synthetic
from unetkit.io.images import read_image, read_mask


@pytest.mark.parametrize(
    ("dims", "img", "lab"), [(1, ".npy", ".npy"), (2, ".tif", ".png"), (3, ".tif", ".tif")]
)
def test_synth_writes_a_dataset_that_reads_back_exactly(cli, tmp_path, dims, img, lab) -> None:
    out = tmp_path / "syn"
    r = cli("synth", str(out), "--n", "2", "--spatial-dims", str(dims), "--seed", "3")
    assert r.returncode == 0, r.stderr
    expected = make_synthetic(2, spatial_dims=dims, seed=3)
    for s in expected:
        image = read_image(out / "images" / f"{s.stem}{img}", spatial_dims=dims)
        np.testing.assert_array_equal(image, s.image)
        np.testing.assert_array_equal(
            read_mask(out / "masks" / f"{s.stem}{lab}", spatial_dims=dims), s.mask
        )
    check = cli("check-data", str(out))
    assert check.returncode == 0, check.stdout + check.stderr


def test_synth_refuses_a_non_empty_folder(cli, tmp_path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    r = cli("synth", str(tmp_path))
    assert r.returncode == 2
    assert "not empty" in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_synth_overwrite_replaces_only_its_own_files(cli, tmp_path) -> None:
    """A user's dataset is never overwritten, even with --overwrite; an earlier synth is."""
    user = tmp_path / "mine"
    (user / "images").mkdir(parents=True)
    (user / "images" / "synthetic_0000.tif").write_bytes(b"my own image")
    r = cli("synth", str(user), "--n", "1", "--overwrite")
    assert r.returncode == 2 and "was not written by `unetkit synth`" in r.stderr
    assert "--overwrite" not in r.stderr
    assert (user / "images" / "synthetic_0000.tif").read_bytes() == b"my own image"
    syn = tmp_path / "syn"
    assert cli("synth", str(syn), "--n", "3").returncode == 0
    again = cli("synth", str(syn), "--n", "2")
    assert again.returncode == 2 and "holds synthetic data written earlier" in again.stderr
    (syn / "images" / "notes.txt").write_text("mine")
    assert cli("synth", str(syn), "--n", "2", "--overwrite").returncode == 0
    assert sorted(p.name for p in (syn / "images").iterdir()) == [
        "notes.txt",
        "synthetic_0000.tif",
        "synthetic_0001.tif",
    ]
