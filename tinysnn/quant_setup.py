"""Quantization setup of a population (docs/method.md §2): the networks' fixed-point rows, one spec
per network, and the weights and thresholds put on their grids.

* ITQ: :func:`apply_quant_rows` with ``training=True`` activates the rows during training, and
  :func:`quantize_parameters` puts the starting weights and thresholds on their grids.
* PTQ: training runs in FP32; afterwards :func:`apply_quant_rows` with ``training=False`` and
  :func:`quantize_parameters` quantize once, and V_mem is quantized at every inference step.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from .network import Population, rounding_field
from .quant import NONE, PARAMS, QuantSpec, Scheme, itq_problem, population_rows, quantize_rows
from .quant.formats import ROW_HI, ROW_LO, ROW_SCALE
from .streams import quantize_seed


def apply_quant_rows(pop: Population, specs: Sequence[Optional[QuantSpec]], training: bool) -> None:
    """Set the population's fixed-point rows and rounding codes from one spec per network.

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
    rules = [s.normalization.code for s in full]
    pop.params["norm_rule"] = torch.tensor(rules, dtype=torch.int64, device=pop.device)
    for param in PARAMS:
        rows, modes = population_rows(use, param, pop.device)
        pop.params[rounding_field(param)] = modes
        pop.quant[param] = vmem_rows_about_rest(rows, modes, pop.exc.v_rest) if param == "vmem" else rows


def vmem_rows_about_rest(rows: torch.Tensor, modes: torch.Tensor, v_rest: float) -> torch.Tensor:
    """Rows of a V_mem format read as V_mem - v_rest: the saturation bounds move by v_rest.

    V_mem is stored relative to the excitatory resting potential (our decision, docs/method.md §2
    is silent): a neuron at rest holds 0, the threshold v_th - v_rest = 13 mV, and inhibition
    pushes it negative. With v_rest on the grid (any whole mV when f >= 0) the grid itself is the
    same as in absolute mV; only the range moves, so ``Q8.0`` holds -128..127 mV around rest
    (-193..62 mV absolute) instead of -128..127 mV absolute, which would cut v_rest - w_inh.
    The same rows serve the baselines' inhibitory neurons (their V_mem near -60..-40 mV lies
    5..25 mV above the excitatory rest).

    ``modes`` (P,) are the rows' rounding codes: rows of FP32 networks (:data:`NONE`) have no grid.

    Raises:
        ValueError: if v_rest is not a multiple of a quantized row's step 2^-f.
    """
    active = modes != NONE
    scaled = rows[:, ROW_SCALE].double() * float(v_rest)
    off_grid = active & (scaled != torch.floor(scaled))
    if bool(off_grid.any()):
        step = 1.0 / float(rows[int(off_grid.nonzero()[0]), ROW_SCALE])
        raise ValueError(
            f"v_rest = {v_rest} mV is not a multiple of the V_mem format's step {step:g} mV: V_mem is "
            f"stored as V_mem - v_rest, so v_rest must lie on the grid; use more fractional bits or "
            f"a v_rest in whole mV"
        )
    out = rows.clone()
    out[:, ROW_LO] += float(v_rest)
    out[:, ROW_HI] += float(v_rest)
    return out


def quantize_parameters(pop: Population, seed: int = 0) -> None:
    """Put weights and thresholds on their grids (PTQ after training; ITQ at start); a threshold is
    stored as theta = V_th - v_th, so theta itself is quantized (docs/method.md §2).

    Stochastic rounding draws from a generator per network seeded by (seed, the network's own
    seed), so a network's quantized values do not depend on the rest of the population.
    """
    weights, theta = pop.weights.clone(), pop.theta.clone()
    for k in range(pop.n_networks):
        g = torch.Generator(device=pop.device)
        g.manual_seed(quantize_seed(int(seed), int(pop.seeds[k]) if k < len(pop.seeds) else k))
        sl = slice(k, k + 1)
        weights[sl] = quantize_rows(pop.weights[sl], pop.quant["weights"][sl], pop.rounding("weights")[sl], g)
        theta[sl] = quantize_rows(pop.theta[sl], pop.quant["vth"][sl], pop.rounding("vth")[sl], g)
    pop.weights, pop.theta = weights.contiguous(), theta.contiguous()


__all__ = ["apply_quant_rows", "quantize_parameters", "vmem_rows_about_rest"]
