"""Operation counts of a presentation, from the spikes that actually happened (docs/method.md §4).

Counted per network and sample, for the op-count energy model of :mod:`tinysnn.energy`:

* synaptic operations: each input spike adds its weight row to the N excitatory neurons
  (S_in N); lateral inhibition: tinysnn applies w_inh to the N - 1 other neurons per excitatory
  spike (S_e (N - 1)); the baselines drive one inhibitory neuron per excitatory spike (S_e) and
  the N - 1 other excitatory neurons per inhibitory spike (S_i (N - 1));
* neuron updates: T N excitatory, plus T N inhibitory for the baselines;
* weight updates (learning only): pair STDP depresses the S_in N weights of firing inputs and
  potentiates n_in weights per updated column; SL-STDP and tinySNN update n_in weights per
  updated column (tinySNN's columns are counted at update times, so it does less work); and the
  per-sample normalization rescales all n_in N weights.

Constant weights (w_inh, 22.5, 120) live in registers: they cost an operation, not a memory read.
"""

from __future__ import annotations

from .config import Variant
from .energy import OpCounts


def sample_op_counts(
    variant: Variant,
    n_neurons: int,
    n_input: int,
    time_steps: int,
    exc_spikes: float,
    input_spikes: float,
    inh_spikes: float,
    columns_updated: float,
    learning: bool,
) -> OpCounts:
    """Operation counts of one sample for one network (means over samples are fine too)."""
    n = float(n_neurons)
    baseline = variant in (Variant.DIEHL_COOK, Variant.SL_STDP)
    syn_in = input_spikes * n
    if baseline:
        syn_lat = exc_spikes + inh_spikes * (n - 1)
        neuron_updates = 2 * n * time_steps
    else:
        syn_lat = exc_spikes * (n - 1)
        neuron_updates = n * time_steps
    wu = 0.0
    if learning:
        wu = columns_updated * n_input + n_input * n  # learning rule + normalization
        if variant is Variant.DIEHL_COOK:
            wu += input_spikes * n
    # state words per neuron update: v and the refractory counter, plus theta for excitatory ones
    state = neuron_updates * 2 + n * time_steps
    return OpCounts(
        synaptic_ops=syn_in + syn_lat,
        neuron_updates=neuron_updates,
        weight_updates=wu,
        weight_reads=syn_in + wu,
        weight_writes=wu,
        state_reads=state,
        state_writes=state,
    )


__all__ = ["sample_op_counts"]
