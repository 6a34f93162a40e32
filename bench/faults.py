"""Fault campaign: bad inputs, killed workers and damaged files against the CLI, with a table.

Each bad input runs a real command (``tinysnn train`` or ``tinysnn-search run``) in a fresh folder and
is classified: *clear* (exit 2, one line on stderr, no traceback, no study database left), *traceback*,
or *accepted* (exit 0: the input was taken). The kill rounds start N workers of the digits quick
spec on one SQLite study, SIGKILL one of them mid-run, start a new worker, and count at the end:
COMPLETE trials against the budget (extra or missing), trials left RUNNING or WAITING, duplicate
configurations among the COMPLETE ones, and non-zero exits of the surviving workers. The restart
rounds run one worker, SIGKILL it at random moments and start it again each time, and compare the
finished study with an uninterrupted run of the same spec, draw for draw (parameters, weight seed
and objective values; a retry stands where the trial it replaces was drawn)::

    python bench/faults.py --json bench/out/faults.json            # about 10 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import optuna
from optuna.trial import TrialState

from search._workers import WORKER_KEY

ROOT = Path(__file__).resolve().parent.parent
SPEC = """
[study]
name = "faults"
trials = {trials}
population = 2
seed = {seed}
heartbeat_s = 1
[data]
dataset = "digits"
train_samples = 200
test_samples = 100
[encoding]
time_steps = 50
[space]
n_neurons = [10, 14]
quantize = ["fp32", "qW", "qWN"]
scheme = ["ptq", "itq"]
rounding = ["truncate", "nearest", "stochastic"]
[space.bits.weights]
int = 1
frac = {{ low = 3, high = 10 }}
[space.bits.vmem]
int = 9
frac = {{ low = 2, high = 5 }}
[space.bits.vth]
int = 8
frac = {{ low = 5, high = 7 }}
[checkpoint]
every = 50
"""


def _env() -> Dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def _run(cmd: List[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)


def _idx(path: Path, arr: np.ndarray) -> None:
    path.write_bytes(bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
                     + arr.astype(np.uint8).tobytes())  # fmt: skip


def _fake_mnist(root: Path) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.RandomState(0)
    for split, m in (("train", 40), ("t10k", 20)):
        _idx(raw / f"{split}-images-idx3-ubyte", rng.randint(0, 256, (m, 28, 28)))
        _idx(raw / f"{split}-labels-idx1-ubyte", rng.randint(0, 10, (m,)))
    return raw


def _bad_inputs() -> List[Tuple[str, Callable[[Path], List[str]]]]:
    """(description, setup(folder) -> command) of every bad input."""
    train = [sys.executable, "-m", "tinysnn.cli", "train", "--no-progress", "--energy", "estimate"]
    search = [sys.executable, "-m", "search.cli", "run", "spec.toml", "--no-progress"]

    def spec(*edits: Tuple[str, str]) -> Callable[[Path], List[str]]:
        def setup(folder: Path) -> List[str]:
            text = SPEC.format(trials=2, seed=1)
            for old, new in edits:
                assert old in text, old
                text = text.replace(old, new)
            (folder / "spec.toml").write_text(text)
            return search

        return setup

    def mnist(damage: Callable[[Path], None], extra: Tuple[str, ...] = ()) -> Callable[[Path], List[str]]:
        def setup(folder: Path) -> List[str]:
            raw = _fake_mnist(folder / "data")
            damage(raw)
            return train + ["--dataset", "mnist", "--data-root", str(folder / "data"), *extra]

        return setup

    def cut(name: str, keep: int) -> Callable[[Path], None]:
        return lambda raw: (raw / name).write_bytes((raw / name).read_bytes()[:keep])

    def gz_cut(raw: Path) -> None:
        data = (raw / "train-images-idx3-ubyte").read_bytes()
        (raw / "train-images-idx3-ubyte").unlink()
        (raw / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(data)[:-40])

    def label255(raw: Path) -> None:
        _idx(raw / "train-labels-idx1-ubyte", np.full(40, 255))

    def digits(*args: str) -> Callable[[Path], List[str]]:
        return lambda folder: train + ["--dataset", "digits", *args]

    return [
        ("spec: time_steps is a string", spec(("time_steps = 50", 'time_steps = "50"'))),
        ("spec: 100,000,000 neurons", spec(("n_neurons = [10, 14]", "n_neurons = [100000000]"))),
        ("spec: weights Q0.0 only", spec(("int = 1\nfrac = { low = 3, high = 10 }", "int = 0\nfrac = 0"))),
        ("spec: unknown key", spec(("[encoding]", "[encoding]\ntime_stepz = 3"))),
        ("spec: empty n_neurons", spec(("n_neurons = [10, 14]", "n_neurons = []"))),
        ("spec: trials = 0", spec(("trials = 2", "trials = 0"))),
        ("spec: unknown dataset", spec(('dataset = "digits"', 'dataset = "cifar"'))),
        (
            "spec: ITQ-only V_th coarser than theta+",
            spec(('scheme = ["ptq", "itq"]', 'scheme = "itq"'), ("frac = { low = 5, high = 7 }", "frac = 3")),
        ),
        ("spec: bad storage URL", spec(("heartbeat_s = 1", 'heartbeat_s = 1\nstorage = "runs/x.db"'))),
        ("IDX image file cut to 10 bytes", mnist(cut("train-images-idx3-ubyte", 10))),
        ("IDX image file cut in its body", mnist(cut("train-images-idx3-ubyte", 500))),
        ("gzip IDX file truncated", mnist(gz_cut)),
        ("IDX label byte 255", mnist(label255)),
        (
            "missing dataset",
            lambda folder: train + ["--dataset", "mnist", "--data-root", str(folder / "none")],
        ),
        ("--device tpu", digits("--device", "tpu")),
        ("--neurons 100000000", digits("--neurons", "100000000")),
        ("--quant vmem=Q4.3", digits("--quant", "vmem=Q4.3")),
        ("--quant weights=Q0.0", digits("--quant", "weights=Q0.0")),
        ("--quant vth=Q8.3 --scheme itq", digits("--quant", "weights=Q1.7,vth=Q8.3", "--scheme", "itq")),
        ("--train-samples 0", digits("--train-samples", "0")),
        ("--rounding sideways", digits("--rounding", "sideways")),
        ("--variant lstm", digits("--variant", "lstm")),
        ("--time-steps -5", digits("--time-steps", "-5")),
    ]


def bad_input_round() -> List[Dict[str, object]]:
    rows = []
    for what, setup in _bad_inputs():
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            proc = _run(setup(folder), folder)
            err = proc.stderr.strip().splitlines()
            traceback = "Traceback" in proc.stderr
            left = list(folder.glob("runs/*.db"))
            if proc.returncode == 0:
                kind = "accepted"
            elif traceback:
                kind = "traceback"
            elif (
                proc.returncode == 2
                and len([e for e in err if e.startswith(("tinysnn", "usage"))]) >= 1
                and not left
            ):
                kind = "clear"
            else:
                kind = f"other (exit {proc.returncode})"
            rows.append(
                {
                    "input": what,
                    "result": kind,
                    "stderr_lines": len(err),
                    "message": err[-1][:160] if err else "",
                }
            )
    return rows


def _trials(url: str) -> List[optuna.trial.FrozenTrial]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optuna.load_study(study_name="faults", storage=url).get_trials()


def kill_round(workers: int, budget: int, seed: int) -> Dict[str, object]:
    """N workers on one study; one is SIGKILLed mid-run and a new worker starts in its place."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "spec.toml").write_text(SPEC.format(trials=budget, seed=seed))
        url = f"sqlite:///{folder}/runs/faults.db"
        cmd = [sys.executable, "-m", "search.cli", "run", "spec.toml", "--no-progress"]
        procs = [subprocess.Popen(cmd, cwd=folder, env=_env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for _ in range(workers)]  # fmt: skip
        deadline = time.time() + 300
        while time.time() < deadline:  # until some trial is running, plus a random moment
            if (folder / "runs" / "faults.db").exists():
                try:
                    if any(t.state == TrialState.RUNNING for t in _trials(url)):
                        break
                except Exception:  # noqa: BLE001 - the study is being created
                    pass
            time.sleep(0.2)
        time.sleep(rng.uniform(0.5, 4.0))
        holders = {int(t.system_attrs.get(WORKER_KEY, {}).get("pid", -1)) for t in _trials(url)
                   if t.state == TrialState.RUNNING}  # fmt: skip
        busy = [p for p in procs if p.pid in holders]
        victim = rng.choice(busy or procs)  # a worker that holds a trial, mid-run
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        procs.append(subprocess.Popen(cmd, cwd=folder, env=_env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))  # fmt: skip
        exits = [p.wait(timeout=600) for p in procs if p is not victim]
        trials = _trials(url)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        params = [tuple(sorted(t.params.items())) for t in complete]
        return {
            "workers": workers, "budget": budget, "seed": seed,
            "complete": len(complete),
            "extra": max(0, len(complete) - budget), "missing": max(0, budget - len(complete)),
            "left_running_or_waiting": sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials),
            "duplicates": len(params) - len(set(params)),
            "failed_exits": sum(code != 0 for code in exits),
            "requeued": sum("retry_of" in t.user_attrs for t in trials),
        }  # fmt: skip


