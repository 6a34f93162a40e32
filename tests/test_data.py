from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from tinysnn import data as D


def _write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    payload = header + arr.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def _fake_mnist(root: Path, folder: str = "MNIST", gz: bool = False, n: int = 30) -> None:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.RandomState(0)
    for split, m in (("train", n), ("t10k", n // 2)):
        _write_idx(raw / f"{split}-images-idx3-ubyte", rng.randint(0, 256, (m, 28, 28)), gz)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", rng.randint(0, 10, (m,)), gz)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_files_in_torchvision_layout(tmp_path: Path, gz: bool) -> None:
    _fake_mnist(tmp_path, gz=gz)
    s = D.load("mnist", tmp_path)
    assert tuple(s.train.images.shape) == (30, 784) and len(s.test) == 15
    assert s.train.image_shape == (28, 28)
    # the raw folder itself works too
    s2 = D.load("mnist", tmp_path / "MNIST" / "raw")
    assert bool((s2.train.images == s.train.images).all())


def test_fashion_uses_its_own_folder_and_validation_split(tmp_path: Path) -> None:
    _fake_mnist(tmp_path, folder="FashionMNIST")
    s = D.load("fashion-mnist", tmp_path, validation=10)
    assert len(s.train) == 20 and s.validation is not None and len(s.validation) == 10
    full = D.load("fashion-mnist", tmp_path)
    assert bool((full.train.images[20:] == s.validation.images).all())  # carved from the end


def test_missing_dataset_names_where_it_looked_and_three_fixes(tmp_path: Path) -> None:
    with pytest.raises(D.DatasetError) as err:
        D.load("fashion-mnist", tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in msg
    assert "--download" in msg and "--data-root" in msg and "dataset-fashion-mnist" in msg


def test_corrupt_idx_file_is_reported(tmp_path: Path) -> None:
    _fake_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"garbage!")
    with pytest.raises(D.DatasetError, match="bad magic number"):
        D.load("mnist", tmp_path)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("cut10", "truncated inside its header"),
        ("cut_body", "is truncated: header says"),
        ("gz_cut", "cannot read"),
        ("label255", "holds label 255"),
    ],
)
def test_damaged_idx_files_are_one_clear_error(tmp_path: Path, damage: str, message: str) -> None:
    _fake_mnist(tmp_path, gz=damage == "gz_cut")
    raw = tmp_path / "MNIST" / "raw"
    if damage == "cut10":
        img = raw / "train-images-idx3-ubyte"
        img.write_bytes(img.read_bytes()[:10])
    elif damage == "cut_body":
        img = raw / "train-images-idx3-ubyte"
        img.write_bytes(img.read_bytes()[:-100])
    elif damage == "gz_cut":
        gz = raw / "train-images-idx3-ubyte.gz"
        gz.write_bytes(gz.read_bytes()[:-30])
    else:
        _write_idx(raw / "train-labels-idx1-ubyte", np.full(30, 255), False)
    with pytest.raises(D.DatasetError, match=message) as err:
        D.load("mnist", tmp_path)
    assert "\n" not in str(err.value) and "download it again" in str(err.value)


def test_digits_is_bundled_and_deterministic() -> None:
    a = D.load("digits")
    b = D.load("digits")
    assert a.train.n_input == 64 and len(a.test) == D.DIGITS_TEST_SIZE
    assert len(a.train) + len(a.test) == 1797
    assert bool((a.train.images == b.train.images).all())
    assert int(a.train.images.max()) == 255


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        D.load("cifar")
    with pytest.raises(ValueError, match="non-negative"):
        D.load("digits").train.take(-3)
    with pytest.raises(ValueError, match="asked for 5000 samples"):
        D.load("digits").train.take(5000)


def _split_files(raw: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    _write_idx(raw / f"{split}-images-idx3-ubyte", images, False)
    _write_idx(raw / f"{split}-labels-idx1-ubyte", labels, False)


def test_test_images_of_another_shape_than_the_training_images_are_refused(tmp_path: Path) -> None:
    _fake_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    _split_files(raw, "t10k", np.zeros((15, 7, 9)), np.zeros(15))
    for load in (D.load, D.load_arrays):
        with pytest.raises(D.DatasetError) as err:
            load("mnist", tmp_path)
        msg = str(err.value)
        assert "\n" not in msg and "t10k-images-idx3-ubyte holds 7x9 images" in msg
        assert "train-images-idx3-ubyte holds 28x28" in msg and "--download" in msg


@pytest.mark.parametrize("split, images, labels, message", [
    ("t10k", np.zeros((15, 28, 28)), np.zeros(14), "holds 15 images but .*t10k-labels-idx1-ubyte 14 labels"),
    ("train", np.zeros((0, 28, 28)), np.zeros(0), r"holds an array of shape 0x28x28, not images"),
    ("train", np.zeros((30, 784)), np.zeros(30), r"holds an array of shape 30x784, not images"),
    ("t10k", np.zeros((15, 28, 28)), np.zeros((15, 1)), r"holds an array of shape 15x1, not one label per image"),
    ("t10k", np.zeros((15, 28, 28)), np.full(15, 10), "holds label 10; mnist has classes 0..9"),
])  # fmt: skip
def test_labels_one_per_image_within_the_classes_and_no_empty_split(
    tmp_path: Path, split: str, images: np.ndarray, labels: np.ndarray, message: str
) -> None:
    _fake_mnist(tmp_path)
    _split_files(tmp_path / "MNIST" / "raw", split, images, labels)
    with pytest.raises(D.DatasetError, match=message) as err:
        D.load("mnist", tmp_path)
    assert "\n" not in str(err.value) and "--download" in str(err.value)
