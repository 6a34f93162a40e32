"""Energy figures of a trial: the op-count model and the meter's share (docs/method.md §4).

* op-count: joules per sample from ``tinysnn.energy.op_energy_joules`` at the network's bit widths.
  tinysnn's training loop reports it per network (``NetworkResult.op_energy_*``) where it does; where
  it does not, :func:`opcount_per_sample` estimates the counts from spike rates (a fallback, labelled
  so on the trial).
* meter: the meter measures the whole population; a network's share is the population's joules / P.
  That share carries no bit-width signal (fake quantization costs what FP32 costs) and depends on P,
  which is why the default energy objective is the op-count figure.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import torch

from tinysnn.config import EncodingConfig
from tinysnn.encoding import spike_probability
from tinysnn.energy import OpCounts, layer_op_counts, op_energy_joules
from tinysnn.quant import QuantSpec, Scheme

__all__ = ["expected_input_spikes", "network_opcount", "opcount_per_sample", "widths"]


def expected_input_spikes(images: torch.Tensor, enc: EncodingConfig) -> float:
    """Mean input spikes per sample of a set of images: sum of firing probabilities x T."""
    if images.numel() == 0:
        return 0.0
    probs = spike_probability(images, enc)
    return float(probs.sum(dim=1).mean()) * int(enc.time_steps)


def widths(quant: Optional[QuantSpec], training: bool) -> Tuple[Optional[int], Optional[int]]:
    """(weight bits, neuron bits) of the arithmetic; None for FP32 (PTQ trains in FP32)."""
    if quant is None or (training and quant.scheme != Scheme.ITQ):
        return None, None
    wb = quant.weights.total_bits if quant.weights is not None else None
    nb = quant.vmem.total_bits if quant.vmem is not None else None
    return wb, nb


def opcount_per_sample(
    variant: str,
    n_neurons: int,
    n_input: int,
    time_steps: int,
    input_spikes: float,
    exc_spikes: float,
    quant: Optional[QuantSpec],
    training: bool,
) -> float:
    """Op-count joules per sample, from mean spike rates (the search layer's fallback model).

    Counts per sample: every input spike reaches all N neurons (synaptic op + weight read); every
    neuron is updated every step; a tinysnn spike inhibits the N - 1 others (one add each); a
    baseline spike drives its inhibitory partner (about one inhibitory spike per excitatory spike),
    which inhibits N - 1 neurons, and the inhibitory layer is updated every step. Training adds the
    weight updates (baselines: N per input spike and n_input per output spike; tinysnn: at most
    n_input per output spike) and the column normalization (a read and a write of every weight).
    """
    n = int(n_neurons)
    s = float(exc_spikes)
    counts = layer_op_counts(n_neurons=n, timesteps=int(time_steps), input_spikes=float(input_spikes))
    baseline = variant in ("diehl_cook", "sl_stdp")
    if baseline:
        inh_updates = n * int(time_steps)
        counts = counts + OpCounts(synaptic_ops=s + s * (n - 1), neuron_updates=inh_updates,
                                   state_reads=inh_updates, state_writes=inh_updates)  # fmt: skip
    else:
        counts = counts + OpCounts(synaptic_ops=s * (n - 1))
    if training:
        updates = s * n_input + (float(input_spikes) * n if baseline else 0.0)
        counts = counts + OpCounts(weight_updates=updates, weight_reads=updates + n_input * n,
                                   weight_writes=updates + n_input * n)  # fmt: skip
    wb, nb = widths(quant, training)
    return op_energy_joules(counts, weight_bits=wb, neuron_bits=nb)


def network_opcount(
    net: Any,
    quant: Optional[QuantSpec],
    n_input: int,
    enc: EncodingConfig,
    input_spikes_train: float,
    input_spikes_test: float,
    spikes_train: float,
) -> Tuple[float, float, str]:
    """(train J/sample, inference J/sample, source) of one network of a run.

    Uses tinysnn's own figures (``NetworkResult.op_energy_train_j_per_sample`` and
    ``op_energy_infer_j_per_sample``) when the run reports them, else :func:`opcount_per_sample`.
    """
    core_train = getattr(net, "op_energy_train_j_per_sample", None)
    core_infer = getattr(net, "op_energy_infer_j_per_sample", None)
    if core_infer is not None and math.isfinite(float(core_infer)):
        train = float(core_train) if core_train is not None and math.isfinite(float(core_train)) else math.nan
        return train, float(core_infer), "tinysnn"
    args = (net.variant, net.n_neurons, n_input, enc.time_steps)
    infer = opcount_per_sample(*args, input_spikes_test, net.spikes_per_sample_test, quant, False)
    train = opcount_per_sample(*args, input_spikes_train, spikes_train, quant, True)
    return train, infer, "search fallback (counts from spike rates)"
