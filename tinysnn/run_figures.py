"""Figures of a trained network besides its accuracy: Eq. 4 memory under both conventions with
M_norm (docs/method.md §3), and the value ranges observed in training (for range analysis)."""

from __future__ import annotations

from typing import Any, Dict, List

import torch

from .memory import MemoryReference, memory_breakdown, memory_norm, reference_memory
from .network import Population
from .quant import QuantSpec


def memory_figures(
    variant: str, n_neurons: int, n_input: int, spec: QuantSpec, reference: MemoryReference
) -> Dict[str, Any]:
    """Eq. 4 memory of a network under both conventions, and M_norm against the FP32 ``reference``."""
    out: Dict[str, Any] = {"reference": f"{reference.variant} FP32 N={reference.n_neurons}"}
    for conv in ("compact", "as_simulated"):
        m = memory_breakdown(variant, n_neurons, n_input, spec, conv)
        ref = reference_memory(reference.n_neurons, n_input, conv, reference.variant)
        out[conv] = {
            "bits": m.bits,
            "bytes": m.bytes,
            "reference_bytes": ref.bytes,
            "m_norm": memory_norm(m, ref),
        }
    return out


def observed_ranges(pop: Population, vmem_range: torch.Tensor) -> List[Dict[str, List[float]]]:
    """Per network, the [min, max] of weights, V_mem (seen while training) and theta = V_th - v_th
    (under the key ``vth``: the value the V_th format stores)."""
    out = []
    for k in range(pop.n_networks):
        n = int(pop.sizes[k])
        w = pop.weights[k, :, :n]
        theta = pop.theta[k, :n]
        out.append(
            {
                "weights": [float(w.min()), float(w.max())],
                "vmem": [float(vmem_range[k, 0]), float(vmem_range[k, 1])],
                "vth": [float(theta.min()), float(theta.max())],
            }
        )
    return out


__all__ = ["memory_figures", "observed_ranges"]
