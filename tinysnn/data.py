"""Datasets: MNIST and Fashion-MNIST from IDX files, and scikit-learn's bundled digits.

* ``mnist`` and ``fashion-mnist`` are read from IDX files in torchvision's layout,
  ``<root>/MNIST/raw/train-images-idx3-ubyte`` (or ``FashionMNIST``), gzipped or not. ``root`` may
  also point at the ``raw`` folder itself or at a flat folder of IDX files (as Debian's package
  dataset-fashion-mnist installs them in /usr/share/datasets/fashion-mnist). With ``download=True``
  torchvision fetches them (extra ``tinysnn[vision]``).
* ``digits`` is scikit-learn's 8x8 digits (1,797 images, bundled with the package, so it works
  offline). We use the 64 pixels directly as 64 inputs, scaled from 0..16 to 0..255; this keeps
  networks small and tests fast. Its train/test split is a fixed permutation (seed 0): the last
  360 images are the test set.

Splits are deterministic: a validation split is carved from the END of the training set, never
from the test set. :func:`load_arrays` gives the same splits as numpy arrays without importing
torch (the numpy-only runner of :mod:`tinysnn.deploy` reads data with it).
"""

import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple, Union

import numpy as np

if TYPE_CHECKING:
    import torch

DATASETS = ("mnist", "fashion-mnist", "digits")
_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_SYSTEM_DIRS = {"fashion-mnist": ["/usr/share/datasets/fashion-mnist"], "mnist": []}
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DIGITS_TEST_SIZE = 360
N_CLASSES = 10  #: classes of every dataset here


class DatasetError(FileNotFoundError):
    """A dataset could not be found or read; the message says where we looked and how to fix it."""


@dataclass(frozen=True)
class Split:
    """One split of a dataset: images as flat uint8 intensities and integer labels."""

    images: "torch.Tensor"
    """(n, n_input) uint8, 0..255."""
    labels: "torch.Tensor"
    """(n,) int64 class indices."""
    image_shape: Tuple[int, int]
    name: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_input(self) -> int:
        return int(self.images.shape[1])

    def take(self, n: Optional[int]) -> "Split":
        """The first ``n`` samples (all when ``n`` is None)."""
        if n is None:
            return self
        n = check_count(n, "sample count")
        if n > len(self):
            raise ValueError(f"{self.name}: asked for {n} samples but the split has {len(self)}")
        return Split(self.images[:n], self.labels[:n], self.image_shape, self.name)


@dataclass(frozen=True)
class Splits:
    train: Split
    test: Split
    validation: Optional[Split] = None


def check_count(n: int, what: str) -> int:
    """Validate a non-negative sample count."""
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {n!r}")
    return int(n)


def normalize_name(name: str) -> str:
    key = str(name).lower().replace("_", "-")
    if key == "fashion":
        key = "fashion-mnist"
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    return key


def load(
    name: str,
    root: Union[str, Path, None] = None,
    *,
    download: bool = False,
    validation: int = 0,
) -> Splits:
    """Load a dataset's train and test splits (and an optional validation split).

    Args:
        name: ``mnist``, ``fashion-mnist`` or ``digits``.
        root: data root in torchvision's layout (``<root>/MNIST/raw``), the ``raw`` folder, or a
            flat folder of IDX files. Defaults to ``$TINYSNN_DATA`` or ``./data``.
        download: fetch MNIST / Fashion-MNIST with torchvision into ``root`` when missing.
        validation: number of training samples moved (from the end) into a validation split.
    """
    import torch

    key = normalize_name(name)
    validation = check_count(validation, "validation")
    train, test = (
        Split(torch.from_numpy(x.copy()), torch.from_numpy(y.copy()), shape, f"{key}:{split}")
        for split, (x, y, shape) in load_arrays(key, root, download=download).items()
    )
    val = None
    if validation:
        if validation >= len(train):
            raise ValueError(f"validation={validation} leaves no training data ({len(train)} samples)")
        cut = len(train) - validation
        val = Split(train.images[cut:], train.labels[cut:], train.image_shape, key + ":validation")
        train = Split(train.images[:cut], train.labels[:cut], train.image_shape, key + ":train")
    return Splits(train=train, test=test, validation=val)


#: One split as numpy arrays: (images (n, n_input) uint8, labels (n,) int64, image shape).
ArraySplit = Tuple[np.ndarray, np.ndarray, Tuple[int, int]]


def load_arrays(
    name: str, root: Union[str, Path, None] = None, *, download: bool = False
) -> Dict[str, ArraySplit]:
    """The train and test splits of a dataset as numpy arrays, ``{"train": ..., "test": ...}``.

    Raises:
        DatasetError: a file missing or damaged, a split without images, labels not one per image or
            outside the classes, or test images of another shape than the training images (one line
            naming the files, the shapes and the fix), before anything uses the data.
    """
    key = normalize_name(name)
    return _load_digits() if key == "digits" else _load_idx_dataset(key, root, download)


def _load_digits() -> Dict[str, ArraySplit]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DatasetError(
            "dataset 'digits' comes with scikit-learn, which is not installed: pip install scikit-learn"
        ) from None

    d = load_digits()
    x = np.round(d.data * (255.0 / 16.0)).astype(np.uint8)
    y = d.target.astype(np.int64)
    perm = np.random.RandomState(0).permutation(len(y))
    x, y = x[perm], y[perm]
    cut = len(y) - DIGITS_TEST_SIZE
    return {"train": (x[:cut], y[:cut], (8, 8)), "test": (x[cut:], y[cut:], (8, 8))}


