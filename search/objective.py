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

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from tinysnn import data as D
from tinysnn.config import to_dict
from tinysnn.energy import EnergyMeter, MeterOptions, make_meter
from tinysnn.memory import MemoryReference, default_reference, memory_breakdown, reference_memory
from tinysnn.network import Population, build_population, resolve_device
from tinysnn.quant import PARAMS, format_text, record_fields
from tinysnn.sim import STREAM_TEST, Simulator
from tinysnn.train import RunCallbacks, RunResult, RunSpec, TrainState, infer_counts, run

from ._checkpoint import Checkpoint, save_checkpoint, write_verified
from ._images import trial_title, write_pictures
from ._trained import StoredNetwork, TrainedNetworks
from .errors import SpecError
from .space import TrialConfig
from .spec import StudySpec

__all__ = ["CheckpointHook", "Context", "Member", "Outcome", "evaluate_population", "load_context"]

APPROXIMATE = (
    "sl_stdp is an APPROXIMATE baseline: our reading of SL-STDP (Srinivasan et al. 2017), not checked"
)
CheckpointHook = Callable[[Path, int], None]
"""Called with a checkpoint's path and its next sample index once the checkpoint is written."""


@dataclass
class Member:
    """One network of a population: its trial, configs and weight seed (``live`` = this worker tells it)."""

    number: int
    params: Dict[str, Any]
    config: TrialConfig
    seed: int
    live: bool = True
    fingerprint: Optional[str] = None
    """Training fingerprint of a trial that trains in FP32 (``search._trained``); its trained network
    is stored under it. None: an ITQ trial, or a network trained along (not live)."""


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
    reference: MemoryReference
    """M_0's network: :func:`tinysnn.memory.default_reference` of the space's largest size."""
    progress: bool = True

    @property
    def n_input(self) -> int:
        return self.train.n_input

    @property
    def reference_bits(self) -> int:
        """M_0 in bits, in the study's memory convention."""
        ref = self.reference
        convention = self.spec.objectives.memory_convention
        return reference_memory(ref.n_neurons, self.n_input, convention, ref.variant).bits


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
    reference = default_reference([spec.space.max_neurons], ob.reference_neurons, ob.reference_variant)
    return Context(spec, train, test, assign, device, meter, Path(work_dir), reference, progress)


class _Saves(RunCallbacks):
    """Saves the population at training's checkpoints to ``path`` (if any) with what its trials need to
    resume, and after training each FP32-trained member's network to ``networks`` (if any)."""

    def __init__(
        self,
        ctx: Context,
        members: Sequence[Member],
        path: Optional[Path],
        total: int,
        networks: Optional[TrainedNetworks],
        log: Callable[[str], None],
        on_checkpoint: Optional[CheckpointHook],
    ) -> None:
        self._ctx, self._members, self._path, self._total, self._log = ctx, members, path, total, log
        self._networks, self._on_checkpoint = networks, on_checkpoint

    def on_checkpoint(self, state: TrainState, pop: Population) -> None:
        assert state.sums is not None  # a checkpoint follows a trained sample
        if self._networks is not None and state.next_sample == self._total:
            self._store(state, pop, self._networks)
        if self._path is not None:
            self._checkpoint(state, pop, self._path)

    def _store(self, state: TrainState, pop: Population, networks: TrainedNetworks) -> None:
        assert state.sums is not None
        share = state.energy_train_j / len(self._members)
        for k, m in enumerate(self._members):
            if m.fingerprint is not None:
                sums = state.sums[k : k + 1].clone()
                networks.save(
                    StoredNetwork(
                        m.fingerprint, m.number, pop.select(k).state_dict(), sums, share, self._total
                    )
                )
                self._log(f"trial {m.number}: trained network stored as {networks.path(m.fingerprint)}")

    def _checkpoint(self, state: TrainState, pop: Population, path: Path) -> None:
        members, total = self._members, self._total
        assert state.sums is not None
        spikes = state.sums[:, 0].tolist()  # excitatory spikes since sample 0
        ckpt = Checkpoint(
            self._ctx.spec.fingerprint(),
            [m.number for m in members],
            [dict(m.params) for m in members],
            [m.seed for m in members],
            state.next_sample,
            total,
            spikes,
            state.energy_train_j,
            pop.state_dict(),
            state.sums,
        )
        save_checkpoint(path, ckpt)
        self._log(f"checkpoint at sample {state.next_sample}/{total}: {path}")
        if self._on_checkpoint is not None:
            self._on_checkpoint(path, state.next_sample)


