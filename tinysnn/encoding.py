"""Poisson rate coding (docs/method.md §1).

A pixel of intensity ``x`` in 0..255 fires in each step of ``dt`` ms with probability
``p = x / 255 * max_rate * dt / 1000`` (a Bernoulli approximation of a Poisson process of rate
``x / 255 * max_rate`` Hz; exact in the limit dt -> 0, and what BindsNET's example does in effect).
One uniform number is drawn per input per step from a seeded ``torch.Generator`` on the device of
the images, so the same seed gives the same trains on the same device.
"""

from __future__ import annotations

from typing import Optional

import torch

from .config import EncodingConfig


def spike_probability(images: torch.Tensor, enc: EncodingConfig) -> torch.Tensor:
    """Per-step firing probability of each input, ``(..., n_in)`` float32."""
    scale = enc.max_rate * enc.dt / 1000.0 / 255.0
    return images.to(torch.float32) * scale


def poisson(
    images: torch.Tensor,
    enc: EncodingConfig,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Encode images as Poisson spike trains.

    Args:
        images: ``(n_in,)`` or ``(B, n_in)`` intensities 0..255 (any dtype).
        enc: presentation length, step and maximum rate.
        generator: seeded generator on the images' device (``torch.Generator(device=...)``).

    Returns:
        Boolean spikes ``(T, n_in)`` or ``(T, B, n_in)``.
    """
    p = spike_probability(images, enc)
    shape = (int(enc.time_steps),) + tuple(p.shape)
    u = torch.rand(shape, generator=generator, device=p.device)
    return u < p


def make_generator(seed: int, device: "torch.device | str" = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(int(seed))
    return g


__all__ = ["make_generator", "poisson", "spike_probability"]
