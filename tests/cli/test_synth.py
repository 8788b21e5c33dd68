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
    for extra in ((), ("--overwrite",)):
        r = cli("synth", str(tmp_path), *extra)
        assert r.returncode == 2
        assert "holds files that unetkit synth did not write" in r.stderr
        assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_synth_overwrites_only_its_own_dataset(cli, tmp_path) -> None:
    out = tmp_path / "syn"
    assert cli("synth", str(out), "--n", "2").returncode == 0
    again = cli("synth", str(out), "--n", "2", "--seed", "4")
    assert again.returncode == 2 and "use --overwrite" in again.stderr
    replaced = cli("synth", str(out), "--n", "2", "--seed", "4", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
