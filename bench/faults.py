"""Fault campaign: bad inputs, crafted files, signals and killed workers against the CLI, with tables.

Bad inputs (issues 15 and 24): each case runs a real command (``tinysnn train/infer``,
``tinysnn-search run/status/select/report/export/pack/unpack/dashboard``) in a fresh sandbox
folder, beside a copy of a small trained study where it needs one (trained once per campaign,
:func:`build_base`): crafted packs (built with tarfile and valid checksums, :func:`craft_pack`),
unsafe study names, NaN/inf and huge numbers, mismatched data, damaged, locked and full storage,
re-signed model folders. Each is classified: *clear* (exit 2, one error line on stderr, no
traceback, nothing left behind), *traceback*, *crash* (killed by a signal: exit < 0 or >= 128),
*accepted* (exit 0 for a bad input, or *hung* past its timeout), or unclear (*noisy*: more lines,
*left*: a file or folder left behind, another exit code). The sandbox is snapshot before and after:
a change outside the case's folder (for ``unpack``, outside ``--dest``) is a file written outside;
an existing study or a user's file that changed is a study replaced or a user file touched.
Full disks and read-only folders are small tmpfs mounts (root only; skipped otherwise).

The signal round stops one worker with SIGTERM and SIGHUP during start-up and mid-trial and with
Ctrl-C (SIGINT to its process group) mid-trial, restarts it each time and runs it to the end: each
stop must exit 128 + the signal, say what it stopped and leave no trial RUNNING. The kill rounds
start N workers of the digits quick spec on one SQLite study, SIGKILL one of them mid-run, start a
new worker, and count at the end: COMPLETE trials against the budget (extra or missing), trials left
RUNNING or WAITING, duplicate configurations among the COMPLETE ones, and non-zero exits of the
surviving workers. The restart rounds run one worker, SIGKILL it at random moments and start it
again each time, and compare the finished study with an uninterrupted run of the same spec, draw
for draw (parameters, weight seed and objective values; a retry stands where the trial it replaces
was drawn)::

    python bench/faults.py --json bench/out/faults.json            # all rounds: about 15 minutes on 2 cores
    python bench/faults.py --only bad-inputs                       # the bad inputs alone: minutes
    python bench/faults.py --only bad-inputs --cases pack          # the cases of one group (or name)
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import json
import os
import random
import re
import resource
import shlex
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import optuna
from optuna.trial import TrialState

from search import trial_worker

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


PY = sys.executable
TINYSNN = [PY, "-m", "tinysnn.cli"]
SEARCH = [PY, "-m", "search.cli"]
TRAIN = TINYSNN + ["train", "--no-progress", "--energy", "estimate"]
DIGITS = TRAIN + [
    "--dataset",
    "digits",
    "--neurons",
    "10",
    "--train-samples",
    "50",
    "--test-samples",
    "20",
    "--time-steps",
    "20",
]
STUDY = "tiny"
"""The study of the campaign's base folder, trained once (:func:`build_base`) and copied per case."""
GIB = 1 << 30
OVERSIZE = 64 << 20
"""The oversize pack member: 64 MiB of zeros (sparse, a few KB compressed), under a 32 MiB file-size limit."""


