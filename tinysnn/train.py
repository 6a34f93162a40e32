"""Training and evaluation loops: online STDP over a sample stream, then label assignment and test.

One run trains a whole population (P networks) on the same stream of samples; every network gets
its own result. Quantization (docs/method.md §2) plugs in here:

* ITQ: the networks' fixed-point rows are active during training (weights re-quantized after
  every update and normalization, V_mem every step, V_th after every change).
* PTQ: training runs in FP32; afterwards weights and thresholds are quantized once and V_mem is
  quantized at every inference step.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from . import evaluate as E
from .config import EncodingConfig
from .data import Split
from .energy import DEFAULT_OP_COSTS, EnergyMeter, OpEnergyCosts, op_energy_joules
from .memory import memory_breakdown, memory_norm, reference_memory
from .network import Population
from .ops import sample_op_counts
from .qformat import ROW_MODE, ROW_SCALE
from .quant import (
    NONE,
    PARAMS,
    QuantSpec,
    Scheme,
    itq_problem,
    population_rows,
    quantize_rows,
)
from .simulate import STREAM_ASSIGN, STREAM_TEST, Simulator
from .streams import mix_seed


@dataclass
class NetworkResult:
    """What one network of a run achieved."""

    index: int
    variant: str
    n_neurons: int
    seed: int
    accuracy: float
    """All-activity test accuracy (the headline number), in [0, 1]."""
    accuracy_proportion: float
    """Proportion-weighting test accuracy, in [0, 1]."""
    no_prediction: int
    """Test samples that made no assigned neuron fire (counted as wrong)."""
    spikes_per_sample_train: float
    spikes_per_sample_test: float
    confusion: List[List[int]]
    """(C, C + 1): true class x predicted class, last column = no prediction."""
    quant: str = "fp32"
    scheme: str = "fp32"
    rounding: str = ""
    synops_per_sample_train: float = 0.0
    synops_per_sample_test: float = 0.0
    neuron_updates_per_sample_test: float = 0.0
    weight_updates_per_sample_train: float = 0.0
    op_energy_train_j_per_sample: float = 0.0
    """Op-count model energy of one training sample at this network's bit widths (J)."""
    op_energy_infer_j_per_sample: float = 0.0
    """Op-count model energy of one inference sample at this network's bit widths (J)."""
    memory: Dict[str, Any] = field(default_factory=dict)
    """Eq. 4 in bits and bytes under both conventions, M_norm and its reference."""
    ranges: Dict[str, List[float]] = field(default_factory=dict)
    """Observed FP32 ranges [min, max] of weights, V_mem and V_th after training."""
    assignment: List[int] = field(default_factory=list)
    """Class of each excitatory neuron from label assignment (-1: silent, does not vote)."""


@dataclass
class RunResult:
    """A training + evaluation run of a population."""

    networks: List[NetworkResult]
    dataset: str
    eval_split: str
    train_samples: int
    epochs: int
    assign_samples: int
    test_samples: int
    device: str
    backend: str
    seed: int
    n_networks: int
    train_seconds: float
    assign_seconds: float
    test_seconds: float
    wall_seconds: float
    train_samples_per_s: float
    """Samples/s of the population's training loop (each network sees every sample)."""
    infer_samples_per_s: float
    """Samples/s of inference (label assignment + test), per network."""
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def aggregate_train_samples_per_s(self) -> float:
        return self.train_samples_per_s * self.n_networks

    def record(self, index: int = 0) -> Dict[str, Any]:
        """A flat JSON-ready record for network ``index`` (the `tinysnn train --json` format)."""
        net = asdict(self.networks[index])
        out = {k: v for k, v in asdict(self).items() if k not in ("networks", "extra")}
        out.update(net)
        out["aggregate_train_samples_per_s"] = self.aggregate_train_samples_per_s
        out.update(self.extra)
        return out


def apply_quant_rows(pop: Population, specs: Sequence[Optional[QuantSpec]], training: bool) -> None:
    """Set the population's fixed-point rows from one spec per network.

    With ``training=True`` only ITQ networks get active rows (PTQ trains in FP32).
    """
    if len(specs) != pop.n_networks:
        raise ValueError(f"{len(specs)} quantization specs for {pop.n_networks} networks")
    full = [s if s is not None else QuantSpec() for s in specs]
    use = [s if (not training or s.scheme == Scheme.ITQ) else QuantSpec() for s in full]
    for k, spec in enumerate(full):
        problem = itq_problem(spec, float(pop.params["theta_plus"][k]))
        if problem:
            raise ValueError(f"network {k}: {problem}")
    rules = [float(s.normalization.code) for s in full]
    pop.params["norm_rule"] = torch.tensor(rules, dtype=torch.float32, device=pop.device)
    for param in PARAMS:
        rows = population_rows(use, param, pop.device).to(torch.float32)
        pop.quant[param] = vmem_rows_about_rest(rows, pop.exc.v_rest) if param == "vmem" else rows


