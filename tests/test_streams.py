"""The counter-based stochastic-rounding streams: one hash, the same numbers in numba, torch and numpy."""

from __future__ import annotations

import numpy as np
import torch

from tinysnn import streams as S

MASK = (1 << 64) - 1


def _fmix64_reference(z: int) -> int:
    """murmur3's fmix64 on unsigned 64-bit Python ints (the textbook form)."""
    z &= MASK
    z ^= z >> 33
    z = (z * 0xFF51AFD7ED558CCD) & MASK
    z ^= z >> 33
    z = (z * 0xC4CEB9FE1A85EC53) & MASK
    return z ^ (z >> 33)


def _signed(z: int) -> int:
    return z - (1 << 64) if z >= 1 << 63 else z


def _values():
    rng = np.random.default_rng(0)
    return [0, 1, -1, 2**62, -(2**63), 2**63 - 1] + [int(v) for v in rng.integers(-(2**63), 2**63 - 1, 50)]


def test_fmix64_equals_the_reference_on_tensors_and_arrays() -> None:
    vals = _values()
    want = [_signed(_fmix64_reference(v)) for v in vals]
    assert S.fmix64(torch.tensor(vals, dtype=torch.int64)).tolist() == want
    assert S.fmix64(np.array(vals, dtype=np.int64)).tolist() == want


def test_the_numba_kernels_draw_what_torch_draws() -> None:
    from tinysnn.sim import numba_kernels as K

    base = S.stream_base(torch.tensor([12345]), torch.tensor([7]), S.STREAM_W_LEARN)
    key = S.step_key(base, torch.tensor(3))
    idx = S.synapse_index(torch.arange(5)[:, None], torch.arange(4)[None, :])
    u_torch = (S.uniform_bits(key.view(1, 1), idx).to(torch.float32) * 2.0**-S.U_BITS).view(-1).tolist()
    k = int(key)
    u_numba = [float(K._uniform(k, int(i))) for i in idx.view(-1)]
    assert u_torch == u_numba
    assert all(0.0 <= u < 1.0 for u in u_torch) and len(set(u_torch)) == 20


def test_draws_are_uniform_and_keyed_by_every_part() -> None:
    idx = torch.arange(200_000)
    u = S.uniform_bits(torch.tensor(99), idx).double() * 2.0**-S.U_BITS
    assert abs(float(u.mean()) - 0.5) < 0.005 and abs(float(u.var()) - 1 / 12) < 0.002
    keys = {
        int(S.step_key(S.stream_base(torch.tensor(a), torch.tensor(b), c), torch.tensor(t)))
        for a in (0, 1)
        for b in (0, 1)
        for c in (S.STREAM_VMEM, S.STREAM_VTH)
        for t in (0, 1)
    }
    assert len(keys) == 16


def test_every_seed_derivation_keeps_its_numbers() -> None:
    """Values of the formulas before they moved into tinysnn.streams (issue 27): changing one would
    re-seed every stored run and study."""
    from tinysnn.streams import digest_seed, per_trial_weight_seed, quantize_seed, sampler_seed

    assert [sampler_seed(7, d) for d in (0, 1, 5)] == [1517663117, 618432044, 196237177]
    assert [quantize_seed(3, s) for s in (0, 42)] == [1887404767, 1867900425]
    assert [per_trial_weight_seed(7, d) for d in (0, 5)] == [700021, 700026]
    assert digest_seed("9f86d081884c7d65") == 528928897
    streams = (S.STREAM_TRAIN, S.STREAM_ASSIGN, S.STREAM_TEST, S.STREAM_LEARN)
    assert [S.mix_seed(1, s, 4) for s in streams] == [141996458, 436302074, 1489255053, 974258066]


def test_the_streams_of_each_namespace_are_distinct() -> None:
    sample = [
        "STREAM_TRAIN",
        "STREAM_ASSIGN",
        "STREAM_TEST",
        "STREAM_LEARN",
        "STREAM_QUANTIZE",
        "STREAM_SAMPLER_DRAW",
    ]
    rounding = [n for n in S.__all__ if n.startswith("STREAM_") and n not in sample]
    for names in (sample, rounding):
        codes = [getattr(S, n) for n in names]
        assert len(set(codes)) == len(codes), names
    assert len(rounding) == 9
