"""The op-count model: what one presentation of a sample costs in operations (docs/method.md §4).

:class:`OpCounts` holds the counts; :func:`layer_op_counts` counts one event-driven, fully
connected layer; :func:`sample_op_counts` counts one network and sample from the spikes that
actually happened. Training (``tinysnn.train``) counts with it, and the search takes the energies
of those counts from the training run. :mod:`tinysnn.energy.costs` turns counts into joules.

Counted per network and sample:

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

import dataclasses

from ..config import Variant

__all__ = ["OpCounts", "layer_op_counts", "sample_op_counts"]

_EXC_STATE_WORDS = 3
"""State words of an excitatory neuron read and written per update: v, the refractory counter, theta."""

_INH_STATE_WORDS = 2
"""State words of an inhibitory neuron read and written per update: v and the refractory counter."""


@dataclasses.dataclass(frozen=True)
class OpCounts:
    """Operation counts of a run (totals, or means per sample; widths are applied later).

    Attributes:
        synaptic_ops: Synaptic operations: one accumulate of a weight into a neuron's input per
            (presynaptic spike, postsynaptic neuron) pair.
        neuron_updates: Neuron state updates: one LIF step of one neuron (leak, threshold test).
        weight_updates: Weight updates by learning (one read-modify-write of one weight each).
        weight_reads: Weight words read from memory (by synaptic ops and by learning).
        weight_writes: Weight words written to memory (by learning).
        state_reads: Neuron-state words read (membrane potential, adaptive threshold, ...).
        state_writes: Neuron-state words written.
    """

    synaptic_ops: float = 0
    neuron_updates: float = 0
    weight_updates: float = 0
    weight_reads: float = 0
    weight_writes: float = 0
    state_reads: float = 0
    state_writes: float = 0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not value >= 0:
                raise ValueError(f"OpCounts.{field.name} must be >= 0, got {value!r}")

    def __add__(self, other: "OpCounts") -> "OpCounts":
        if not isinstance(other, OpCounts):
            return NotImplemented
        return OpCounts(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)}
        )

    def scaled(self, factor: float) -> "OpCounts":
        """Return every count times ``factor`` (e.g. ``1 / n_samples`` for a mean per sample)."""
        return OpCounts(**{f.name: getattr(self, f.name) * factor for f in dataclasses.fields(self)})


def layer_op_counts(
    *,
    n_neurons: float,
    timesteps: int,
    input_spikes: float,
    weight_updates: float = 0,
    state_words_per_neuron: int = 2,
) -> OpCounts:
    """Op counts of one event-driven, fully connected layer over ``timesteps`` steps.

    Each input spike adds its row of weights to all ``n_neurons`` neurons (one synaptic op and
    one weight read each); every neuron is updated every step, reading and writing
    ``state_words_per_neuron`` words (v and the adaptive threshold by default); each weight
    update reads and writes one weight. Other synapse groups (lateral inhibition) add their own
    counts with ``+``.

    Args:
        n_neurons: Neurons in the layer (N).
        timesteps: Simulated steps (T = presentation time / dt).
        input_spikes: Presynaptic spikes over the run.
        weight_updates: Weight updates by learning over the run.
        state_words_per_neuron: State words read and written per neuron update.
    """
    synaptic_ops = input_spikes * n_neurons
    neuron_updates = n_neurons * timesteps
    return OpCounts(
        synaptic_ops=synaptic_ops,
        neuron_updates=neuron_updates,
        weight_updates=weight_updates,
        weight_reads=synaptic_ops + weight_updates,
        weight_writes=weight_updates,
        state_reads=neuron_updates * state_words_per_neuron,
        state_writes=neuron_updates * state_words_per_neuron,
    )


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
    weight_updates = 0.0
    if learning:
        weight_updates = columns_updated * n_input + n_input * n  # learning rule + normalization
        if variant is Variant.DIEHL_COOK:
            weight_updates += input_spikes * n
    counts = layer_op_counts(
        n_neurons=n,
        timesteps=time_steps,
        input_spikes=input_spikes,
        weight_updates=weight_updates,
        state_words_per_neuron=_EXC_STATE_WORDS,
    )
    if variant.has_inhibitory_layer:
        inhibitory = layer_op_counts(
            n_neurons=n, timesteps=time_steps, input_spikes=0.0, state_words_per_neuron=_INH_STATE_WORDS
        )
        return counts + inhibitory + OpCounts(synaptic_ops=exc_spikes + inh_spikes * (n - 1))
    return counts + OpCounts(synaptic_ops=exc_spikes * (n - 1))
