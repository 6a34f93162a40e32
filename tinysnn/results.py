"""What a run reports: one :class:`RunResult` per run of :func:`tinysnn.train.run`, with one
:class:`NetworkResult` per network of the population."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List

from .quant.formats import FP32, NO_ROUNDING


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
    quant: str = FP32
    """The quantization text (:func:`tinysnn.quant.record_fields`), :data:`~tinysnn.quant.FP32` for none."""
    scheme: str = FP32
    rounding: str = NO_ROUNDING
    """The rounding mode; ``"none"`` for FP32 (rows written before this said ``""``)."""
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
    """Samples/s of the population's training loop (each network sees every sample) after its first
    sample, whose time (``first_sample_seconds``) includes compiling or loading the kernels; with one
    sample, that sample's rate."""
    infer_samples_per_s: float
    """Samples/s of inference (label assignment + test), per network, after a one-sample warm-up
    (``infer_warmup_seconds``) that compiles or loads the inference kernel."""
    extra: Dict[str, Any] = field(default_factory=dict)
    first_sample_seconds: float = 0.0
    """Time of the first training sample of the run (in ``train_seconds``): a steady sample plus, on
    the first run on a machine, compiling the numba kernels (loading them from the cache after)."""
    infer_warmup_seconds: float = 0.0
    """Time of one sample run through inference before it is timed (not in ``assign_seconds`` or
    ``test_seconds``): compiling or loading the inference kernel, plus that sample."""

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


__all__ = ["NetworkResult", "RunResult"]