def evaluate_population(
    ctx: Context,
    members: Sequence[Member],
    checkpoint_path: Optional[Path] = None,
    resume: Optional[Checkpoint] = None,
    log: Callable[[str], None] = lambda s: None,
    on_checkpoint: Optional[CheckpointHook] = None,
    networks: Optional[TrainedNetworks] = None,
    trained_by: Optional[int] = None,
) -> List[Outcome]:
    """Train ``members`` as one population (from ``resume`` if given), evaluate and score each.

    Args:
        ctx: shared data, device and meter.
        members: the networks, in population order (their configs share the variant).
        checkpoint_path: where to save the population every ``checkpoint.every`` samples and after
            training; None disables checkpoints.
        resume: a checkpoint of exactly these members to continue from.
        log: receives one line per checkpoint.
        on_checkpoint: called after each checkpoint is written.
        networks: where the members with a training fingerprint store their network once trained.
        trained_by: the trial that trained ``resume``'s networks when it is a finished checkpoint of a
            stored network (:meth:`search._trained.StoredNetwork.checkpoint`); None: each member's own.

    Returns:
        One outcome per live member, in population order.
    """
    spec = ctx.spec
    cfgs = [m.config for m in members]
    pop = build_population(
        [c.network for c in cfgs], [c.learning for c in cfgs], [m.seed for m in members], ctx.device
    )
    state = None
    if resume is not None:
        pop.load_state_dict(resume.state)
        state = TrainState(int(resume.next_sample), resume.sums, float(resume.energy_train_j))
    # Stochastic rounding draws from streams keyed by each network's own seed (tinysnn.streams), so a
    # trial's result depends neither on the global RNG nor on the other trials of its population.
    run_spec = RunSpec(
        pop,
        spec.encoding,
        ctx.train,
        ctx.test,
        assign=ctx.assign,
        epochs=spec.data.epochs,
        seed=spec.study.seed,
        quant=[c.quant for c in cfgs],
        progress=ctx.progress,
        meter=ctx.meter,
        reference=ctx.reference,
        checkpoint_every=spec.checkpoint.every,
        resume=state,
        backend=spec.study.backend,
    )
    callbacks = _Saves(ctx, members, checkpoint_path, run_spec.total_samples, networks, log, on_checkpoint)
    result = run(run_spec, callbacks)
    energy, n = result.extra, len(members)
    shared = {
        "energy_meter": energy["energy_meter"],
        "energy_is_estimate": bool(energy["energy_is_estimate"]),
        "energy_meter_note": (ctx.meter.selection_note or energy["energy_note"])[:500],
        "idle_power_w": energy["idle_power_w"],
        "energy_train_j": energy["energy_train_joules"] / n,
        "energy_infer_j_per_sample": energy["energy_infer_joules_per_sample"] / n,
        "energy_share": f"population of {n}: the meter's joules / {n}",
        "population_size": n,
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
        "resumed_from_sample": state.next_sample if state is not None else 0,
    }
    if trained_by is not None:
        shared["trained_by"] = trained_by
    return [_score(ctx, pop, result, k, m, shared) for k, m in enumerate(members) if m.live]


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
    record = record_fields(quant)
    attrs: Dict[str, Any] = {
        "variant": cfg.network.variant.value,
        "n_neurons": cfg.network.n_neurons,
        "quant": record.label,
        "scheme": record.scheme,
        "rounding": record.rounding,
        "quant_text": record.text,
    }
    for param in PARAMS:
        attrs[f"{param}_format"] = format_text(quant.format_of(param) if quant is not None else None)
    return attrs


def _score(
    ctx: Context, pop: Population, result: RunResult, k: int, m: Member, shared: Dict[str, Any]
) -> Outcome:
    spec, net, cfg = ctx.spec, result.networks[k], m.config
    spikes_train = net.spikes_per_sample_train
    quant = cfg.quant
    variant, n = cfg.network.variant.value, cfg.network.n_neurons
    conv = spec.objectives.memory_convention
    mems = {c: memory_breakdown(variant, n, ctx.n_input, quant, c) for c in ("compact", "as_simulated")}
    memory_norm = mems[conv].bits / ctx.reference_bits
    op_train, op_infer = net.op_energy_train_j_per_sample, net.op_energy_infer_j_per_sample
    attrs: Dict[str, Any] = {"trained_by": m.number}
    attrs.update(shared)
    attrs.update(config_attrs(cfg))
    if m.fingerprint is not None:
        attrs["training_fingerprint"] = m.fingerprint
    attrs.update(
        {
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
        }
    )
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
    ctx: Context, pop: Population, result: RunResult, k: int, m: Member, attrs: Dict[str, Any]
) -> Dict[str, Path]:
    folder = ctx.work_dir / f"trial-{m.number}"
    folder.mkdir(parents=True, exist_ok=True)
    net = result.networks[k]
    n = m.config.network.n_neurons
    weights = pop.weights[k, :, :n].detach().cpu().numpy()
    title = trial_title(m.number, attrs)
    files = write_pictures(folder, title, weights, ctx.train.image_shape, net.confusion, net.accuracy)
    files["model"] = folder / "model.pt"
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
        "labels": net.assignment,
        "state": pop.select(k).state_dict(),
    }
    write_verified(files["model"], model)  # checksummed: a damaged copy is refused by export
    return files
