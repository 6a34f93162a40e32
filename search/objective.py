"""Trials -> (accuracy, memory_norm, energy): train a population of trials, quantize, evaluate, score.

The three objectives, in this order, named with ``study.set_metric_names``:

* ``accuracy`` (maximize): all-activity accuracy of the quantized network on the test split (or the
  validation split when ``data.validation > 0``), in [0, 1].
* ``memory_norm`` (minimize): M / M_0, Eq. 4 (docs/method.md §3), in the spec's convention (compact by default);
  M_0 is the FP32 reference network (the Diehl & Cook baseline at the largest size searched).
* ``energy`` (minimize): joules per inference sample. ``objectives.energy = "opcount"`` (default) uses
  the op-count model at the trial's bit widths; ``"meter"`` measures each network alone on
  ``solo_samples`` test samples with the best meter (an estimate where none exists). The default is
  the op-count figure because it is deterministic, comparable across machines that share one study,
  and sensitive to bit width as a fixed-point chip is; a meter on this simulator measures FP32
  arithmetic whatever the format, and a population's reading is shared by its P networks. Both
  figures are always recorded on the trial.
"""

from __future__ import annotations

import inspect
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from tinysnn import data as D
from tinysnn.config import to_dict
from tinysnn.energy import EnergyMeter, MeterOptions, make_meter
from tinysnn.memory import memory_breakdown, reference_memory
from tinysnn.network import Population, build_population, resolve_device
from tinysnn.quant import PARAMS, format_text
from tinysnn.simulate import STREAM_TEST, Simulator
from tinysnn.train import infer_counts, run

from ._checkpoint import Checkpoint, save_checkpoint, write_verified
from ._images import trial_title, write_pictures
from .errors import SpecError
from .space import TrialConfig
from .spec import StudySpec

__all__ = ["Context", "Member", "Outcome", "evaluate_population", "load_context"]

APPROXIMATE = (
    "sl_stdp is an APPROXIMATE baseline: our reading of SL-STDP (Srinivasan et al. 2017), not checked"
)
_PAUSE_ENV = (
    "TINYSNN_SEARCH_TEST_PAUSE"  # "N:marker": after the N-th checkpoint, touch marker and hang (tests)
)
_saves = [0]


@dataclass
class Member:
    """One network of a population: its trial, configs and weight seed (``live`` = this worker tells it)."""

    number: int
    params: Dict[str, Any]
    config: TrialConfig
    seed: int
    live: bool = True


@dataclass
class Outcome:
    """What one trial achieved: objective values, user attributes and artifact files."""

    number: int
    values: Tuple[float, float, float]
    attrs: Dict[str, Any]
    files: Dict[str, Path] = field(default_factory=dict)


@dataclass
class Context:
    """Data, device and meter shared by every population of a run."""

    spec: StudySpec
    train: D.Split
    test: D.Split
    assign: Optional[D.Split]
    device: torch.device
    meter: EnergyMeter
    work_dir: Path
    reference_bits: int
    progress: bool = True

    @property
    def n_input(self) -> int:
        return self.train.n_input


def load_context(spec: StudySpec, work_dir: Path, progress: bool = True) -> Context:
    """Load the dataset, resolve the device and make the meter, failing with the spec key on error.

    Raises:
        SpecError: for a missing dataset (the message says where it looked and how to get it), sample
            counts above the split, an unavailable device or meter.
    """
    dt = spec.data
    try:
        splits = D.load(dt.dataset, dt.root, download=dt.download, validation=dt.validation)
    except D.DatasetError as exc:
        raise SpecError(f"data.dataset = {dt.dataset!r} (data.root = {dt.root!r}): {exc}") from None
    except ValueError as exc:
        raise SpecError(f"[data]: {exc}") from None
    evaluation = splits.validation if dt.validation else splits.test
    assert evaluation is not None
    try:
        train = splits.train.take(dt.train_samples)
        test = evaluation.take(dt.test_samples)
        assign = splits.train.take(dt.assign_samples) if dt.assign_samples is not None else None
    except ValueError as exc:
        raise SpecError(f"[data] train_samples / test_samples / assign_samples: {exc}") from None
    try:
        device = resolve_device(spec.study.device)
    except ValueError as exc:
        raise SpecError(f"study.device: {exc}") from None
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    try:
        options = MeterOptions(idle_seconds=spec.objectives.idle_seconds, sync=sync)
        meter = make_meter(spec.objectives.meter, options)
    except Exception as exc:  # EnergyMeterError: the named meter is not on this machine
        raise SpecError(f"objectives.meter = {spec.objectives.meter!r}: {exc}") from None
    ob = spec.objectives
    ref_n = ob.reference_neurons or spec.space.max_neurons
    ref = reference_memory(ref_n, train.n_input, ob.memory_convention, ob.reference_variant)
    return Context(spec, train, test, assign, device, meter, Path(work_dir), ref.bits, progress)


