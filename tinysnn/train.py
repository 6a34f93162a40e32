"""Training and evaluation loops: online STDP over a sample stream, then label assignment and test.

One run trains a whole population (P networks) on the same stream of samples; every network gets
its own result. The entry is ``run(RunSpec(...), callbacks)``: a :class:`RunSpec` says what to
train and evaluate (population, data, encoding, quantization, meter, checkpoints, resume state), a
:class:`RunCallbacks` hears the checkpoints and the end of training. Quantization (docs/method.md
§2) plugs in here:

* ITQ: the networks' fixed-point rows are active during training (weights re-quantized after
  every update and normalization, V_mem every step, V_th after every change).
* PTQ: training runs in FP32; afterwards weights and thresholds are quantized once and V_mem is
  quantized at every inference step.

This module holds the run and its phases (train, quantize, evaluate, score). The result types are
in :mod:`tinysnn.results`, the quantization setup in :mod:`tinysnn.quant_setup` and the memory and
range figures in :mod:`tinysnn.run_figures`; their public names are importable from here as well.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from . import evaluate as E
from .config import Backend, EncodingConfig
from .data import Split
from .energy import (
    DEFAULT_OP_COSTS,
    EnergyMeter,
    EnergyReading,
    OpEnergyCosts,
    op_energy_joules,
    sample_op_counts,
)
from .memory import MemoryReference, default_reference
from .network import Population
from .quant import QuantSpec, Scheme, record_fields
from .quant_setup import apply_quant_rows, quantize_parameters, vmem_rows_about_rest
from .results import NetworkResult, RunResult
from .run_figures import memory_figures, observed_ranges
from .sim import Simulator
from .streams import STREAM_ASSIGN, STREAM_TEST

if TYPE_CHECKING:
    from tqdm.auto import tqdm


@dataclass(frozen=True)
class TrainState:
    """Where training of a population stands: what a checkpoint saves besides the population's state.

    Attributes:
        next_sample: the global training sample index (over all epochs) to continue from.
        sums: (P, 4) float64 running totals since sample 0 of excitatory spikes, input spikes,
            inhibitory spikes and weight columns updated (None: nothing trained yet, all zero).
        energy_train_j: metered training energy of the population since sample 0, J.
    """

    next_sample: int = 0
    sums: Optional[torch.Tensor] = None
    energy_train_j: float = 0.0


class RunCallbacks:
    """What a caller of :func:`run` hears while it runs; every hook does nothing unless overridden."""

    def on_checkpoint(self, state: TrainState, pop: Population) -> None:
        """After every ``RunSpec.checkpoint_every`` training samples and once after the last one.

        ``state`` with ``pop.state_dict()`` is what ``RunSpec.resume`` (with the population loaded)
        needs to continue to the result of an uninterrupted run.
        """

    def after_train(self, pop: Population) -> None:
        """With the trained FP32 (or ITQ) population, before quantization for evaluation."""


@dataclass(frozen=True)
class RunSpec:
    """What one run trains and evaluates.

    Attributes:
        population: the networks (trained in place; their weight seeds are in the population).
        encoding: presentation window.
        train, test: splits; ``test`` may be a validation split.
        assign: samples for label assignment (learning off); None: the training samples.
        epochs: passes over ``train``.
        seed: seed of the input trains and of stochastic rounding.
        backend: a :class:`tinysnn.config.Backend` or its name (``auto``, ``numba``, ``torch``, ``torch-compile``).
        quant: one spec per network (None = FP32), PTQ or ITQ by the spec's scheme; None: all FP32.
        batch_size: inference batch.
        progress: progress bars.
        n_classes: classes of the labels.
        meter: energy meter (:func:`tinysnn.energy.make_meter`) read around the training phase and
            the inference phase (assignment + test); its joules are the population's.
        op_costs: energy per operation for the op-count model.
        reference: M_0 of M_norm; None: :func:`tinysnn.memory.default_reference` of the population.
        checkpoint_every: training samples between checkpoints (``RunCallbacks.on_checkpoint``);
            0: only the one after the last sample.
        resume: continue training from this state (the population's state loaded by the caller);
            its statistics and training energy count in the result as if the run had not stopped.
    """

    population: Population
    encoding: EncodingConfig
    train: Split
    test: Split
    assign: Optional[Split] = None
    epochs: int = 1
    seed: int = 0
    backend: Union[str, Backend] = Backend.AUTO
    quant: Optional[Sequence[Optional[QuantSpec]]] = None
    batch_size: int = 500
    progress: bool = True
    n_classes: int = 10
    meter: Optional[EnergyMeter] = None
    op_costs: OpEnergyCosts = DEFAULT_OP_COSTS
    reference: Optional[MemoryReference] = None
    checkpoint_every: int = 0
    resume: Optional[TrainState] = None

    @property
    def assign_split(self) -> Split:
        return self.assign if self.assign is not None else self.train

    @property
    def total_samples(self) -> int:
        """Training samples over all epochs."""
        return len(self.train) * int(self.epochs)

    def quant_specs(self) -> List[Optional[QuantSpec]]:
        """One quantization spec per network (None = FP32)."""
        return list(self.quant) if self.quant is not None else [None] * self.population.n_networks


@dataclass
class _Trained:
    """What the training phase leaves for the others."""

    backend: Backend
    """The backend that ran (``auto`` resolved)."""
    seconds: float
    first_seconds: float
    """Time of the first sample trained in this run (kernel compilation or loading included)."""
    samples: int
    """Samples trained in this run (not counting those of a resumed state)."""
    means: torch.Tensor
    """(P, 4) per-sample means of the running totals of :class:`TrainState`."""
    ranges: List[Dict[str, List[float]]]
    energy_j: float
    reading: Optional[EnergyReading]


@dataclass
class _Evaluated:
    """What the inference phase measured."""

    assign_counts: torch.Tensor
    test_counts: torch.Tensor
    test_stats: torch.Tensor
    """(P, 3) mean per-sample kernel statistics of the test samples."""
    assign_seconds: float
    test_seconds: float
    warmup_seconds: float
    reading: Optional[EnergyReading]


def _lap(meter: EnergyMeter) -> float:
    """Joules of the meter's run so far; the meter goes on measuring."""
    joules = meter.stop().joules
    meter.start()
    return joules


def _train_phase(spec: RunSpec, callbacks: RunCallbacks) -> _Trained:
    """Online STDP over the training stream from ``spec.resume`` (ITQ rows active), with checkpoints."""
    pop, meter = spec.population, spec.meter
    specs = spec.quant_specs()
    resume = spec.resume if spec.resume is not None else TrainState()
    start = int(resume.next_sample)
    apply_quant_rows(pop, specs, training=True)
    if start == 0 and any(s is not None and s.scheme == Scheme.ITQ for s in specs):
        quantize_parameters(pop, spec.seed)
    sim = Simulator(pop, spec.encoding, seed=spec.seed, backend=spec.backend)
    images, n, total = spec.train.images, len(spec.train), spec.total_samples
    sums = torch.zeros((pop.n_networks, 4), dtype=torch.float64)
    if resume.sums is not None:
        sums = resume.sums.clone()
    energy = float(resume.energy_train_j)
    bar = _bar(total, "train", spec.progress, initial=start)
    if meter is not None:
        meter.start()
    t0 = time.perf_counter()
    first_seconds = 0.0
    i = start
    while i < total:
        end = _chunk_end(i, start, total, spec.checkpoint_every)
        counts = sim.train_samples(images[torch.arange(i, end) % n], i)
        if i == start:  # the first sample compiles (or loads) the kernels: timed apart
            _sync(pop.device)
            first_seconds = time.perf_counter() - t0
        sums[:, 0] += counts.sum(dim=(1, 2)).to(torch.float64).cpu()
        if sim.last_stats is not None:
            sums[:, 1:] += sim.last_stats.sum(dim=1).to(torch.float64).cpu()
        if spec.checkpoint_every and end % spec.checkpoint_every == 0 and end < total:
            energy += _lap(meter) if meter is not None else 0.0
            callbacks.on_checkpoint(TrainState(end, sums.clone(), energy), pop)
        if bar is not None:
            bar.update(end - i)
        i = end
    _sync(pop.device)
    seconds = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    reading = meter.stop() if meter is not None else None
    energy += reading.joules if reading is not None else 0.0
    if total > start:
        callbacks.on_checkpoint(TrainState(total, sums.clone(), energy), pop)
    return _Trained(
        sim.backend,
        seconds,
        first_seconds,
        max(total - start, 0),
        sums / max(total, 1),
        observed_ranges(pop, sim.vmem_range),
        energy,
        reading,
    )


#: training samples per simulator call: the per-call work (encoding set-up, kernel arguments,
#: statistics) is paid once per chunk; a chunk ends at every checkpoint
TRAIN_CHUNK = 32


def _chunk_end(i: int, start: int, total: int, checkpoint_every: int) -> int:
    """The end of the chunk of training samples that starts at sample ``i``: the first sample alone
    (it compiles or loads the kernels, and is timed apart), then :data:`TRAIN_CHUNK` samples, never
    past ``total`` or the next multiple of ``checkpoint_every`` (when set)."""
    if i == start:
        return i + 1
    end = min(total, i + TRAIN_CHUNK)
    if checkpoint_every:
        end = min(end, (i // checkpoint_every + 1) * checkpoint_every)
    return end


def _sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it has timed it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def steady_rate(samples: int, seconds: float, first_seconds: float) -> float:
    """Samples/s without the first sample (which compiles or loads the kernels): ``samples - 1`` over
    the time after the first; with one sample (or no time after it), ``samples / seconds``."""
    if samples >= 2 and seconds > first_seconds:
        return (samples - 1) / (seconds - first_seconds)
    return samples / seconds if seconds > 0 else 0.0


def _quantize_phase(spec: RunSpec) -> None:
    """Put the trained population on its evaluation grids (PTQ: now; ITQ: again, as in training)."""
    apply_quant_rows(spec.population, spec.quant_specs(), training=False)
    quantize_parameters(spec.population, spec.seed)


def infer_counts(
    sim: Simulator,
    images: torch.Tensor,
    stream: int,
    batch_size: int = 500,
    progress: bool = True,
    desc: str = "infer",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Spike counts (P, S, N) of all images, in batches, without learning, and the mean per-sample
    kernel statistics (P, 3) (input spikes, inhibitory spikes, weight columns updated)."""
    n = int(images.shape[0])
    out = []
    stat_sum = torch.zeros((sim.pop.n_networks, 3), dtype=torch.float64)
    bar = _bar(n, desc, progress)
    for a in range(0, n, batch_size):
        chunk = images[a : a + batch_size]
        out.append(sim.infer(chunk, stream, first_index=a).cpu())
        if sim.last_stats is not None:
            stat_sum += sim.last_stats.to(torch.float64).sum(dim=1).cpu()
        if bar is not None:
            bar.update(int(chunk.shape[0]))
    if bar is not None:
        bar.close()
    stats = stat_sum / max(n, 1)
    if not out:
        return torch.zeros((sim.pop.n_networks, 0, sim.pop.n_max), dtype=torch.int32), stats
    return torch.cat(out, dim=1), stats


def _evaluate_phase(spec: RunSpec, backend: Backend) -> _Evaluated:
    """Label assignment and test of the quantized population, learning off, after a one-sample
    warm-up that compiles or loads the inference kernel (its counts are dropped; nothing it does
    changes the population or the draws of the timed samples)."""
    sim = Simulator(spec.population, spec.encoding, seed=spec.seed, backend=backend)
    t0 = time.perf_counter()
    if len(spec.assign_split):
        sim.infer(spec.assign_split.images[:1], STREAM_ASSIGN)
        _sync(spec.population.device)
    warmup = time.perf_counter() - t0
    if spec.meter is not None:
        spec.meter.start()
    t0 = time.perf_counter()
    assign_counts, _ = infer_counts(
        sim, spec.assign_split.images, STREAM_ASSIGN, spec.batch_size, spec.progress, "assign"
    )
    t_assign = time.perf_counter() - t0
    t0 = time.perf_counter()
    test_counts, test_stats = infer_counts(
        sim, spec.test.images, STREAM_TEST, spec.batch_size, spec.progress, "test"
    )
    t_test = time.perf_counter() - t0
    reading = spec.meter.stop() if spec.meter is not None else None
    return _Evaluated(assign_counts, test_counts, test_stats, t_assign, t_test, warmup, reading)


def _score_phase(spec: RunSpec, trained: _Trained, ev: _Evaluated) -> List[NetworkResult]:
    """Accuracy, op counts and energy, memory and ranges of every network."""
    pop, enc, test = spec.population, spec.encoding, spec.test
    reference = spec.reference or default_reference([int(n) for n in pop.sizes])
    assignment = E.assign_labels(ev.assign_counts, spec.assign_split.labels, spec.n_classes)
    pred_all = E.predict_all_activity(ev.test_counts, assignment)
    acc_all = E.accuracy(pred_all, test.labels)
    acc_prop = E.accuracy(E.predict_proportion(ev.test_counts, assignment), test.labels)
    spikes_test = ev.test_counts.to(torch.float64).sum(dim=(1, 2)) / max(len(test), 1)
    means, stats = trained.means, ev.test_stats
    nets = []
    for k, maybe_spec in enumerate(spec.quant_specs()):
        q = maybe_spec if maybe_spec is not None else QuantSpec()
        record = record_fields(q)
        n_k = int(pop.sizes[k])
        ops_train = sample_op_counts(
            pop.variant,
            n_k,
            pop.n_input,
            enc.time_steps,
            float(means[k, 0]),
            float(means[k, 1]),
            float(means[k, 2]),
            float(means[k, 3]),
            True,
        )
        ops_test = sample_op_counts(
            pop.variant,
            n_k,
            pop.n_input,
            enc.time_steps,
            float(spikes_test[k]),
            float(stats[k, 0]),
            float(stats[k, 1]),
            0.0,
            False,
        )
        widths = dict(
            weight_bits=q.bits_of("weights") if q.format_of("weights") is not None else None,
            neuron_bits=q.bits_of("vmem") if q.format_of("vmem") is not None else None,
        )
        nets.append(
            NetworkResult(
                index=k,
                variant=pop.variant.value,
                n_neurons=n_k,
                seed=int(pop.seeds[k]) if k < len(pop.seeds) else 0,
                accuracy=float(acc_all[k]),
                accuracy_proportion=float(acc_prop[k]),
                no_prediction=int((pred_all[k] < 0).sum()),
                spikes_per_sample_train=float(means[k, 0]),
                spikes_per_sample_test=float(spikes_test[k]),
                confusion=E.confusion_matrix(pred_all[k], test.labels, spec.n_classes).tolist(),
                quant=record.text,
                scheme=record.scheme,
                rounding=record.rounding,
                synops_per_sample_train=ops_train.synaptic_ops,
                synops_per_sample_test=ops_test.synaptic_ops,
                neuron_updates_per_sample_test=ops_test.neuron_updates,
                weight_updates_per_sample_train=ops_train.weight_updates,
                op_energy_train_j_per_sample=op_energy_joules(ops_train, costs=spec.op_costs, **widths),
                op_energy_infer_j_per_sample=op_energy_joules(ops_test, costs=spec.op_costs, **widths),
                memory=memory_figures(pop.variant.value, n_k, pop.n_input, q, reference),
                ranges=trained.ranges[k],
                assignment=assignment.labels[k, :n_k].tolist(),
            )
        )
    return nets


def _energy_extra(spec: RunSpec, trained: _Trained, ev: _Evaluated) -> Dict[str, Any]:
    """The meter's readings of both phases (nothing without a meter)."""
    if trained.reading is None or ev.reading is None:
        return {}
    n_inf = len(spec.assign_split) + len(spec.test)
    return {
        "energy_meter": trained.reading.meter,
        "energy_is_estimate": trained.reading.is_estimate,
        "idle_power_w": trained.reading.idle_power_w,
        "idle_subtracted": trained.reading.idle_subtracted,
        "energy_train_joules": trained.energy_j,
        "energy_train_joules_per_sample": trained.energy_j / max(spec.total_samples, 1),
        "energy_infer_joules": ev.reading.joules,
        "energy_infer_joules_per_sample": ev.reading.joules / max(n_inf, 1),
        "energy_note": trained.reading.note,
    }


def run(spec: RunSpec, callbacks: Optional[RunCallbacks] = None) -> RunResult:
    """Train ``spec.population`` on ``spec.train``, quantize, assign labels, test and score.

    The phases: :func:`_train_phase` (with ``callbacks.on_checkpoint``), ``callbacks.after_train``,
    :func:`_quantize_phase`, :func:`_evaluate_phase`, :func:`_score_phase`.
    """
    callbacks = callbacks if callbacks is not None else RunCallbacks()
    t_wall = time.perf_counter()
    trained = _train_phase(spec, callbacks)
    callbacks.after_train(spec.population)
    _quantize_phase(spec)
    ev = _evaluate_phase(spec, trained.backend)
    n_inf = len(spec.assign_split) + len(spec.test)
    t_inf = ev.assign_seconds + ev.test_seconds
    return RunResult(
        networks=_score_phase(spec, trained, ev),
        dataset=spec.train.name.split(":")[0],
        eval_split=spec.test.name,
        train_samples=len(spec.train),
        epochs=int(spec.epochs),
        assign_samples=len(spec.assign_split),
        test_samples=len(spec.test),
        device=str(spec.population.device),
        backend=trained.backend.value,
        seed=int(spec.seed),
        n_networks=spec.population.n_networks,
        train_seconds=trained.seconds,
        assign_seconds=ev.assign_seconds,
        test_seconds=ev.test_seconds,
        wall_seconds=time.perf_counter() - t_wall,
        train_samples_per_s=steady_rate(trained.samples, trained.seconds, trained.first_seconds),
        infer_samples_per_s=n_inf / t_inf if t_inf > 0 else 0.0,
        extra=_energy_extra(spec, trained, ev),
        first_sample_seconds=trained.first_seconds,
        infer_warmup_seconds=ev.warmup_seconds,
    )


def _bar(total: int, desc: str, enabled: bool, initial: int = 0) -> Optional[tqdm]:
    if not enabled or total <= 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="sample", dynamic_ncols=True, leave=False)


__all__ = [
    "NetworkResult",
    "RunCallbacks",
    "RunResult",
    "RunSpec",
    "TrainState",
    "apply_quant_rows",
    "infer_counts",
    "memory_figures",
    "observed_ranges",
    "quantize_parameters",
    "run",
    "steady_rate",
    "vmem_rows_about_rest",
]