def vmem_rows_about_rest(rows: torch.Tensor, v_rest: float) -> torch.Tensor:
    """Rows of a V_mem format read as V_mem - v_rest: the saturation bounds move by v_rest.

    V_mem is stored relative to the excitatory resting potential (our decision, docs/method.md §2
    is silent): a neuron at rest holds 0, the threshold v_th - v_rest = 13 mV, and inhibition
    pushes it negative. With v_rest on the grid (any whole mV when f >= 0) the grid itself is the
    same as in absolute mV; only the range moves, so ``Q8.0`` holds -128..127 mV around rest
    (-193..62 mV absolute) instead of -128..127 mV absolute, which would cut v_rest - w_inh.
    The same rows serve the baselines' inhibitory neurons (their V_mem near -60..-40 mV lies
    5..25 mV above the excitatory rest).

    Raises:
        ValueError: if v_rest is not a multiple of a quantized row's step 2^-f.
    """
    active = rows[:, ROW_MODE] != NONE
    scaled = rows[:, ROW_SCALE].double() * float(v_rest)
    off_grid = active & (scaled != torch.floor(scaled))
    if bool(off_grid.any()):
        step = 1.0 / float(rows[int(off_grid.nonzero()[0]), 0])
        raise ValueError(
            f"v_rest = {v_rest} mV is not a multiple of the V_mem format's step {step:g} mV: V_mem is "
            f"stored as V_mem - v_rest, so v_rest must lie on the grid; use more fractional bits or "
            f"a v_rest in whole mV"
        )
    out = rows.clone()
    out[:, 1] += float(v_rest)
    out[:, 2] += float(v_rest)
    return out


def quantize_parameters(pop: Population, seed: int = 0) -> None:
    """Put weights and effective thresholds on their grids (PTQ after training; ITQ at start).

    Stochastic rounding draws from a generator per network seeded by (seed, the network's own
    seed), so a network's quantized values do not depend on the rest of the population.
    """
    vth = pop.exc.v_th
    weights, theta = pop.weights.clone(), pop.theta.clone()
    for k in range(pop.n_networks):
        g = torch.Generator(device=pop.device)
        g.manual_seed(int(mix_seed(int(seed), 13, int(pop.seeds[k]) if k < len(pop.seeds) else k)))
        sl = slice(k, k + 1)
        weights[sl] = quantize_rows(pop.weights[sl], pop.quant["weights"][sl], g)
        theta[sl] = quantize_rows(vth + pop.theta[sl], pop.quant["vth"][sl], g) - vth
    pop.weights, pop.theta = weights.contiguous(), theta.contiguous()


def memory_figures(
    variant: str, n_neurons: int, n_input: int, spec: QuantSpec, reference_neurons: int
) -> Dict[str, Any]:
    """Eq. 4 memory of a network under both conventions, and M_norm against FP32 diehl_cook."""
    out: Dict[str, Any] = {"reference": f"diehl_cook FP32 N={reference_neurons}"}
    for conv in ("compact", "as_simulated"):
        m = memory_breakdown(variant, n_neurons, n_input, spec, conv)
        ref = reference_memory(reference_neurons, n_input, conv)
        out[conv] = {
            "bits": m.bits,
            "bytes": m.bytes,
            "reference_bytes": ref.bytes,
            "m_norm": memory_norm(m, ref),
        }
    return out


def observed_ranges(pop: Population, vmem_range: torch.Tensor) -> List[Dict[str, List[float]]]:
    """Per network, the [min, max] of weights, V_mem (seen while training) and V_th = v_th + theta."""
    out = []
    for k in range(pop.n_networks):
        n = int(pop.sizes[k])
        w = pop.weights[k, :, :n]
        vth = pop.exc.v_th + pop.theta[k, :n]
        out.append({
            "weights": [float(w.min()), float(w.max())],
            "vmem": [float(vmem_range[k, 0]), float(vmem_range[k, 1])],
            "vth": [float(vth.min()), float(vth.max())],
        })  # fmt: skip
    return out