def _maybe_pause() -> None:
    """Test hook: hang after the N-th checkpoint so that a test can SIGKILL a worker mid-trial."""
    value = os.environ.get(_PAUSE_ENV)
    if not value:
        return
    count, _, marker = value.partition(":")
    _saves[0] += 1
    if _saves[0] == int(count):
        Path(marker).write_text(str(os.getpid()))
        while True:
            time.sleep(1)


def evaluate_population(
    ctx: Context,
    members: Sequence[Member],
    checkpoint_path: Optional[Path] = None,
    resume: Optional[Checkpoint] = None,
    log: Callable[[str], None] = lambda s: None,
) -> List[Outcome]:
    """Train ``members`` as one population (from ``resume`` if given), evaluate and score each.

    Args:
        ctx: shared data, device and meter.
        members: the networks, in population order (their configs share the variant).
        checkpoint_path: where to save the population every ``checkpoint.every`` samples and after
            training; None disables checkpoints.
        resume: a checkpoint of exactly these members to continue from.
        log: receives one line per checkpoint.

    Returns:
        One outcome per live member, in population order.
    """
    spec = ctx.spec
    cfgs = [m.config for m in members]
    pop = build_population([c.network for c in cfgs], [c.learning for c in cfgs], [m.seed for m in members],
                           ctx.device)  # fmt: skip
    total = len(ctx.train) * spec.data.epochs
    start, energy_train = 0, 0.0
    spikes = torch.zeros(len(members), dtype=torch.float64)
    if resume is not None:
        pop.load_state_dict(resume.state)
        start, energy_train = int(resume.next_sample), float(resume.energy_train_j)
        spikes = torch.tensor(resume.spikes, dtype=torch.float64)
    every = spec.checkpoint.every
    meter = ctx.meter
    fingerprint = spec.fingerprint()

    sums: List[Optional[torch.Tensor]] = [resume.sums if resume is not None else None]

    def save(next_sample: int, population: Population) -> None:
        nonlocal energy_train
        if checkpoint_path is None:
            return
        energy_train += meter.stop().joules
        meter.start()
        ckpt = Checkpoint(fingerprint, [m.number for m in members], [dict(m.params) for m in members],
                          [m.seed for m in members], next_sample, total, spikes.tolist(), energy_train,
                          population.state_dict(), None if sums[0] is None else sums[0].clone())  # fmt: skip
        save_checkpoint(checkpoint_path, ckpt)
        log(f"checkpoint at sample {next_sample}/{total}: {checkpoint_path}")
        _maybe_pause()

    def on_sample(i: int, counts: torch.Tensor, *rest: Any) -> None:
        spikes.add_(counts.sum(dim=1).to(torch.float64).cpu())
        if rest and isinstance(rest[0], torch.Tensor):  # tinysnn's running sums since sample 0
            sums[0] = rest[0]
        if every and (i + 1) % every == 0 and i + 1 < total:
            save(i + 1, pop)

    def after_train(population: Population) -> None:
        nonlocal energy_train
        if total > start:
            save(total, population)
        energy_train += meter.stop().joules
        meter.start()

    extra: Dict[str, Any] = {}
    if resume is not None and resume.sums is not None and "start_sums" in inspect.signature(run).parameters:
        extra["start_sums"] = resume.sums
    dt = spec.data
    # Stochastic rounding draws from streams keyed by each network's own seed (tinysnn.streams), so a
    # trial's result depends neither on the global RNG nor on the other trials of its population.
    meter.start()
    try:
        result = run(pop, spec.encoding, ctx.train, ctx.test, assign=ctx.assign, epochs=dt.epochs,
                     seed=spec.study.seed, quant=[c.quant for c in cfgs], progress=ctx.progress,
                     start=start, on_sample=on_sample, after_train=after_train, **extra)  # fmt: skip
    finally:
        reading = meter.stop() if meter.running else None
    assert reading is not None
    n_inf = len(ctx.assign if ctx.assign is not None else ctx.train) + len(ctx.test)
    shared = {
        "energy_meter": reading.meter,
        "energy_is_estimate": bool(reading.is_estimate),
        "energy_meter_note": (getattr(meter, "selection_note", "") or reading.note)[:500],
        "idle_power_w": reading.idle_power_w,
        "energy_train_j": energy_train / len(members),
        "energy_infer_j_per_sample": reading.joules / max(n_inf, 1) / len(members),
        "energy_share": f"population of {len(members)}: the meter's joules / {len(members)}",
        "population_size": len(members),
        "device": result.device,
        "backend": result.backend,
        "wall_seconds": result.wall_seconds,
        "train_seconds": result.train_seconds,
        "train_samples_per_s": result.train_samples_per_s,
        "infer_samples_per_s": result.infer_samples_per_s,
        "train_samples": result.train_samples,
        "epochs": result.epochs,
        "test_samples": result.test_samples,
        "eval_split": result.eval_split,
        "resumed_from_sample": start,
    }
    outcomes = []
    for k, m in enumerate(members):
        if m.live:
            outcomes.append(_score(ctx, pop, result, k, m, shared, float(spikes[k]) / max(total, 1)))
    return outcomes