def _candidates(key: str, root: Union[str, Path, None]) -> List[Path]:
    folder = _FOLDERS[key]
    roots: List[Path] = []
    if root is not None:
        roots.append(Path(root).expanduser())
    else:
        roots.append(Path(os.environ.get("TINYSNN_DATA", "data")).expanduser())
    out: List[Path] = []
    for r in roots:
        out += [r / folder / "raw", r / "raw", r]
    if root is None:
        out += [Path(p) for p in _SYSTEM_DIRS[key]]
    return out


def _find(dirs: List[Path], stem: str) -> Optional[Path]:
    for d in dirs:
        for suffix in ("", ".gz"):
            p = d / (stem + suffix)
            if p.is_file():
                return p
    return None


def _missing_message(key: str, dirs: List[Path], root: Union[str, Path, None]) -> str:
    looked = "\n".join(f"  - {d}" for d in dirs)
    where = root if root is not None else "data"
    return (
        f"dataset {key!r} not found (train-images-idx3-ubyte[.gz] and friends). Looked in:\n{looked}\n"
        "Get it one of three ways:\n"
        f'  1. let torchvision download it: pass --download (needs `pip install "tinysnn[vision]"`) '
        f"and it lands in {where}/{_FOLDERS[key]}/raw;\n"
        "  2. point --data-root (or $TINYSNN_DATA) at a folder holding "
        f"{_FOLDERS[key]}/raw/<IDX files>;\n"
        "  3. on Debian/Ubuntu: `apt-get install dataset-fashion-mnist` installs Fashion-MNIST in "
        "/usr/share/datasets/fashion-mnist (pass that folder as the data root)."
    )


def _load_idx_dataset(key: str, root: Union[str, Path, None], download: bool) -> Dict[str, ArraySplit]:
    dirs = _candidates(key, root)
    if _find(dirs, _FILES["train"][0]) is None and download:
        _download(key, root)
        dirs = _candidates(key, root)
    splits: Dict[str, ArraySplit] = {}
    paths: Dict[str, Path] = {}
    for split, (img_stem, lbl_stem) in _FILES.items():
        img_p, lbl_p = _find(dirs, img_stem), _find(dirs, lbl_stem)
        if img_p is None or lbl_p is None:
            raise DatasetError(_missing_message(key, dirs, root))
        splits[split] = _checked_split(key, img_p, read_idx(img_p), lbl_p, read_idx(lbl_p))
        paths[split] = img_p
    (_, _, train_shape), (_, _, test_shape) = splits["train"], splits["test"]
    if train_shape != test_shape:
        raise DatasetError(
            f"{paths['test']} holds {_shape_text(test_shape)} images but {paths['train']} holds "
            f"{_shape_text(train_shape)}: the test and training files must be of one dataset; replace the "
            f"test file with {key}'s {_shape_text(train_shape)} test images (or download both again: --download)"
        )
    return splits


def _shape_text(shape: Tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def _checked_split(key: str, img_p: Path, images: np.ndarray, lbl_p: Path, labels: np.ndarray) -> ArraySplit:
    """One split from its IDX arrays, refused unless the images are (n, h, w) with n >= 1 and h, w >= 1
    and the labels (n,) within the classes: one line naming the file and the fix."""
    fix = "the file is damaged or of another dataset: download it again (--download)"
    if images.ndim != 3 or 0 in images.shape:
        raise DatasetError(
            f"{img_p} holds an array of shape {_shape_text(images.shape)}, not images "
            f"(count x height x width, none 0): {fix}"
        )
    if labels.ndim != 1:
        raise DatasetError(
            f"{lbl_p} holds an array of shape {_shape_text(labels.shape)}, not one label per image: {fix}"
        )
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"{img_p} holds {images.shape[0]} images but {lbl_p} {labels.shape[0]} labels: "
            f"one label per image; {fix}"
        )
    if int(labels.max()) >= N_CLASSES:
        raise DatasetError(
            f"{lbl_p} holds label {int(labels.max())}; {key} has classes 0..{N_CLASSES - 1}: {fix}"
        )
    h, w = images.shape[1:]
    return images.reshape(len(images), h * w), labels.astype(np.int64), (int(h), int(w))


def read_idx(path: Union[str, Path]) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a numpy array of uint8."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    fix = "download it again (--download) or copy the original file"
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as exc:  # a truncated .gz ends in EOFError
        raise DatasetError(f"cannot read {path} ({exc}): {fix}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file (bad magic number): {fix}")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise DatasetError(f"{path} is truncated inside its header: {fix}")
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DatasetError(f"{path} is truncated: header says {dims}, found {body.size} values: {fix}")
    return body.reshape(dims)


def _download(key: str, root: Union[str, Path, None]) -> None:
    try:
        import torchvision.datasets as tvd
    except ImportError as exc:
        raise DatasetError('--download needs torchvision: pip install "tinysnn[vision]"') from exc
    cls = tvd.MNIST if key == "mnist" else tvd.FashionMNIST
    target = str(Path(root if root is not None else os.environ.get("TINYSNN_DATA", "data")).expanduser())
    for train in (True, False):
        cls(target, train=train, download=True)


__all__ = ["DATASETS", "DatasetError", "Split", "Splits", "check_count", "load", "load_arrays", "read_idx"]