def train_population(
    sim: Simulator,
    images: torch.Tensor,
    epochs: int = 1,
    progress: bool = True,
    start: int = 0,
    on_sample: Optional[Callable[[int, torch.Tensor, torch.Tensor], None]] = None,
    start_sums: Optional[torch.Tensor] = None,
) -> Dict[str, Any]:
    """Online training over ``images`` for ``epochs`` passes, from global sample ``start``.

    ``on_sample(i, counts, sums)`` is called after global sample ``i`` (e.g. to checkpoint);
    ``sums`` (P, 4) float64 holds the running totals of excitatory spikes, input spikes,
    inhibitory spikes and weight columns updated since sample 0; pass it back as ``start_sums``
    when resuming so the statistics cover the whole run.
    Returns timing and per-sample means of those statistics.
    """
    n = int(images.shape[0])
    total = n * int(epochs)
    P = sim.pop.n_networks
    # running sums per network: excitatory spikes, input spikes, inhibitory spikes, columns updated
    sums = torch.zeros((P, 4), dtype=torch.float64) if start_sums is None else start_sums.clone()
    bar = _bar(total, "train", progress, initial=start)
    t0 = time.perf_counter()
    for i in range(start, total):
        counts = sim.train_sample(images[i % n], i)
        sums[:, 0] += counts.sum(dim=1).to(torch.float64).cpu()
        if sim.last_stats is not None:
            sums[:, 1:] += sim.last_stats[:, 0, :].to(torch.float64).cpu()
        if on_sample is not None:
            on_sample(i, counts, sums)
        if bar is not None:
            bar.update(1)
    if sim.pop.device.type == "cuda":
        torch.cuda.synchronize(sim.pop.device)
    seconds = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    done = max(total - start, 0)
    return {"seconds": seconds, "samples": done, "means": sums / max(total, 1)}


def infer_counts(
    sim: Simulator, images: torch.Tensor, stream: int, batch_size: int = 500, progress: bool = True,
    desc: str = "infer",
) -> torch.Tensor:  # fmt: skip
    """Spike counts (P, S, N) of all images, in batches, without learning.

    The mean per-sample kernel statistics (P, 3) are left in ``sim.mean_stats``.
    """
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
    sim.mean_stats = stat_sum / max(n, 1)  # type: ignore[attr-defined]
    if not out:
        return torch.zeros((sim.pop.n_networks, 0, sim.pop.n_max), dtype=torch.int32)
    return torch.cat(out, dim=1)


