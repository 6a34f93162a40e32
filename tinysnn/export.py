"""Export a trained network of a population as a deployable model folder (:mod:`tinysnn.deploy`).

The model holds what inference needs and nothing of training: the input weights and the frozen
thresholds, stored as theta = V_th - v_th (about the base v_th, one of the layer constants), as
integer codes of their formats (float32 for FP32 parameters),
the V_mem state buffer, the layer constants, the label assignment and the description of the
network, and where its recorded test accuracy's spike trains came from (:func:`test_trains_of`),
so that ``tinysnn infer`` draws the same trains and gives the same accuracy back. Quantized values
are checked to lie on their grids (they do after ``tinysnn.train.run``, which quantizes the
weights and thresholds at the end of training).
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np

from .config import EncodingConfig
from .deploy.model import Group, TestTrains, tinysnn_version, write_model
from .network import Population, constants
from .quant import PARAM_SIGNED, PARAMS, QFormat, QuantSpec, record_fields
from .quant.formats import TEXT_NORMALIZATION
from .sim import STREAM_TEST

__all__ = ["ExportError", "export_network", "model_formats", "test_trains_of"]


class ExportError(ValueError):
    """A network cannot be exported as it is; the message says why."""


def model_formats(spec: Optional[QuantSpec]) -> Dict[str, Optional[QFormat]]:
    """The model's format of each parameter, signedness explicit (None for FP32)."""
    out: Dict[str, Optional[QFormat]] = {}
    for param in PARAMS:
        fmt = spec.format_of(param) if spec is not None else None
        out[param] = (
            None if fmt is None else QFormat(fmt.int_bits, fmt.frac_bits, fmt.is_signed(PARAM_SIGNED[param]))
        )
    return out


def test_trains_of(
    seed: int, backend: str, device: str, batch_size: int, eval_split: str, samples: int
) -> TestTrains:
    """Where a run's test trains came from: its seed, the resolved ``backend`` (numba draws
    inter-spike intervals per sample; torch a batch per generator on ``device``), the inference
    batch, the evaluated split (``RunResult.eval_split``, e.g. ``digits:test``) and its size."""
    dataset, _, split = str(eval_split).partition(":")
    return TestTrains(
        seed=int(seed),
        stream=STREAM_TEST,
        encoder="isi" if backend == "numba" else "torch",
        device=str(device).split(":")[0],
        batch_size=int(batch_size),
        dataset=dataset or None,
        split="validation" if split == "validation" else "test",
        samples=int(samples),
    )


def _codes(name: str, values: np.ndarray, fmt: QFormat) -> np.ndarray:
    scaled = values.astype(np.float64) * 2.0**fmt.frac_bits
    codes = np.round(scaled).astype(np.int64)
    lo, hi = fmt.code_range()
    if not np.array_equal(codes, scaled) or codes.min(initial=lo) < lo or codes.max(initial=hi) > hi:
        raise ExportError(
            f"{name} are not on the grid of {fmt.text}: quantize the network first (tinysnn.train.run does)"
        )
    return codes


def export_network(
    folder: Union[str, Path],
    pop: Population,
    index: int,
    enc: EncodingConfig,
    spec: Optional[QuantSpec],
    labels: Sequence[int],
    n_classes: int,
    *,
    accuracy: Optional[float] = None,
    image_shape: Optional[Sequence[int]] = None,
    memory: Optional[Dict[str, Any]] = None,
    provenance: Optional[Dict[str, Any]] = None,
    test_trains: Optional[TestTrains] = None,
) -> Path:
    """Write network ``index`` of ``pop`` as a model folder.

    Args:
        folder: the model folder to create (must not exist, or be empty).
        pop: the trained (and quantized) population.
        index: which network.
        enc: the presentation window it was trained and tested with.
        spec: its quantization (None = FP32).
        labels: (N,) class of each neuron from label assignment, -1 for silent ones.
        n_classes: classes of the dataset.
        accuracy: test accuracy, for the record.
        image_shape: (height, width) of the images, for the record.
        memory: Eq. 4 figures, for the record.
        provenance: where the network comes from (study, trial, spec fingerprint, dataset, ...).
        test_trains: the trains ``accuracy`` was measured on (:func:`test_trains_of`).
    """
    n = int(pop.sizes[index])
    if len(labels) != n:
        raise ExportError(f"{len(labels)} neuron labels for a network of {n} neurons")
    formats = model_formats(spec)
    record = record_fields(spec)
    c = constants(pop, enc)
    ex, ih = pop.exc, pop.inh
    w = pop.weights[index, :, :n].detach().cpu().numpy().astype(np.float32)
    theta = pop.theta[index, :n].detach().cpu().numpy().astype(np.float32)

    def stored(name: str, values: np.ndarray, param: str) -> Group:
        fmt = formats[param]
        return Group(name, values if fmt is None else _codes(name, values, fmt), fmt)

    zeros = np.zeros(n, np.float32)
    prm = {k: float(v[index]) for k, v in pop.params.items()}
    groups = [stored("input_weights", w, "weights")]
    if pop.variant.has_inhibitory_layer:
        groups += [
            Group("exc_to_inh_weight", np.array([prm["w_exc_inh"]], np.float32)),
            Group("inh_to_exc_weight", np.array([prm["w_inh_exc"]], np.float32)),
        ]
    else:
        groups.append(Group("lateral_inhibition", np.array([prm["w_inh"]], np.float32)))
    groups += [
        stored("exc_vmem", zeros, "vmem"),
        stored("exc_theta", theta, "vth"),
        Group(
            "exc_constants", np.array([ex.v_rest, ex.v_reset, ex.v_th, c.dec_exc, c.refrac_exc], np.float32)
        ),
    ]
    if pop.variant.has_inhibitory_layer:
        groups += [
            stored("inh_vmem", zeros, "vmem"),
            Group(
                "inh_constants",
                np.array([ih.v_rest, ih.v_reset, ih.v_th, c.dec_inh, c.refrac_inh], np.float32),
            ),
        ]
    meta: Dict[str, Any] = {
        "variant": pop.variant.value,
        "n_input": int(pop.n_input),
        "n_neurons": n,
        "n_classes": int(n_classes),
        "image_shape": list(image_shape) if image_shape is not None else None,
        "encoding": {"time_steps": int(enc.time_steps), "dt": float(enc.dt), "max_rate": float(enc.max_rate)},
        "one_spike": prm["one_spike"] > 0,
        "formats": {p: (None if f is None else f.as_dict()) for p, f in formats.items()},
        "label": record.label,
        "rounding": record.rounding,
        "scheme": record.scheme,
        "normalization": spec.normalization.value if spec is not None else TEXT_NORMALIZATION.value,
        "leak": {"exc": c.leak_exc, "inh": c.leak_inh},
        "seed": int(pop.seeds[index]),
        "labels": [int(x) for x in labels],
        "accuracy": accuracy,
        "test_trains": test_trains.as_dict() if test_trains is not None else None,
        "memory": memory,
        "provenance": dict(
            provenance or {},
            tinysnn_version=tinysnn_version(),
            exported=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        ),
    }
    return write_model(folder, meta, groups)
