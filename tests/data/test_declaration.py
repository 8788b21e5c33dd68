"""dataset.yaml: parsing, validation, and how check-data, train and evaluate honour it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from unetkit.config import DataConfig, RunConfig
from unetkit.data.dataset import check_dataset
from unetkit.data.declaration import DatasetDeclaration, declaration_of, read_declaration
from unetkit.errors import DataError
from unetkit.io.images import write_image, write_mask
from unetkit.metrics.evaluate import aggregate, evaluate_pair
from unetkit.train.recipe import apply_declaration


def _dataset(root: Path, labels: tuple[int, ...] = (0, 1, 2), yaml: str | None = None) -> Path:
    for i in range(2):
        image = np.random.default_rng(i).integers(0, 255, (12, 12), dtype=np.uint8)
        mask = np.zeros((12, 12), np.uint8)
        for j, v in enumerate(labels):
            mask[j * 3 : j * 3 + 3, :] = v
        write_image(root / "images" / f"s{i}.png", image[None])
        write_mask(root / "masks" / f"s{i}.png", mask)
    if yaml is not None:
        (root / "dataset.yaml").write_text(yaml, encoding="utf-8")
    return root


def test_without_a_file_there_is_no_declaration(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "ds")
    assert read_declaration(root) is None
    report = check_dataset(root)
    assert report.ok and report.declaration is None and report.num_classes == 3
    assert report.to_dict()["class_names"] is None


def test_a_full_declaration_is_read_and_reported(tmp_path: Path) -> None:
    root = _dataset(
        tmp_path / "ds",
        yaml="class_names: [void, sky, road, car]\nignore_index: 0\nmodality: photo\n"
        "spacing: [0.5, 0.5]\n",
    )
    d = read_declaration(root)
    assert d == DatasetDeclaration(
        ("void", "sky", "road", "car"), 0, "photo", (0.5, 0.5), path=root / "dataset.yaml"
    )
    assert declaration_of(root / "masks") == d  # a masks/ folder finds its dataset's file
    report = check_dataset(root)
    # the names fix the class count (4), so the absent class 3 is warned about
    assert report.ok and report.num_classes == 4
    assert any("class(es) 3" in w for w in report.warnings)
    text = report.format()
    assert "0 void: " in text and "(ignored)" in text and "2 road: " in text
    assert "dataset.yaml: 4 class names, ignore_index 0, modality photo, spacing 0.5 x 0.5" in text
    assert report.to_dict()["class_names"] == ["void", "sky", "road", "car"]


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("class_names: [a, b\n", "not valid YAML at line 2"),
        ("- a\n- b\n", "expected a mapping"),
        ("classes: [a, b]\n", "unknown key(s) classes"),
        ("class_names: [a]\n", "at least 2 names"),
        ("class_names: [a, a]\n", "a repeated"),
        ("class_names: [a, '']\n", "non-empty names"),
        ("class_names: [a, b]\nignore_index: 2\n", "2 is out of range for 2 class names"),
        ("ignore_index: -1\n", "expected a label >= 0"),
        ("ignore_index: true\n", "expected a label >= 0"),
        ("modality: ''\n", "modality: expected a non-empty text"),
        ("spacing: [1, 0]\n", "spacing: expected 1 to 3 positive numbers"),
        ("spacing: [1, 1, 1, 1]\n", "spacing: expected 1 to 3 positive numbers"),
        ("spacing: .nan\n", "spacing: expected 1 to 3 positive numbers"),
        ("class_names: 3\n", "expected a list of non-empty names"),
    ],
)
def test_bad_declarations_are_one_line_naming_the_file(
    tmp_path: Path, yaml: str, message: str
) -> None:
    root = _dataset(tmp_path / "ds", yaml=yaml)
    with pytest.raises(DataError, match=r"dataset\.yaml") as info:
        read_declaration(root)
    assert message in str(info.value) and "\n" not in str(info.value)
    report = check_dataset(root)  # check-data lists it as a problem instead
    assert not report.ok and any(message in p for p in report.problems)


def test_masks_with_labels_beyond_the_names_are_a_problem(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "ds", labels=(0, 1, 2), yaml="class_names: [bg, cell]\n")
    report = check_dataset(root)
    assert not report.ok
    assert any("class_names has 2 names" in p and "dataset.yaml" in p for p in report.problems)
    # a --num-classes that disagrees with the names is a problem too
    root2 = _dataset(tmp_path / "ds2", yaml="class_names: [bg, a, b, c]\n")
    problems = check_dataset(root2, num_classes=3).problems
    assert any("class_names has 4 names but --num-classes is 3" in p for p in problems)


def test_train_takes_names_and_ignore_label_unless_the_user_set_them() -> None:
    d = DatasetDeclaration(("void", "a", "b"), 0)
    base = RunConfig(data=DataConfig(path="x"))
    filled = apply_declaration(base, d, set())
    assert filled.data.class_names == ("void", "a", "b")
    assert filled.data.ignore_index == 0 and filled.data.num_classes == 3
    mine = RunConfig(data=DataConfig(path="x", ignore_index=255, class_names=("p", "q", "r")))
    kept = apply_declaration(mine, d, {"data.ignore_index", "data.class_names"})
    assert kept.data.ignore_index == 255 and kept.data.class_names == ("p", "q", "r")
    assert apply_declaration(base, None, set()) is base
    with pytest.raises(DataError, match=r"data\.num_classes is 5"):
        apply_declaration(RunConfig(data=DataConfig(path="x", num_classes=5)), d, set())


def test_evaluate_table_and_json_name_the_classes_and_skip_the_ignore_label() -> None:
    truth = np.array([[0, 1, 1, 2], [0, 1, 2, 2]])
    pred = np.array([[2, 1, 1, 2], [1, 1, 2, 1]])
    r = evaluate_pair(pred, truth, num_classes=3, ignore_index=0)
    report = aggregate([r])
    named = type(report)(**{**report.__dict__, "class_names": ("void", "sky", "road")})
    table = named.format_table()
    assert "1 sky" in table and "2 road" in table and "void" not in table
    data = named.to_json_dict()
    assert set(data["per_class"]) == {"1", "2"}
    assert data["per_class"]["1"]["name"] == "sky"
    # sky: truth 3 px, pred 4 px on non-void pixels, 3 shared: Dice 6/7
    assert data["per_class"]["1"]["dice"] == pytest.approx(6 / 7)


def test_evaluate_command_honours_the_truth_datasets_declaration(tmp_path: Path, capsys) -> None:
    from unetkit.cli import main

    root = _dataset(tmp_path / "ds", yaml="class_names: [void, sky, road]\nignore_index: 0\n")
    pred = tmp_path / "pred"
    for i in range(2):  # everything predicted "sky": void rows must not count against it
        write_mask(pred / f"s{i}.png", np.ones((12, 12), np.uint8))
    report = tmp_path / "eval.json"
    assert (
        main(
            ["evaluate", "--pred", str(pred), "--truth", str(root / "masks"), "--json", str(report)]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "1 sky" in out and "2 road" in out and "void" not in out
    import json

    data = json.loads(report.read_text())
    assert data["settings"]["ignore_index"] == 0
    # rows 3-5 sky, 6-8 road (and 0-2 void, 9-11 background 0 = void): sky Dice 2*36/(36+72)
    assert data["per_class"]["1"]["name"] == "sky"
    assert data["per_class"]["1"]["dice"] == pytest.approx(2 * 36 / (36 + 72))