def _env() -> Dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def _run(cmd: List[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)


def _spec(trials: int = 2, seed: int = 1, name: str = STUDY, *edits: Tuple[str, str]) -> str:
    """SPEC as the study ``name``, with ``(old, new)`` text replacements (each must apply)."""
    text = SPEC.format(trials=trials, seed=seed).replace('name = "faults"', f'name = "{name}"')
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def _idx(path: Path, arr: np.ndarray) -> None:
    path.write_bytes(
        bytes([0, 0, 0x08, arr.ndim])
        + struct.pack(">" + "I" * arr.ndim, *arr.shape)
        + arr.astype(np.uint8).tobytes()
    )


def _fake_mnist(root: Path, test_shape: Tuple[int, int] = (28, 28)) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.RandomState(0)
    for split, m, shape in (("train", 40, (28, 28)), ("t10k", 20, test_shape)):
        _idx(raw / f"{split}-images-idx3-ubyte", rng.randint(0, 256, (m,) + shape))
        _idx(raw / f"{split}-labels-idx1-ubyte", rng.randint(0, 10, (m,)))
    return raw


# ---------------------------------------------------------------------------------------------------
# The bad-input round: one real command per case, in a fresh sandbox folder, classified.


class Skip(Exception):
    """A case that cannot run here (the reason is its message)."""


@dataclass
class Case:
    """One bad input: ``setup(ctx)`` lays out the case folder and returns the command to run there."""

    group: str
    name: str
    setup: Callable[["Ctx"], List[str]]
    lines: int = 1
    """Error lines allowed on stderr (argparse's usage block not counted)."""
    timeout: float = 120.0
    either: bool = False
    """Exit 0 is right too (the input is fine when the product does its job), as long as nothing
    is written outside, replaced or deleted."""
    control: bool = False
    """A good input that must succeed (exit 0): it shows the case's setup is sound, e.g. that a pack
    crafted from the real one's parts unchanged is accepted, so the crafted faults are what is refused."""


class Ctx:
    """The sandbox of one case: ``sandbox/work`` is the command's folder, ``sandbox/tmp`` its $TMPDIR.

    Everything under ``sandbox`` is snapshot before and after the command: a change outside
    :attr:`allowed` (default the work folder) is a file written outside its folder; a change inside
    it, for a refused input, is something left behind. Guarded files (an existing study, the
    user's files) must come out byte for byte as they went in.
    """

    def __init__(self, sandbox: Path, base: Path) -> None:
        self.sandbox, self.base = sandbox, base
        self.work, self.tmp = sandbox / "work", sandbox / "tmp"
        self.work.mkdir()
        self.tmp.mkdir()
        self.allowed = self.work
        self.guards: List[Tuple[Path, str]] = []
        self.checks: List[Callable[[str], Optional[str]]] = []
        self.limits: Dict[int, int] = {}
        self.env: Dict[str, str] = {"TMPDIR": str(self.tmp)}
        self.left_ok = False
        self.just_before: List[Callable[[], None]] = []
        self.stack = contextlib.ExitStack()

    def study(self) -> Path:
        """A copy of the base study (runs/tiny.db, runs/tiny/) and its spec; returns the database."""
        shutil.copytree(self.base / "runs", self.work / "runs", ignore=shutil.ignore_patterns(".last.json"))
        shutil.copy(self.base / "spec.toml", self.work / "spec.toml")
        return self.work / "runs" / f"{STUDY}.db"

    def guard(self, path: Path, kind: str) -> Path:
        """``path`` (file or folder) must be unchanged after the command; kind "study" or "user"."""
        self.guards.append((path, kind))
        return path

    def user_files(self, folder: Optional[Path] = None) -> None:
        """The issue's user files, tmp-999999-myfiles/ and checkpoints/pop-1.pt, in ``folder`` (default
        the work folder), guarded: names a cleanup by pattern would take for its own."""
        folder = folder or self.work
        mine = folder / "tmp-999999-myfiles"
        mine.mkdir(parents=True)
        (mine / "thesis.txt").write_text("the user's own file\n")
        (folder / "checkpoints").mkdir()
        (folder / "checkpoints" / "pop-1.pt").write_bytes(b"the user's own checkpoint\n")
        self.guard(mine, "user")
        self.guard(folder / "checkpoints" / "pop-1.pt", "user")

    def tmpfs(self, path: Path, size_kb: int, fill: bool = False, read_only: bool = False) -> Path:
        """A small tmpfs at ``path`` (root only), filled to the last byte with ``fill``; unmounted after."""
        if os.geteuid() != 0:
            raise Skip("needs root to mount a tmpfs (full disk / read-only folder)")
        path.mkdir(parents=True, exist_ok=True)
        got = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if got.returncode != 0:
            raise Skip(f"mount -t tmpfs failed: {got.stderr.strip()}")
        self.stack.callback(lambda: subprocess.run(["umount", "-l", str(path)], capture_output=True))
        if fill:
            fd = os.open(path / ".filler", os.O_WRONLY | os.O_CREAT)
            try:
                while os.write(fd, b"\0" * 4096):
                    pass
            except OSError:  # no space left: full
                pass
            finally:
                os.close(fd)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        return path

    def exclusive_lock(self, db: Path) -> None:
        """Hold ``BEGIN EXCLUSIVE`` on the SQLite file ``db`` while the command runs.

        Taken just before the command, after the guards are read: closing any descriptor of a file
        drops every POSIX lock this process holds on it, so reading ``db`` later would unlock it."""

        def lock() -> None:
            con = sqlite3.connect(str(db), isolation_level=None)
            con.execute("PRAGMA locking_mode=EXCLUSIVE")  # readers too are locked out, in WAL mode as well
            con.execute("BEGIN EXCLUSIVE")
            self.stack.callback(con.close)

        self.just_before.append(lock)

    def busy_port(self) -> int:
        """A port on 127.0.0.1 that a socket of ours listens on while the command runs."""
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        self.stack.callback(sock.close)
        return int(sock.getsockname()[1])


def _tree(root: Path) -> Dict[str, Optional[Tuple[int, int]]]:
    """Every path under ``root``: (size, mtime_ns) of a file, None of a folder."""
    out: Dict[str, Optional[Tuple[int, int]]] = {}
    for folder, dirs, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        for d in dirs:
            out[os.path.normpath(os.path.join(rel, d))] = None
        for f in files:
            st = os.lstat(os.path.join(folder, f))
            out[os.path.normpath(os.path.join(rel, f))] = (st.st_size, st.st_mtime_ns)
    return out


def _digest(path: Path) -> Optional[str]:
    """SHA-256 of a file, or of a folder's files and names; None when it is gone."""
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest() + str(path.stat().st_mtime_ns)
    if path.is_dir():
        h = hashlib.sha256()
        for p in sorted(path.rglob("*")):
            h.update(str(p.relative_to(path)).encode())
            if p.is_file():
                h.update(p.read_bytes())
        return h.hexdigest()
    return None


def _limits(limits: Dict[int, int]) -> Optional[Callable[[], None]]:
    if not limits:
        return None

    def apply() -> None:
        for which, value in limits.items():
            resource.setrlimit(which, (value, value))

    return apply


def _execute(cmd: List[str], ctx: Ctx, timeout: float) -> Tuple[int, str, str, bool]:
    """(exit code, stdout, stderr, timed out) of ``cmd`` in the case folder; a process group killed on timeout."""
    proc = subprocess.Popen(
        cmd,
        cwd=ctx.work,
        env=dict(_env(), **ctx.env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_limits(ctx.limits),
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err, False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return proc.returncode, out, err, True


NUMBA_LINE = re.compile(r"tinysnn: (compiling the numba kernel \w+ |\w+ compiled in )")
"""The lines of a first numba compile (a cold cache: after a change to the kernels' code)."""


def _error_lines(stderr: str) -> List[str]:
    """The lines of stderr that say something: argparse's usage block, numba's compile lines (they
    come with a cold cache only) and empty lines left out."""
    lines = [line for line in stderr.splitlines() if line.strip() and not NUMBA_LINE.match(line)]
    if lines and lines[0].startswith("usage:"):
        lines = lines[next((k for k, line in enumerate(lines) if ": error: " in line), 0) :]
    return lines


ERROR_LINE = re.compile(r"tinysnn(-search)?( [a-z]+)?: error: ")
"""How an error line of ours starts (argparse's says the subcommand: ``tinysnn train: error:``)."""


def _classify(case: Case, rc: int, out: str, err: str, timed_out: bool, left: List[str]) -> str:
    lines = _error_lines(err)
    if case.control:
        return "ok" if rc == 0 and not timed_out and "Traceback (most recent" not in out + err else "broken"
    if timed_out:
        return "hung"
    if "Traceback (most recent call last)" in out + err:
        return "traceback"
    if rc < 0 or rc >= 128:
        return "crash"
    if rc == 0:
        return "ok" if case.either else "accepted"
    if rc != 2:
        return f"exit {rc}"
    said = any(ERROR_LINE.match(line) for line in lines)
    if len(lines) > case.lines or not said:
        return "noisy"
    if left:
        return "left"
    return "clear"


def _companion(path: str, before: Dict[str, Optional[Tuple[int, int]]]) -> bool:
    """Whether ``path`` is SQLite's -wal, -shm or -journal file of a database that was there before
    (reading a study in WAL mode makes them; they are not a study left behind)."""
    stem, _, suffix = path.rpartition("-")
    return suffix in ("wal", "shm", "journal") and stem in before


def _shown(cmd: List[str], sandbox: Path) -> str:
    text = " ".join(shlex.quote(c) for c in cmd)
    for long, short in ((" ".join(TINYSNN), "tinysnn"), (" ".join(SEARCH), "tinysnn-search")):
        text = text.replace(long, short)
    return text.replace(str(sandbox), "$T")


def run_case(case: Case, base: Path) -> Dict[str, object]:
    """Run one case in a fresh sandbox and return its row."""
    row: Dict[str, object] = {"group": case.group, "case": case.name}
    with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        sandbox = Path(tmp)
        ctx = Ctx(sandbox, base)
        with ctx.stack:
            try:
                cmd = case.setup(ctx)
            except Skip as exc:
                row.update(
                    command="",
                    rc=None,
                    result="skipped",
                    seconds=0.0,
                    message=str(exc),
                    left=[],
                    outside=[],
                    replaced=[],
                    user_files=[],
                    problems=[],
                )
                return row
            before = _tree(sandbox)
            guarded = [(p, kind, _digest(p)) for p, kind in ctx.guards]
            for hook in ctx.just_before:
                hook()
            t0 = time.perf_counter()
            rc, out, err, timed_out = _execute(cmd, ctx, case.timeout)
            seconds = time.perf_counter() - t0
            after = _tree(sandbox)
            changed = sorted(p for p in set(before) | set(after) if before.get(p, -1) != after.get(p, -1))
            inside = os.path.relpath(ctx.allowed, sandbox)
            ours = [p for p in changed if p == inside or p.startswith(inside + os.sep)]
            outside = [p for p in changed if p not in ours]
            touched = [(str(p.relative_to(sandbox)), kind) for p, kind, d in guarded if _digest(p) != d]
            problems = [msg for msg in (check(out + err) for check in ctx.checks) if msg]
        left = [] if ctx.left_ok or rc == 0 else [p for p in ours if not _companion(p, before)]
        result = _classify(case, rc, out, err, timed_out, left)
        lines = _error_lines(err)
        message = lines[-1] if result == "traceback" and lines else (lines[0] if lines else "")
        row.update(
            command=_shown(cmd, sandbox),
            rc=rc,
            result=result,
            seconds=round(seconds, 1),
            stderr_lines=len(lines),
            message=message[:200],
            left=left[:5],
            outside=outside[:5],
            replaced=[p for p, kind in touched if kind == "study"],
            user_files=[p for p, kind in touched if kind == "user"],
            problems=problems,
            stderr_tail="" if result in ("clear", "ok") else err[-2000:],
        )
    return row


# ---------------------------------------------------------------------------------------------------
# The base folder: one small trained study, its pack and an exported model, made once per campaign.


def build_base(root: Path) -> Path:
    """Train the 2-trial digits study ``tiny`` in ``root/base``, pack it and export one trial's model."""
    base = root / "base"
    base.mkdir()
    (base / "spec.toml").write_text(_spec() + "\n[constraints]\nmin_accuracy = 0\n")  # every trial feasible
    steps = [
        SEARCH + ["run", "spec.toml", "--no-progress"],
        SEARCH + ["pack", "spec.toml", "--out", f"{STUDY}.tar.gz"],
    ]
    for cmd in steps:
        got = _run(cmd, base)
        if got.returncode != 0:
            raise SystemExit(f"faults: the base study failed: {' '.join(cmd[2:])}:\n{got.stderr[-3000:]}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from optuna.artifacts import get_all_artifact_meta

        storage = f"sqlite:///{base}/runs/{STUDY}.db"
        study = optuna.load_study(study_name=STUDY, storage=storage)
        done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
        trial = next((t for t in done if t.params.get("quantize") != "fp32"), done[0])
        model = [
            m.artifact_id
            for m in get_all_artifact_meta(trial, storage=study._storage)
            if m.filename == "model.pt"
        ]
    cmd = SEARCH + ["export", "spec.toml", "--trial", str(trial.number), "--out", "model"]
    got = _run(cmd, base)
    if got.returncode != 0:
        raise SystemExit(f"faults: export of the base study failed:\n{got.stderr[-3000:]}")
    (base / "base.json").write_text(json.dumps({"trial": trial.number, "model_artifact": model[0]}))
    return base


class Special(NamedTuple):
    """A pack member that is not a file: a link, FIFO or device (its tarfile type)."""

    type: bytes


class _Zeros(io.RawIOBase):
    """``size`` zero bytes, read in chunks (a large pack member without holding it in memory)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[no-untyped-def]
        n = min(len(buf), self.left)
        buf[:n] = b"\0" * n
        self.left -= n
        return n


def pack_parts(pack: Path) -> Tuple[Dict[str, object], Dict[str, bytes]]:
    """(manifest, {member name: bytes}) of a real pack."""
    with tarfile.open(pack, "r:gz") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    return json.loads(files.pop("manifest.json")), files


def craft_pack(
    out: Path,
    template: Dict[str, object],
    members: Dict[str, object],
    listed: Optional[Dict[str, bytes]] = None,
    **manifest: object,
) -> Path:
    """Write a pack: ``members`` (name -> bytes, an int = that many zero bytes, or a :class:`Special`
    link, FIFO or device), and a manifest made from the real pack's ``template`` with
    ``manifest``'s keys replaced (None deletes a key) and a valid entry for every file of ``listed``
    (default: the byte members), in the template's entry shape (the SHA-256, plus its size where
    the format records sizes). Only this function knows the pack format."""
    listed = listed if listed is not None else {k: v for k, v in members.items() if isinstance(v, bytes)}
    entry = next(iter(template["files"].values()))  # type: ignore[attr-defined]

    def described(data: bytes) -> object:
        digest = hashlib.sha256(data).hexdigest()
        if isinstance(entry, str):
            return digest
        return {
            k: (digest if "sha" in k else len(data) if k in ("size", "bytes", "length") else v)
            for k, v in entry.items()
        }

    man = dict(template, files={k: described(v) for k, v in listed.items()})
    for key, value in manifest.items():
        if value is None:
            man.pop(key, None)
        else:
            man[key] = value
    with tarfile.open(out, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(data, bytes):
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            elif isinstance(data, int) and not isinstance(data, bool):
                info.size = data
                tar.addfile(info, io.BufferedReader(_Zeros(data)))
            else:
                info.type = data.type  # type: ignore[attr-defined]
                if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                    info.linkname = "/etc/passwd"
                tar.addfile(info)
        blob = json.dumps(man, indent=1).encode()  # last, as pack_study writes it
        info = tarfile.TarInfo("manifest.json")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    return out


def _verified_pickle() -> bytes:
    """A checksummed model file (search.verified_bytes's container) whose payload is a pickle that
    prints PICKLE-RAN when it is unpickled."""
    import torch

    from search import verified_bytes

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (print, ("PICKLE-RAN",))

    buf = io.BytesIO()
    torch.save({"format": Payload()}, buf)
    blob = buf.getvalue()
    return verified_bytes(blob)


def _resigned(edit: Callable[[Dict[str, object]], None]) -> Callable[[Ctx], List[str]]:
    """A copy of the base model whose model.json is edited and signed again (so the schema check,
    not the checksum, has to refuse it), run with ``tinysnn infer``."""

    def setup(ctx: Ctx) -> List[str]:
        from tinysnn.deploy.model import _checksum

        shutil.copytree(ctx.base / "model", ctx.work / "m")
        meta = json.loads((ctx.work / "m" / "model.json").read_text())
        edit(meta)
        meta["checksum"] = _checksum(meta)
        (ctx.work / "m" / "model.json").write_text(json.dumps(meta, indent=1))
        ctx.left_ok = True  # infer writes nothing; the model folder is the case's own
        return TINYSNN + ["infer", "m", "--dataset", "digits", "--test-samples", "5"]

    return setup


_DELETE = object()
"""The value of :func:`_set` that deletes its key."""


def _set(path: str, value: object) -> Callable[[Dict[str, object]], None]:
    """An edit of model.json: ``a.b.c`` set to ``value`` (the key deleted when value is _DELETE)."""

    def edit(meta: Dict[str, object]) -> None:
        keys = path.split(".")
        node: object = meta
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]  # type: ignore[index]
        last = int(keys[-1]) if isinstance(node, list) else keys[-1]
        if value is _DELETE:
            del node[last]  # type: ignore[attr-defined]
        else:
            node[last] = value  # type: ignore[index]

    return edit


def bad_inputs() -> List[Case]:
    """Every bad input of the campaign (issues 15 and 24)."""

    def spec(*edits: Tuple[str, str], name: str = "faults", extra: str = "") -> Callable[[Ctx], List[str]]:
        def setup(ctx: Ctx) -> List[str]:
            (ctx.work / "spec.toml").write_text(_spec(2, 1, name, *edits) + extra)
            return SEARCH + ["run", "spec.toml", "--no-progress"]

        return setup

    def mnist(damage: Callable[[Path], None], extra: Tuple[str, ...] = ()) -> Callable[[Ctx], List[str]]:
        def setup(ctx: Ctx) -> List[str]:
            raw = _fake_mnist(ctx.work / "data")
            damage(raw)
            return TRAIN + ["--dataset", "mnist", "--data-root", "data", *extra]

        return setup

    def cut(name: str, keep: int) -> Callable[[Path], None]:
        return lambda raw: (raw / name).write_bytes((raw / name).read_bytes()[:keep])

    def gz_cut(raw: Path) -> None:
        data = (raw / "train-images-idx3-ubyte").read_bytes()
        (raw / "train-images-idx3-ubyte").unlink()
        (raw / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(data)[:-40])

    def label255(raw: Path) -> None:
        _idx(raw / "train-labels-idx1-ubyte", np.full(40, 255))

    def digits(*args: str, limit_as: bool = False) -> Callable[[Ctx], List[str]]:
        def setup(ctx: Ctx) -> List[str]:
            if limit_as:
                ctx.limits[resource.RLIMIT_AS] = 8 * GIB
            return DIGITS + list(args)

        return setup

    def on_study(
        *args: str,
        damage: Optional[Callable[[Path], None]] = None,
        lock: bool = False,
        prep: Optional[Callable[[Ctx], List[str]]] = None,
    ) -> Callable[[Ctx], List[str]]:
        """``tinysnn-search ARGS`` beside a copy of the base study (guarded: it must not change)."""

        def setup(ctx: Ctx) -> List[str]:
            db = ctx.study()
            if damage is not None:
                damage(db)
            ctx.guard(db, "study")
            if lock:
                ctx.exclusive_lock(db)
            more = prep(ctx) if prep is not None else []
            return SEARCH + list(args) + more

        return setup

    def damaged_page(db: Path) -> None:
        data = bytearray(db.read_bytes())
        page = 4096
        middle = (len(data) // page // 2) * page
        data[middle : middle + page] = bytes((i * 37 + 11) % 256 for i in range(page))
        db.write_bytes(bytes(data))

    # --- crafted packs: every one is unpacked into work/a/b/dest; a write above dest is "outside"
    def unpack(
        build: Callable[[Ctx, Dict[str, object], Dict[str, bytes]], Path],
        dest: str = "a/b/dest",
        existing: bool = False,
    ) -> Callable[[Ctx], List[str]]:
        def setup(ctx: Ctx) -> List[str]:
            template, files = pack_parts(ctx.base / f"{STUDY}.tar.gz")
            target = ctx.work / dest
            target.mkdir(parents=True, exist_ok=True)
            if existing:  # a study already restored there
                shutil.copy(ctx.base / "runs" / f"{STUDY}.db", target / f"{STUDY}.db")
                ctx.guard(target / f"{STUDY}.db", "study")
            ctx.allowed = target
            victim = ctx.sandbox / "victim.txt"
            victim.write_text("a file of the user, beside the sandbox\n")
            ctx.guard(victim, "user")
            ctx.limits[resource.RLIMIT_FSIZE] = OVERSIZE // 2
            ctx.checks.append(
                lambda text: (
                    "wrote a member out in full (File too large)" if "File too large" in text else None
                )
            )
            pack = build(ctx, template, files)
            return SEARCH + ["unpack", str(pack.relative_to(ctx.work)), "--dest", dest]

        return setup

    def with_member(name: object) -> Callable[[Ctx, Dict[str, object], Dict[str, bytes]], Path]:
        def build(ctx: Ctx, template: Dict[str, object], files: Dict[str, bytes]) -> Path:
            member = str(ctx.sandbox / "victim.txt") if name == "ABS" else str(name)
            return craft_pack(
                ctx.work / "p.tar.gz", template, dict(files, **{member: b"written by the pack\n"})
            )

        return build

    def unlisted(name: str) -> Callable[[Ctx, Dict[str, object], Dict[str, bytes]], Path]:
        def build(ctx: Ctx, template: Dict[str, object], files: Dict[str, bytes]) -> Path:
            return craft_pack(
                ctx.work / "p.tar.gz", template, dict(files, **{name: b"not in the manifest\n"}), files
            )

        return build

    def special(kind: bytes) -> Callable[[Ctx, Dict[str, object], Dict[str, bytes]], Path]:
        def build(ctx: Ctx, template: Dict[str, object], files: Dict[str, bytes]) -> Path:
            members: Dict[str, object] = dict(files, **{"artifacts/special": Special(kind)})
            return craft_pack(
                ctx.work / "p.tar.gz", template, members, dict(files, **{"artifacts/special": b""})
            )

        return build

    def named(
        study: object, **manifest: object
    ) -> Callable[[Ctx, Dict[str, object], Dict[str, bytes]], Path]:
        def build(ctx: Ctx, template: Dict[str, object], files: Dict[str, bytes]) -> Path:
            name = str(ctx.sandbox / "abs-study") if study == "ABS" else study
            return craft_pack(ctx.work / "p.tar.gz", template, files, study=name, **manifest)

        return build

    def oversize(ctx: Ctx, template: Dict[str, object], files: Dict[str, bytes]) -> Path:
        arc = next(k for k in files if k.startswith("artifacts/"))
        return craft_pack(ctx.work / "p.tar.gz", template, dict(files, **{arc: OVERSIZE}), files)

    def real(ctx: Ctx, template: Dict[str, object], files: Dict[str, bytes]) -> Path:
        shutil.copy(ctx.base / f"{STUDY}.tar.gz", ctx.work / "p.tar.gz")
        return ctx.work / "p.tar.gz"

    def truncated(ctx: Ctx, template: Dict[str, object], files: Dict[str, bytes]) -> Path:
        data = (ctx.base / f"{STUDY}.tar.gz").read_bytes()
        (ctx.work / "p.tar.gz").write_bytes(data[: len(data) // 2])
        return ctx.work / "p.tar.gz"

    def dest_is_file(ctx: Ctx) -> List[str]:
        shutil.copy(ctx.base / f"{STUDY}.tar.gz", ctx.work / "p.tar.gz")
        ctx.guard(Path(ctx.work / "taken"), "user").write_text("a file\n")
        return SEARCH + ["unpack", "p.tar.gz", "--dest", "taken"]

    def full_dest(ctx: Ctx) -> List[str]:
        shutil.copy(ctx.base / f"{STUDY}.tar.gz", ctx.work / "p.tar.gz")
        full = ctx.tmpfs(ctx.work / "full", 64, fill=True)
        ctx.allowed = full
        ctx.left_ok = True
        ctx.checks.append(_no_partial(full))
        return SEARCH + ["unpack", "p.tar.gz", "--dest", "full"]

    def small_tmpdir(ctx: Ctx) -> List[str]:
        shutil.copy(ctx.base / f"{STUDY}.tar.gz", ctx.work / "p.tar.gz")
        ctx.env["TMPDIR"] = str(ctx.tmpfs(ctx.sandbox / "tmp", 16))
        return SEARCH + ["unpack", "p.tar.gz", "--dest", "dest"]

    # --- storage and commands
    def spec_on(path_key: str, where: str, size_kb: int = 64) -> Callable[[Ctx], List[str]]:
        """``run`` with the study's database (path_key storage) or artifacts on a full tmpfs."""

        def setup(ctx: Ctx) -> List[str]:
            full = ctx.tmpfs(ctx.work / "full", size_kb, fill=True)
            value = f"sqlite:///{full}/{STUDY}.db" if path_key == "storage" else str(full / where)
            (ctx.work / "spec.toml").write_text(
                _spec(2, 1, STUDY, ("heartbeat_s = 1", f'heartbeat_s = 1\n{path_key} = "{value}"'))
            )
            ctx.left_ok = True
            ctx.checks.append(_no_partial(full))
            return SEARCH + ["run", "spec.toml", "--no-progress"]

        return setup

    def artifacts_under_file(ctx: Ctx) -> List[str]:
        ctx.guard(ctx.work / "blocker", "user").write_text("a file, not a folder\n")
        (ctx.work / "spec.toml").write_text(
            _spec(2, 1, STUDY, ("heartbeat_s = 1", 'heartbeat_s = 1\nartifacts = "blocker/art"'))
        )
        return SEARCH + ["run", "spec.toml", "--no-progress"]

    def report_onto_file(ctx: Ctx) -> List[str]:
        ctx.guard(ctx.work / "taken.txt", "user").write_text("the user's file\n")
        return ["--out", "taken.txt"]

    def read_only_out(ctx: Ctx) -> List[str]:
        ro = ctx.work / "ro"
        if os.geteuid() == 0:
            ctx.tmpfs(ro, 64, read_only=True)  # chmod does not bind root: a read-only mount does
        else:
            ro.mkdir()
            ro.chmod(0o555)
        return ["--out", "ro/model", "--format", "c"]

    def busy(ctx: Ctx) -> List[str]:
        return ["--port", str(ctx.busy_port())]

    def pickled_model(ctx: Ctx) -> List[str]:
        info = json.loads((ctx.base / "base.json").read_text())
        (ctx.work / "runs" / STUDY / "artifacts" / info["model_artifact"]).write_bytes(_verified_pickle())
        ctx.checks.append(lambda text: "the pickle ran" if "PICKLE-RAN" in text else None)
        return ["--trial", str(info["trial"]), "--out", "m"]

    def model(*args: str) -> Callable[[Ctx], List[str]]:
        def setup(ctx: Ctx) -> List[str]:
            shutil.copytree(ctx.base / "model", ctx.work / "m")
            ctx.left_ok = True
            return TINYSNN + list(args)

        return setup

    def in_study_folder(*args: str) -> Callable[[Ctx], List[str]]:
        def setup(ctx: Ctx) -> List[str]:
            ctx.study()
            return SEARCH + list(args)

        return setup

    def dot_dot(ctx: Ctx) -> List[str]:
        ctx.user_files()
        (ctx.work / "spec.toml").write_text(_spec(2, 1, ".."))
        return SEARCH + ["run", "spec.toml", "--no-progress"]

    def mismatched_run(ctx: Ctx) -> List[str]:
        _fake_mnist(ctx.work / "data", test_shape=(7, 9))
        edits = (
            ('dataset = "digits"', 'dataset = "mnist"\nroot = "data"'),
            ("train_samples = 200", "train_samples = 40"),
            ("test_samples = 100", "test_samples = 20"),
        )
        (ctx.work / "spec.toml").write_text(_spec(2, 1, STUDY, *edits))
        return SEARCH + ["run", "spec.toml", "--no-progress"]

    def user_files_in_study_folder(ctx: Ctx) -> List[str]:
        """A run to its end must not clean up files of the user that lie in its study folder."""
        (ctx.work / "spec.toml").write_text(_spec(2, 1, STUDY))
        ctx.user_files(ctx.work / "runs" / STUDY)
        return SEARCH + ["run", "spec.toml", "--no-progress"]

    def nan_images(ctx: Ctx) -> List[str]:
        shutil.copytree(ctx.base / "model", ctx.work / "m")
        ctx.left_ok = True
        code = (
            "import sys, numpy as np\nfrom tinysnn.deploy import encode, load_model\ntry:\n"
            "    encode(np.full((2, 64), np.nan), load_model('m'), np.random.default_rng(0))\n"
            "except ValueError as exc:\n    print(f'tinysnn: error: {exc}', file=sys.stderr)\n    sys.exit(2)"
        )
        return [PY, "-c", code]

    def mismatched_train(ctx: Ctx) -> List[str]:
        _fake_mnist(ctx.work / "data", test_shape=(7, 9))
        return TRAIN + ["--dataset", "mnist", "--data-root", "data", "--neurons", "10", "--time-steps", "20"]

    sql = "sqlite:///runs/tiny.db"
    return [
        # issue 15's round, as it was
        Case("spec", "time_steps is a string", spec(("time_steps = 50", 'time_steps = "50"'))),
        Case("spec", "100,000,000 neurons", spec(("n_neurons = [10, 14]", "n_neurons = [100000000]"))),
        Case("spec", "weights Q0.0 only", spec(("int = 1\nfrac = { low = 3, high = 10 }", "int = 0\nfrac = 0"))),
        Case("spec", "unknown key", spec(("[encoding]", "[encoding]\ntime_stepz = 3"))),
        Case("spec", "empty n_neurons", spec(("n_neurons = [10, 14]", "n_neurons = []"))),
        Case("spec", "trials = 0", spec(("trials = 2", "trials = 0"))),
        Case("spec", "unknown dataset", spec(('dataset = "digits"', 'dataset = "cifar"'))),
        Case("spec", "ITQ-only V_th coarser than theta+, truncate/nearest",  # stochastic rounding is not bound (issue 25)
             spec(('scheme = ["ptq", "itq"]', 'scheme = "itq"'), ("frac = { low = 5, high = 7 }", "frac = 3"),
                  ('rounding = ["truncate", "nearest", "stochastic"]', 'rounding = ["truncate", "nearest"]'))),
        Case("spec", "bad storage URL", spec(("heartbeat_s = 1", 'heartbeat_s = 1\nstorage = "runs/x.db"'))),
        Case("data", "IDX image file cut to 10 bytes", mnist(cut("train-images-idx3-ubyte", 10))),
        Case("data", "IDX image file cut in its body", mnist(cut("train-images-idx3-ubyte", 500))),
        Case("data", "gzip IDX file truncated", mnist(gz_cut)),
        Case("data", "IDX label byte 255", mnist(label255)),
        Case("data", "missing dataset", lambda ctx: TRAIN + ["--dataset", "mnist", "--data-root", "none"], lines=10),
        Case("train", "--device tpu", digits("--device", "tpu")),
        Case("train", "--neurons 100000000", digits("--neurons", "100000000", limit_as=True)),
        Case("train", "--quant vmem=Q4.3 (saturates; allowed since issue 25)", digits("--quant", "vmem=Q4.3"), either=True),
        Case("train", "--quant vmem=SQ0.3 (signed, no integer bit)", digits("--quant", "vmem=SQ0.3")),
        Case("train", "--quant weights=Q0.0", digits("--quant", "weights=Q0.0")),
        Case("train", "--quant vth=Q8.3 --scheme itq", digits("--quant", "weights=Q1.7,vth=Q8.3", "--scheme", "itq")),
        Case("train", "--train-samples 0", digits("--train-samples", "0")),
        Case("train", "--rounding sideways", digits("--rounding", "sideways")),
        Case("train", "--variant lstm", digits("--variant", "lstm")),
        Case("train", "--time-steps -5", digits("--time-steps", "-5")),
        # issue 24, 1: crafted packs
        Case("pack", "control: the real pack into an empty dest", unpack(real), control=True),
        Case("pack", "control: a pack crafted from its parts", unpack(lambda ctx, t, f: craft_pack(ctx.work / "p.tar.gz", t, f)), control=True),
        Case("pack", "member with an absolute path", unpack(with_member("ABS"))),
        Case("pack", "member ../x", unpack(with_member("../x"))),
        Case("pack", "member artifacts/../../../x", unpack(with_member("artifacts/../../../x"))),
        Case("pack", "member ../x, not in the manifest", unpack(unlisted("../x"))),
        Case("pack", "member artifacts/../../../x, not in the manifest", unpack(unlisted("artifacts/../../../x"))),
        Case("pack", "study name ../escaped", unpack(named("../escaped"))),
        Case("pack", "study name /abs/study", unpack(named("ABS"))),
        Case("pack", "study name x/../tiny over dest/tiny.db", unpack(named("x/../tiny"), existing=True)),
        Case("pack", "study name 42 (not a string)", unpack(named(42))),
        Case("pack", "oversize member (64 MiB, sparse)", unpack(oversize)),
        Case("pack", "symlink member", unpack(special(tarfile.SYMTYPE))),
        Case("pack", "hard link member", unpack(special(tarfile.LNKTYPE))),
        Case("pack", "FIFO member", unpack(special(tarfile.FIFOTYPE))),
        Case("pack", "device member", unpack(special(tarfile.CHRTYPE))),
        Case("pack", "truncated pack", unpack(truncated)),
        Case("pack", "manifest without study", unpack(lambda ctx, t, f: craft_pack(ctx.work / "p.tar.gz", t, f, study=None))),
        Case("pack", "manifest without files", unpack(lambda ctx, t, f: craft_pack(ctx.work / "p.tar.gz", t, f, files=None))),
        Case("pack", "database lacks the manifest's study", unpack(named("other"))),
        Case("pack", "replace dest/tiny.db without --force", unpack(real, existing=True)),
        Case("pack", "--dest is a file", dest_is_file),
        Case("pack", "unpack into a full disk", full_dest),
        Case("pack", "small $TMPDIR (16 KiB)", small_tmpdir, either=True),
        # 2: study names
        Case("name", "spec study name ..", dot_dot),
        Case("name", "user files in runs/tiny/ survive a run to its end", user_files_in_study_folder, either=True, timeout=300),
        Case("name", "spec study name .hidden", spec(name=".hidden")),
        Case("name", "spec study name ../escaped", spec(name="../escaped")),
        Case("name", "--study ../tiny", in_study_folder("status", "--storage", sql, "--study", "../tiny")),
        # 3: NaN, inf and sizes
        Case("number", "train --max-rate nan", digits("--max-rate", "nan")),
        Case("number", "train --max-rate nan --backend torch", digits("--max-rate", "nan", "--backend", "torch")),
        Case("number", "train --max-rate inf", digits("--max-rate", "inf")),
        Case("number", "train --theta-plus nan", digits("--theta-plus", "nan")),
        Case("number", "train --w-inh inf", digits("--w-inh", "inf")),
        Case("number", "train --eta-post nan", digits("--eta-post", "nan")),
        Case("number", "train --t-update 2.5", digits("--t-update", "2.5")),
        Case("number", "train --population 100000000", digits("--population", "100000000", limit_as=True)),
        Case("number", "spec max_rate = nan", spec(("time_steps = 50", "time_steps = 50\nmax_rate = nan"))),
        Case("number", "spec dt = nan", spec(("time_steps = 50", "time_steps = 50\ndt = nan"))),
        Case("number", "spec theta_plus = nan", spec(extra="\n[network]\ntheta_plus = nan\n")),
        Case("number", "spec w_inh = inf", spec(extra="\n[network]\nw_inh = inf\n")),
        Case("number", "spec eta_post = nan", spec(extra="\n[learning]\neta_post = nan\n")),
        Case("number", "spec t_update = 2.5", spec(extra="\n[learning]\nt_update = 2.5\n")),
        Case("number", "spec max_memory_norm = nan", spec(extra="\n[constraints]\nmax_memory_norm = nan\n")),
        Case("number", "spec max_energy_j = nan", spec(extra="\n[constraints]\nmax_energy_j = nan\n")),
        Case("number", "spec min_accuracy = nan", spec(extra="\n[constraints]\nmin_accuracy = nan\n")),
        Case("number", "spec heartbeat_s = inf", spec(("heartbeat_s = 1", "heartbeat_s = inf"))),
        Case("number", "spec heartbeat_s = nan", spec(("heartbeat_s = 1", "heartbeat_s = nan"))),
        Case("number", "spec stale_after_s = nan", spec(("heartbeat_s = 1", "heartbeat_s = 1\nstale_after_s = nan"))),
        Case("number", "spec seed = 2**63 - 1", spec(("seed = 1", "seed = 9223372036854775807"))),
        Case("number", "spec time_steps = 1000000000", spec(("time_steps = 50", "time_steps = 1000000000")), timeout=90),
        Case("number", "select --mu inf", in_study_folder("select", "spec.toml", "--mu", "inf")),
        Case("number", "select --nu nan", in_study_folder("select", "spec.toml", "--nu", "nan")),
        # 4: mismatched data
        Case("data", "train: 7x9 test images, 28x28 train", mismatched_train),
        Case("data", "run: 7x9 test images, 28x28 train", mismatched_run),
        Case("data", "train: 15 test labels for 20 test images",
             mnist(lambda raw: _idx(raw / "t10k-labels-idx1-ubyte", np.zeros(15)), ("--neurons", "10", "--time-steps", "20"))),
        Case("data", "deploy.encode of NaN images (python API: a ValueError is right)", nan_images),
        # storage
        Case("storage", "status: damaged SQLite page", on_study("status", "spec.toml", damage=damaged_page)),
        Case("storage", "export: damaged SQLite page", on_study("export", "spec.toml", "--out", "m", damage=damaged_page)),
        Case("storage", "run: damaged SQLite page", on_study("run", "spec.toml", "--no-progress", damage=damaged_page)),
        Case("storage", "status: locked database", on_study("status", "spec.toml", lock=True), timeout=180),
        Case("storage", "run: locked database", on_study("run", "spec.toml", "--no-progress", lock=True), timeout=180),
        Case("storage", "run --storage sqlite:///", lambda ctx: spec()(ctx) + ["--storage", "sqlite:///"], timeout=90),
        Case("storage", "status --storage sqlite:///", lambda ctx: SEARCH + ["status", "--storage", "sqlite:///"]),
        Case("storage", "run --storage ''", lambda ctx: spec()(ctx) + ["--storage", ""]),
        Case("storage", "status --storage ''", lambda ctx: SEARCH + ["status", "--storage", ""]),
        Case("storage", "status --storage '' beside a study", in_study_folder("status", "--storage", "")),
        Case("storage", "train --quant ''", digits("--quant", "")),
        Case("storage", "run: database on a full disk", spec_on("storage", "")),
        Case("storage", "run: artifacts on a full disk", spec_on("artifacts", "art"), lines=2),  # + the re-queued line
        # commands
        Case("command", "report --out an existing file", on_study("report", "spec.toml", prep=report_onto_file)),
        Case("command", "dashboard --port 70000", on_study("dashboard", "spec.toml", "--port", "70000"), timeout=30),
        Case("command", "dashboard --host 256.1.1.1", on_study("dashboard", "spec.toml", "--host", "256.1.1.1"), timeout=30),
        Case("command", "dashboard on a port in use", on_study("dashboard", "spec.toml", prep=busy), timeout=30),
        Case("command", "spec artifacts under a file", artifacts_under_file),
        Case("command", "export --format c into a read-only folder", on_study("export", "spec.toml", prep=read_only_out)),
        Case("command", "infer --seed -1", model("infer", "m", "--dataset", "digits", "--test-samples", "5", "--seed", "-1")),
        Case("command", "status with no study here", lambda ctx: SEARCH + ["status"]),
        # model folders: re-signed model.json
        Case("model", "control: re-signed without an edit", _resigned(lambda meta: None), control=True),
        Case("model", "rounding 'sideways'", _resigned(_set("rounding", "sideways"))),
        Case("model", "weights format of 0 bits", _resigned(_set("formats.weights", {"int_bits": 0, "frac_bits": 0, "signed": False, "text": "UQ0.0"}))),
        Case("model", "formats disagree with the payload", _resigned(_set("formats.weights", {"int_bits": 2, "frac_bits": 6, "signed": False, "text": "UQ2.6"}))),
        Case("model", "label 10 of 10 classes", _resigned(_set("labels.0", 10))),
        Case("model", "time_steps 0", _resigned(_set("encoding.time_steps", 0))),
        Case("model", "time_steps 1000000000", _resigned(_set("encoding.time_steps", 1000000000)), timeout=90),
        Case("model", "max_rate NaN", _resigned(_set("encoding.max_rate", float("nan")))),
        Case("model", "payload missing", _resigned(_set("payload", _DELETE))),
        Case("model", "formats missing", _resigned(_set("formats", _DELETE))),
        Case("model", "pickle in a trial's model.pt (export)", on_study("export", "spec.toml", prep=pickled_model)),
    ]  # fmt: skip


def _no_partial(full: Path) -> Callable[[str], Optional[str]]:
    """A check: no file but our filler is left on the full disk ``full``."""

    def check(text: str) -> Optional[str]:
        files = [
            f"{p.relative_to(full)} ({p.stat().st_size} B)"
            for p in full.rglob("*")
            if p.is_file() and p.name != ".filler"
        ]
        return f"files left on the full disk: {', '.join(files[:3])}" if files else None

    return check


def bad_input_round(base: Path, only: Optional[str] = None) -> List[Dict[str, object]]:
    """Run every case (or those whose group or name contains ``only``), printing each row as it ends."""
    rows = []
    for case in bad_inputs():
        if only and only not in case.group and only not in case.name:
            continue
        row = run_case(case, base)
        rows.append(row)
        print(_row_line(row), flush=True)
    return rows


COUNTERS = ("tracebacks", "crashes", "accepted", "unclear", "outside", "replaced", "user_files", "problems")


def summary(rows: List[Dict[str, object]]) -> Dict[str, int]:
    """The counters of the issue's "Done when": each must be 0 (skipped cases are counted apart)."""
    res = [r["result"] for r in rows]
    return {
        "cases": len(rows),
        "clear": res.count("clear") + res.count("ok"),
        "skipped": res.count("skipped"),
        "tracebacks": res.count("traceback"),
        "crashes": res.count("crash"),
        "accepted": res.count("accepted") + res.count("hung"),
        "unclear": sum(str(r).startswith(("exit", "noisy", "left")) for r in res),
        "controls_broken": res.count("broken"),
        "outside": sum(bool(r["outside"]) for r in rows),
        "replaced": sum(bool(r["replaced"]) for r in rows),
        "user_files": sum(bool(r["user_files"]) for r in rows),
        "problems": sum(bool(r["problems"]) for r in rows),
    }


def _row_line(r: Dict[str, object]) -> str:
    flags = []
    for key, tag in (
        ("outside", "OUTSIDE"),
        ("replaced", "REPLACED"),
        ("user_files", "USER FILES"),
        ("left", "left"),
        ("problems", "PROBLEM"),
    ):
        if r.get(key):
            flags.append(f"{tag} {r[key]}")
    extra = ("  [" + "; ".join(flags) + "]") if flags else ""
    rc = "" if r["rc"] is None else r["rc"]
    return f"{r['group']:<8} {str(r['case'])[:44]:<44} {rc!s:>4} {r['result']:<9} {r['message']}{extra}"


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
        procs = [
            subprocess.Popen(
                cmd, cwd=folder, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            for _ in range(workers)
        ]
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
        holders = {(trial_worker(t) or {}).get("pid") for t in _trials(url) if t.state == TrialState.RUNNING}
        busy = [p for p in procs if p.pid in holders]
        victim = rng.choice(busy or procs)  # a worker that holds a trial, mid-run
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        procs.append(
            subprocess.Popen(
                cmd, cwd=folder, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
        exits = [p.wait(timeout=600) for p in procs if p is not victim]
        trials = _trials(url)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        params = [tuple(sorted(t.params.items())) for t in complete]
        return {
            "workers": workers,
            "budget": budget,
            "seed": seed,
            "complete": len(complete),
            "extra": max(0, len(complete) - budget),
            "missing": max(0, budget - len(complete)),
            "left_running_or_waiting": sum(
                t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials
            ),
            "duplicates": len(params) - len(set(params)),
            "failed_exits": sum(code != 0 for code in exits),
            "requeued": sum("retry_of" in t.user_attrs for t in trials),
        }


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
                            if (folder / "runs" / "faults.db").exists() and any(
                                t.state == TrialState.RUNNING for t in _trials(url)
                            ):
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
            "budget": budget,
            "seed": seed,
            "kills": killed,
            "requeued": requeued,
            "draws": len(got),
            "same_as_uninterrupted": sum(a == b for a, b in zip(got, ref)) if len(got) == len(ref) else 0,
        }


STOPS = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}
"""The exit status of a run stopped by each signal (128 + its number): the intended exits."""


def _wait_running(proc: subprocess.Popen, folder: Path, url: str) -> bool:
    """Wait until ``proc`` holds a RUNNING trial of the study in ``folder`` (False if it ended first);
    a trial another worker left RUNNING does not count."""
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        try:
            if (folder / "runs" / "faults.db").exists() and any(
                t.state == TrialState.RUNNING and (trial_worker(t) or {}).get("pid") == proc.pid
                for t in _trials(url)
            ):
                return True
        except Exception:  # noqa: BLE001 - the study is being created
            pass
        time.sleep(0.2)
    return False


def _traceback_text(text: str) -> str:
    """The first traceback in ``text`` with the line before it (``Exception ignored in ...``), or ""."""
    at = text.find("Traceback (most recent call last)")
    if at < 0:
        return ""
    start = text.rfind("\n", 0, max(at - 1, 0)) + 1
    return text[start : at + 3000]


def signal_round(stops: List[Tuple[int, str]], budget: int, seed: int) -> List[Dict[str, object]]:
    """One worker of one study, stopped by each ``(signal, moment)`` in turn and started again, then
    run to the end. ``moment``: "start-up" (0.2-1.5 s after the start, before any trial) or "trial"
    (0.2-4 s after a trial starts). The signal goes to the worker's process group, as Ctrl-C's
    does. Each stop must exit 128 + the signal, with no traceback and a last line on stderr that
    says what was stopped, and leave no trial RUNNING; the last row is the run to the end."""
    rng = random.Random(seed)
    rows: List[Dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec = SPEC.format(trials=budget, seed=seed).replace("train_samples = 200", "train_samples = 1437")
        (folder / "spec.toml").write_text(spec.replace("time_steps = 50", "time_steps = 100"))
        url = f"sqlite:///{folder}/runs/faults.db"
        cmd = SEARCH + ["run", "spec.toml", "--no-progress"]
        for signum, moment in stops + [(0, "none")]:
            proc = subprocess.Popen(
                cmd,
                cwd=folder,
                env=_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            sent = False
            if signum and (moment == "start-up" or _wait_running(proc, folder, url)):
                time.sleep(rng.uniform(0.2, 1.5) if moment == "start-up" else rng.uniform(0.2, 4.0))
                if proc.poll() is None:
                    os.killpg(proc.pid, signum)
                    sent = True
            out, err = proc.communicate(timeout=900)
            lines = _error_lines(err)
            try:
                running = sum(t.state == TrialState.RUNNING for t in _trials(url))
            except Exception:  # noqa: BLE001 - stopped before the study existed
                running = 0
            want = STOPS.get(signum, 0) if sent else 0
            rows.append(
                {
                    "signal": signal.Signals(signum).name if signum else "none",
                    "moment": moment,
                    "sent": sent,
                    "rc": proc.returncode,
                    "expected_rc": want,
                    "traceback": "Traceback (most recent call last)" in out + err,
                    "last_line": lines[-1][:200] if lines else "",
                    "running_left": running,
                    "traceback_text": _traceback_text(out + err),
                }
            )
        trials = _trials(url)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        params = [tuple(sorted(t.params.items())) for t in complete]
        rows[-1].update(complete=len(complete), budget=budget, duplicates=len(params) - len(set(params)))
    return rows


def _signal_ok(r: Dict[str, object]) -> bool:
    said = r["signal"] == "none" or not r["sent"] or str(r["last_line"]).startswith("tinysnn-search: ")
    return bool(r["rc"] == r["expected_rc"] and not r["traceback"] and not r["running_left"] and said)


ROUNDS = ("bad-inputs", "signals", "kills", "restarts")


def main() -> int:
    """Run the rounds asked for; exit 1 when any of them found a fault, else 0."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--only",
        nargs="+",
        choices=ROUNDS,
        default=list(ROUNDS),
        help="the rounds to run (default all; bad-inputs alone takes minutes)",
    )
    ap.add_argument("--cases", default=None, help="bad inputs whose group or name contains this text")
    ap.add_argument(
        "--interrupts", type=int, default=9, help="Ctrl-Cs (SIGINT) of the signal round, mid-trial"
    )
    ap.add_argument("--kill-rounds", type=int, default=3)
    ap.add_argument("--restart-rounds", type=int, default=2)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    record: Dict[str, object] = {}
    faults = 0
    if "bad-inputs" in a.only:
        with tempfile.TemporaryDirectory(prefix="faults-base-") as tmp:
            base = build_base(Path(tmp))
            print(f"{'group':<8} {'case':<44} {'rc':>4} {'result':<9} message")
            bad = bad_input_round(base, a.cases)
        counts = summary(bad)
        print(", ".join(f"{k} {v}" for k, v in counts.items()))
        failing = [
            r for r in bad if r["result"] not in ("clear", "ok", "skipped") or any(r[k] for k in COUNTERS[4:])
        ]
        print(
            f"{len(failing)} of {len(bad)} cases fail"
            + (": " + "; ".join(str(r["case"]) for r in failing) if failing else "")
        )
        record.update(bad_inputs=bad, bad_input_summary=counts)
        faults += len(failing)
    if "signals" in a.only:
        stops = [
            (signal.SIGTERM, "start-up"),
            (signal.SIGHUP, "start-up"),
            (signal.SIGTERM, "trial"),
            (signal.SIGHUP, "trial"),
        ] + [(signal.SIGINT, "trial")] * a.interrupts
        sigs = signal_round(stops, budget=6, seed=0)
        print(
            f"\n{'signal':<8} {'moment':<9} {'sent':<5} {'rc':>4} {'want':>4} {'tb':<3} {'running':>7}  last line"
        )
        for r in sigs:
            print(
                f"{r['signal']:<8} {r['moment']:<9} {r['sent']!s:<5} {r['rc']:>4} {r['expected_rc']:>4} "
                f"{'yes' if r['traceback'] else 'no':<3} {r['running_left']:>7}  {r['last_line']}"
            )
        end = sigs[-1]
        print(
            f"stops {len(sigs) - 1}, as intended {sum(_signal_ok(r) for r in sigs[:-1])}; then to the end: "
            f"{end['complete']} complete of {end['budget']}, {end['duplicates']} duplicates, exit {end['rc']}"
        )
        record["signals"] = sigs
        faults += (
            sum(not _signal_ok(r) for r in sigs)
            + (end["complete"] != end["budget"])
            + bool(end["duplicates"])
        )
    if "kills" in a.only:
        kills = [kill_round(3, 5 + k, seed=k) for k in range(a.kill_rounds)]
        print(
            f"\n{'workers':>7} {'budget':>6} {'complete':>8} {'extra':>5} {'missing':>7} {'left':>4} "
            f"{'dup':>3} {'bad exits':>9} {'re-queued':>9}"
        )
        for k in kills:
            print(
                f"{k['workers']:>7} {k['budget']:>6} {k['complete']:>8} {k['extra']:>5} {k['missing']:>7} "
                f"{k['left_running_or_waiting']:>4} {k['duplicates']:>3} {k['failed_exits']:>9} {k['requeued']:>9}"
            )
        record["kills"] = kills
        keys = ("extra", "missing", "left_running_or_waiting", "duplicates", "failed_exits")
        faults += sum(any(k[key] for key in keys) for k in kills)
    if "restarts" in a.only:
        restarts = [restart_round(3, 10, seed=k) for k in range(a.restart_rounds)]
        print(
            f"\n{'budget':>6} {'seed':>4} {'kills':>5} {'re-queued':>9} {'draws':>5} {'same as uninterrupted':>21}"
        )
        for r in restarts:
            print(
                f"{r['budget']:>6} {r['seed']:>4} {r['kills']:>5} {r['requeued']:>9} {r['draws']:>5} "
                f"{r['same_as_uninterrupted']:>21}"
            )
        record["restarts"] = restarts
        faults += sum(r["same_as_uninterrupted"] != r["draws"] or r["draws"] != r["budget"] for r in restarts)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(record, indent=2))
        print(f"wrote {a.json}")
    print(f"faults found: {faults}")
    return 1 if faults else 0


if __name__ == "__main__":
    sys.exit(main())