def _draws(trials: List[optuna.trial.FrozenTrial]) -> List[tuple]:
    by_number = {t.number: t for t in trials}
    out = []
    for t in trials:
        if t.state == TrialState.COMPLETE:
            first = by_number[t.user_attrs.get("retry_of", t.number)]
            out.append(
                (first.number, tuple(sorted(t.params.items())), tuple(t.values), t.user_attrs["weight_seed"])
            )
    return [d[1:] for d in sorted(out)]


def _start(folder: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "search.cli", "run", "spec.toml", "--no-progress"]
    return subprocess.Popen(
        cmd, cwd=folder, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def restart_round(stops: int, budget: int, seed: int) -> Dict[str, object]:
    """One worker, killed ``stops`` times at random moments and started again, against an uninterrupted run."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for name, kills in (("uninterrupted", 0), ("stopped", stops)):
            folder = Path(tmp) / name
            folder.mkdir()
            # all 1,437 digits images and 100 steps: a population trains for seconds, long enough to be hit
            spec = SPEC.format(trials=budget, seed=seed).replace(
                "train_samples = 200", "train_samples = 1437"
            )
            (folder / "spec.toml").write_text(spec.replace("time_steps = 50", "time_steps = 100"))
            url = f"sqlite:///{folder}/runs/faults.db"
            killed = 0
            while True:
                proc = _start(folder)
                if killed < kills:
                    deadline = time.time() + 300
                    while proc.poll() is None and time.time() < deadline:  # until a trial runs
                        try:
                            if (folder / "runs" / "faults.db").exists() and \
                                    any(t.state == TrialState.RUNNING for t in _trials(url)):  # fmt: skip
                                break
                        except Exception:  # noqa: BLE001 - the study is being created
                            pass
                        time.sleep(0.2)
                    time.sleep(rng.uniform(0.5, 8.0))
                    if proc.poll() is None:
                        proc.send_signal(signal.SIGKILL)
                        proc.wait(timeout=30)
                        killed += 1
                        continue
                code = proc.wait(timeout=900)
                if code != 0:
                    raise SystemExit(f"restart round {seed}: worker exited {code}:\n{proc.communicate()[0]}")
                break
            runs[name] = (_draws(_trials(url)), killed, sum("retry_of" in t.user_attrs for t in _trials(url)))
        (ref, _, _), (got, killed, requeued) = runs["uninterrupted"], runs["stopped"]
        return {
            "budget": budget, "seed": seed, "kills": killed, "requeued": requeued, "draws": len(got),
            "same_as_uninterrupted": sum(a == b for a, b in zip(got, ref)) if len(got) == len(ref) else 0,
        }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kill-rounds", type=int, default=3)
    ap.add_argument("--restart-rounds", type=int, default=2)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    bad = bad_input_round()
    print(f"{'bad input':<42} {'result':<10} {'lines':>5} message")
    for r in bad:
        print(f"{r['input']:<42} {r['result']:<10} {r['stderr_lines']:>5} {r['message']}")
    counts = {k: sum(r["result"] == k for r in bad) for k in ("clear", "traceback", "accepted")}
    print(f"inputs tried {len(bad)}: clear {counts['clear']}, tracebacks {counts['traceback']}, "
          f"accepted {counts['accepted']}, other {len(bad) - sum(counts.values())}")  # fmt: skip
    kills = [kill_round(3, 5 + k, seed=k) for k in range(a.kill_rounds)]
    print(f"\n{'workers':>7} {'budget':>6} {'complete':>8} {'extra':>5} {'missing':>7} {'left':>4} "
          f"{'dup':>3} {'bad exits':>9} {'re-queued':>9}")  # fmt: skip
    for k in kills:
        print(f"{k['workers']:>7} {k['budget']:>6} {k['complete']:>8} {k['extra']:>5} {k['missing']:>7} "
              f"{k['left_running_or_waiting']:>4} {k['duplicates']:>3} {k['failed_exits']:>9} {k['requeued']:>9}")  # fmt: skip
    restarts = [restart_round(3, 10, seed=k) for k in range(a.restart_rounds)]
    print(
        f"\n{'budget':>6} {'seed':>4} {'kills':>5} {'re-queued':>9} {'draws':>5} {'same as uninterrupted':>21}"
    )
    for r in restarts:
        print(f"{r['budget']:>6} {r['seed']:>4} {r['kills']:>5} {r['requeued']:>9} {r['draws']:>5} "
              f"{r['same_as_uninterrupted']:>21}")  # fmt: skip
    if a.json:
        Path(a.json).write_text(
            json.dumps({"bad_inputs": bad, "kills": kills, "restarts": restarts}, indent=2)
        )
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