def run(
    pop: Population,
    enc: EncodingConfig,
    train: Split,
    test: Split,
    *,
    assign: Optional[Split] = None,
    epochs: int = 1,
    seed: int = 0,
    backend: str = "auto",
    quant: Optional[Sequence[Optional[QuantSpec]]] = None,
    batch_size: int = 500,
    progress: bool = True,
    n_classes: int = 10,
    start: int = 0,
    start_sums: Optional[torch.Tensor] = None,
    on_sample: Optional[Callable[[int, torch.Tensor, torch.Tensor], None]] = None,
    after_train: Optional[Callable[[Population], None]] = None,
    meter: Optional[EnergyMeter] = None,
    op_costs: OpEnergyCosts = DEFAULT_OP_COSTS,
    reference_neurons: Optional[int] = None,
) -> RunResult:
    """Train a population on ``train``, assign labels on ``assign`` (default: ``train``), test.

    Args:
        pop: the population (trained in place).
        enc: presentation window.
        train, test: splits; ``test`` may be a validation split.
        assign: samples for label assignment (learning off); defaults to the training samples.
        epochs: passes over ``train``.
        seed: seed of the input trains (the weights' seeds are in the population).
        backend: ``auto``, ``numba`` or ``torch``.
        quant: one spec per network (None = FP32), PTQ or ITQ by the spec's scheme.
        start, start_sums, on_sample: resume from a global sample index with the running
            statistics saved by ``on_sample(i, counts, sums)`` (see :func:`train_population`).
        after_train: called with the trained population before quantization (range analysis).
        meter: energy meter (:func:`tinysnn.energy.make_meter`) read around the training phase
            and the inference phase (assignment + test); its joules are the population's.
        op_costs: energy per operation for the op-count model.
        reference_neurons: size of the FP32 diehl_cook reference network of M_norm (default:
            the largest network of the population).
    """
    t_wall = time.perf_counter()
    specs = list(quant) if quant is not None else [None] * pop.n_networks
    apply_quant_rows(pop, specs, training=True)
    if start == 0 and any(s is not None and s.scheme == Scheme.ITQ for s in specs):
        quantize_parameters(pop, seed)
    sim = Simulator(pop, enc, seed=seed, backend=backend)
    if meter is not None:
        meter.start()
    tr = train_population(sim, train.images, epochs, progress, start, on_sample, start_sums)
    e_train = meter.stop() if meter is not None else None
    ranges = observed_ranges(pop, sim.vmem_range)
    if after_train is not None:
        after_train(pop)
    apply_quant_rows(pop, specs, training=False)
    quantize_parameters(pop, seed)
    sim = Simulator(pop, enc, seed=seed, backend=sim.backend)
    assign = assign if assign is not None else train
    if meter is not None:
        meter.start()
    t0 = time.perf_counter()
    a_counts = infer_counts(sim, assign.images, STREAM_ASSIGN, batch_size, progress, "assign")
    t_assign = time.perf_counter() - t0
    t0 = time.perf_counter()
    t_counts = infer_counts(sim, test.images, STREAM_TEST, batch_size, progress, "test")
    t_test = time.perf_counter() - t0
    e_infer = meter.stop() if meter is not None else None
    test_stats = sim.mean_stats  # type: ignore[attr-defined]
    assignment = E.assign_labels(a_counts, assign.labels, n_classes)
    pred_all = E.predict_all_activity(t_counts, assignment)
    pred_prop = E.predict_proportion(t_counts, assignment)
    acc_all = E.accuracy(pred_all, test.labels)
    acc_prop = E.accuracy(pred_prop, test.labels)
    spikes_test = t_counts.to(torch.float64).sum(dim=(1, 2)) / max(len(test), 1)
    means = tr["means"]
    nets = []
    for k in range(pop.n_networks):
        spec = specs[k] if specs[k] is not None else QuantSpec()
        n_k = int(pop.sizes[k])
        ops_train = sample_op_counts(pop.variant, n_k, pop.n_input, enc.time_steps, float(means[k, 0]),
                                     float(means[k, 1]), float(means[k, 2]), float(means[k, 3]), True)  # fmt: skip
        ops_test = sample_op_counts(pop.variant, n_k, pop.n_input, enc.time_steps, float(spikes_test[k]),
                                    float(test_stats[k, 0]), float(test_stats[k, 1]), 0.0, False)  # fmt: skip
        wb = spec.bits_of("weights") if spec.format_of("weights") is not None else None
        nb = spec.bits_of("vmem") if spec.format_of("vmem") is not None else None
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
                confusion=E.confusion_matrix(pred_all[k], test.labels, n_classes).tolist(),
                quant=spec.to_text() if not spec.is_fp32 else "fp32",
                scheme=spec.scheme.value if not spec.is_fp32 else "fp32",
                rounding=spec.rounding.value if not spec.is_fp32 else "",
                synops_per_sample_train=ops_train.synaptic_ops,
                synops_per_sample_test=ops_test.synaptic_ops,
                neuron_updates_per_sample_test=ops_test.neuron_updates,
                weight_updates_per_sample_train=ops_train.weight_updates,
                op_energy_train_j_per_sample=op_energy_joules(
                    ops_train, weight_bits=wb, neuron_bits=nb, costs=op_costs
                ),
                op_energy_infer_j_per_sample=op_energy_joules(
                    ops_test, weight_bits=wb, neuron_bits=nb, costs=op_costs
                ),
                memory=memory_figures(
                    pop.variant.value, n_k, pop.n_input, spec, reference_neurons or int(pop.sizes.max())
                ),
                ranges=ranges[k],
                assignment=assignment.labels[k, :n_k].tolist(),
            )
        )
    n_inf = len(assign) + len(test)
    t_inf = t_assign + t_test
    extra: Dict[str, Any] = {}
    if e_train is not None and e_infer is not None:
        extra = {
            "energy_meter": e_train.meter,
            "energy_is_estimate": e_train.is_estimate,
            "idle_power_w": e_train.idle_power_w,
            "idle_subtracted": e_train.idle_subtracted,
            "energy_train_joules": e_train.joules,
            "energy_train_joules_per_sample": e_train.joules / max(tr["samples"], 1),
            "energy_infer_joules": e_infer.joules,
            "energy_infer_joules_per_sample": e_infer.joules / max(n_inf, 1),
            "energy_note": e_train.note,
        }
    return RunResult(
        networks=nets,
        dataset=train.name.split(":")[0],
        eval_split=test.name,
        train_samples=len(train),
        epochs=int(epochs),
        assign_samples=len(assign),
        test_samples=len(test),
        device=str(pop.device),
        backend=sim.backend,
        seed=int(seed),
        n_networks=pop.n_networks,
        train_seconds=tr["seconds"],
        assign_seconds=t_assign,
        test_seconds=t_test,
        wall_seconds=time.perf_counter() - t_wall,
        train_samples_per_s=tr["samples"] / tr["seconds"] if tr["seconds"] > 0 else 0.0,
        infer_samples_per_s=n_inf / t_inf if t_inf > 0 else 0.0,
        extra=extra,
    )


def _bar(total: int, desc: str, enabled: bool, initial: int = 0):  # type: ignore[no-untyped-def]
    if not enabled or total <= 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="sample", dynamic_ncols=True, leave=False)


__all__ = [
    "NetworkResult",
    "RunResult",
    "apply_quant_rows",
    "infer_counts",
    "quantize_parameters",
    "run",
    "train_population",
]
