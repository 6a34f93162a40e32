"""The board's stock Python: the numpy runner and `tinysnn infer` on Python 3.6 with numpy 1.19.

A Jetson Nano on JetPack 4.6 has Python 3.6.9 (docs/jetson.md). Where pyenv has a 3.6, a venv with
numpy 1.19.5 and the ``dataclasses`` backport (cached in pytest's cache folder) runs the runner and
the command on models exported here, and must give what Python 3.11 gives. Skipped, with the
reason, where there is no 3.6 or pip cannot install the two packages.
"""

import json
import os
import struct
import subprocess
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from tinysnn import data, deploy
from tinysnn.cli import main

ROOT = Path(__file__).resolve().parents[2]
PY36 = sorted(Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")).glob("versions/3.6.*/bin/python"))
PACKAGES = ["numpy==1.19.5", "dataclasses==0.8"]
TRAIN = [
    "train",
    "--dataset",
    "digits",
    "--neurons",
    "12",
    "--train-samples",
    "200",
    "--test-samples",
    "60",
    "--time-steps",
    "100",
    "--no-progress",
    "--energy",
    "estimate",
    "--seed",
    "3",
]
KINDS = {"fp32": [], "qwn": ["--quant", "weights=Q1.7,vmem=SQ6.2,vth=UQ7.1", "--rounding", "truncate"]}

pytestmark = pytest.mark.skipif(not PY36, reason="needs a Python 3.6 (pyenv's versions/3.6.*)")


@pytest.fixture(scope="module")
def python36(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Python 3.6 venv with numpy 1.19.5 and dataclasses, made once and kept in pytest's cache
    (in a temporary folder where the cache is off: ``-p no:cacheprovider``)."""
    cache = getattr(request.config, "cache", None)
    venv = Path(cache.mkdir("py36-numpy119")) if cache is not None else tmp_path_factory.mktemp("py36")
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import numpy, dataclasses; assert numpy.__version__ == '1.19.5'"]
    if not python.exists() or subprocess.run(probe, capture_output=True).returncode != 0:
        subprocess.run([str(PY36[0]), "-m", "venv", "--clear", str(venv)], check=True, capture_output=True)
        pip = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *PACKAGES],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if pip.returncode != 0:
            last = (pip.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.skip(f"pip cannot install {' '.join(PACKAGES)} for Python 3.6 here: {last}")
    return str(python)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    root = tmp_path_factory.mktemp("models36")
    for name, extra in KINDS.items():
        assert main(TRAIN + extra + ["--export", str(root / name)]) == 0
    return {name: root / name for name in KINDS}


def _run36(python: str, args: List[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [python, *args], capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=120
    )


@pytest.mark.parametrize("kind", list(KINDS))
def test_runner_on_python36_equals_python3(
    python36: str, models: Dict[str, Path], kind: str, tmp_path: Path
) -> None:
    model = deploy.load_model(models[kind])
    images = data.load("digits").test.images[:40].numpy()
    seeds = deploy.sample_seeds(9, 0, len(images))
    trains = deploy.isi_trains(images, model, seeds)
    np.save(tmp_path / "trains.npy", trains)
    np.save(tmp_path / "seeds.npy", seeds)
    code = (
        "import sys, numpy as np\n"
        "from tinysnn import deploy\n"
        "assert sys.version_info[:2] == (3, 6) and np.__version__ == '1.19.5'\n"
        f"m = deploy.load_model({str(models[kind])!r})\n"
        f"t, s = np.load({str(tmp_path / 'trains.npy')!r}), np.load({str(tmp_path / 'seeds.npy')!r})\n"
        f"np.save({str(tmp_path / 'counts.npy')!r}, deploy.run_trains(m, t, s, batch_size=16))\n"
    )
    proc = _run36(python36, ["-c", code])
    assert proc.returncode == 0, proc.stderr
    want = deploy.run_trains(model, trains, seeds)
    assert want.sum() > 0 and np.array_equal(np.load(tmp_path / "counts.npy"), want)


def test_tinysnn_infer_on_python36_gives_python3s_record(
    python36: str, models: Dict[str, Path], tmp_path: Path
) -> None:
    # digits' 8x8 test images as MNIST IDX files: the command reads them with numpy alone
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    d = data.load("digits")
    for split, (x, y) in {
        "train": (d.train.images[:40], d.train.labels[:40]),
        "t10k": (d.test.images[:60], d.test.labels[:60]),
    }.items():
        for kind, arr in (("images-idx3", x.numpy().reshape(-1, 8, 8)), ("labels-idx1", y.numpy())):
            header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
            (raw / f"{split}-{kind}-ubyte").write_bytes(header + arr.astype(np.uint8).tobytes())
    args = ["infer", str(models["qwn"]), "--dataset", "mnist", "--data-root", str(tmp_path), "--seed", "4"]
    proc = _run36(python36, ["-m", "tinysnn.cli", *args, "--json", str(tmp_path / "r36.json")])
    assert proc.returncode == 0, proc.stderr
    assert main(args + ["--json", str(tmp_path / "r3.json")]) == 0
    records = [json.loads((tmp_path / name).read_text()) for name in ("r36.json", "r3.json")]
    for r in records:
        del r["samples_per_s"]
    assert records[0] == records[1] and records[0]["samples"] == 60