def _solo_energy(ctx: Context, pop: Population, k: int, backend: str) -> float:
    """Joules per inference sample of network ``k`` run alone under the meter."""
    images = ctx.test.images[: ctx.spec.objectives.solo_samples]
    sim = Simulator(pop.select(k), ctx.spec.encoding, seed=ctx.spec.study.seed, backend=backend)
    ctx.meter.start()
    try:
        infer_counts(sim, images, STREAM_TEST, progress=False)
    finally:
        reading = ctx.meter.stop()
    return reading.joules / max(int(images.shape[0]), 1)


def config_attrs(cfg: TrialConfig) -> Dict[str, Any]:
    """What a trial trains, as user attributes: set when it is asked (so a running trial shows its
    formats in `tinysnn-search status` and the dashboard) and again with its results."""
    quant = cfg.quant
    attrs: Dict[str, Any] = {
        "variant": cfg.network.variant.value,
        "n_neurons": cfg.network.n_neurons,
        "quant": cfg.label,
        "scheme": quant.scheme.value if quant is not None else "fp32",
        "rounding": quant.rounding.value if quant is not None else "",
        "quant_text": quant.to_text() if quant is not None else "fp32",
    }
    for param in PARAMS:
        attrs[f"{param}_format"] = format_text(quant.format_of(param)) if quant is not None else "fp32"
    return attrs


def _score(
    ctx: Context, pop: Population, result: Any, k: int, m: Member, shared: Dict[str, Any], spikes_train: float
) -> Outcome:
    spec, net, cfg = ctx.spec, result.networks[k], m.config
    quant = cfg.quant
    variant, n = cfg.network.variant.value, cfg.network.n_neurons
    conv = spec.objectives.memory_convention
    mems = {c: memory_breakdown(variant, n, ctx.n_input, quant, c) for c in ("compact", "as_simulated")}
    memory_norm = mems[conv].bits / ctx.reference_bits
    op_train, op_infer = net.op_energy_train_j_per_sample, net.op_energy_infer_j_per_sample
    attrs: Dict[str, Any] = dict(shared)
    attrs.update(config_attrs(cfg))
    attrs.update({
        "weight_seed": m.seed,
        "population_position": k,
        "accuracy": net.accuracy,
        "accuracy_proportion": net.accuracy_proportion,
        "no_prediction": net.no_prediction,
        "spikes_per_sample_train": spikes_train,
        "spikes_per_sample_test": net.spikes_per_sample_test,
        "memory_norm": memory_norm,
        "memory_convention": conv,
        "memory_bytes_compact": mems["compact"].bytes,
        "memory_bytes_as_simulated": mems["as_simulated"].bytes,
        "memory_reference_bytes": -(-ctx.reference_bits // 8),
        "energy_objective": spec.objectives.energy,
        "energy_opcount_train_j_per_sample": op_train,
        "energy_opcount_infer_j_per_sample": op_infer,
        "energy_opcount_source": "tinysnn",
    })  # fmt: skip
    if variant == "sl_stdp":
        attrs["note"] = APPROXIMATE
    energy = op_infer
    if spec.objectives.energy == "meter":
        energy = _solo_energy(ctx, pop, k, result.backend)
        attrs["energy_solo_infer_j_per_sample"] = energy
    attrs = {key: (None if isinstance(v, float) and not math.isfinite(v) else v) for key, v in attrs.items()}
    files = _write_files(ctx, pop, result, k, m, attrs)
    return Outcome(m.number, (float(net.accuracy), float(memory_norm), float(energy)), attrs, files)


def _write_files(
    ctx: Context, pop: Population, result: Any, k: int, m: Member, attrs: Dict[str, Any]
) -> Dict[str, Path]:
    folder = ctx.work_dir / f"trial-{m.number}"
    folder.mkdir(parents=True, exist_ok=True)
    net = result.networks[k]
    n = m.config.network.n_neurons
    weights = pop.weights[k, :, :n].detach().cpu().numpy()
    title = trial_title(m.number, attrs)
    files = write_pictures(folder, title, weights, ctx.train.image_shape, net.confusion, net.accuracy)
    files["model"] = folder / "model.pt"
    labels = getattr(net, "assignment", None)
    model = {
        "format": "tinysnn-search-model/1",
        "study": ctx.spec.study.name,
        "trial": m.number,
        "dataset": result.dataset,
        "network": to_dict(m.config.network),
        "learning": to_dict(m.config.learning),
        "encoding": to_dict(ctx.spec.encoding),
        "quant": attrs["quant_text"],
        "accuracy": net.accuracy,
        "labels": labels,
        "state": pop.select(k).state_dict(),
    }
    write_verified(files["model"], model)  # checksummed: a damaged copy is refused by export
    return files
