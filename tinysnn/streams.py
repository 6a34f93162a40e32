"""Every random stream and seed of the project, listed and derived here once.

Seeds (each derivation is a function or table below; nothing else mixes seeds):

* A network's weights: ``torch.Generator().manual_seed(network seed)``
  (:func:`tinysnn.network.build_population`); a population of ``count`` networks from the command
  line takes the network seeds ``seed .. seed + count - 1``.
* One sample's input train and stochastic-rounding streams: :func:`mix_seed` of (the run's seed, a
  sample stream below, the sample's index): the ``STREAM_TRAIN`` / ``STREAM_ASSIGN`` /
  ``STREAM_TEST`` seed draws the train (numba: :func:`tinysnn.sim.numba_kernels.encode_isi`; torch:
  :func:`tinysnn.encoding.make_generator`), ``STREAM_LEARN`` keys training sample i's rounding
  draws, and an inference sample's train seed keys its own.
* The one-off quantization of a network (PTQ, ITQ's start): :func:`quantize_seed`.
* A search (package ``search``): the sampler of draw i, :func:`sampler_seed`; a trial's weight
  seed, :func:`per_trial_weight_seed` or, shared by the trials that train alike,
  :func:`digest_seed` of the training's fingerprint.

Stochastic rounding (docs/method.md §2) draws u ~ U[0, 1) as ``uniform(step_key(base, step),
index)`` with

    base = stream_base(sample seed, network seed, parameter)

where the sample seed already holds the run's seed and the sample (its stream and index), the
network seed is the network's own weight seed, ``parameter`` names what is rounded (one of the
rounding ``STREAM_*`` codes below, a namespace apart from the sample streams) and ``index`` the
element (neuron j, or synapse ``(i << 32) | j``). Nothing in the key is a network's position in its
population, so a network trains to the same result alone and inside any population (our decision;
the method only asks for u ~ U[0, 1)), and both simulators draw the same u for the same element, so
their stochastic runs agree too.

The mixing function is murmur3's 64-bit finalizer. Every function here is written once for all
users: it takes int64 scalars inside the numba kernels (which compile them with numba's
``register_jitable``), int64 tensors in the torch simulator and int64 numpy arrays elsewhere;
int64 products wrap modulo 2^64 in all three, and the shifts are made logical by masks. The
module imports neither numba nor torch.
"""

#: Sample streams: the ``stream`` of :func:`mix_seed` (what a sample seed is for).
STREAM_TRAIN = 0  #: training sample i's input train
STREAM_ASSIGN = 1  #: label-assignment sample i's input train
STREAM_TEST = 2  #: test (or validation) sample i's input train
STREAM_LEARN = 7  #: training sample i's stochastic-rounding streams
STREAM_QUANTIZE = 13  #: a network's one-off quantization (:func:`quantize_seed`)
STREAM_SAMPLER_DRAW = 0x5A4D  #: a search's sampler of draw i (:func:`sampler_seed`)

#: Rounding streams: what a draw rounds (the ``param`` of :func:`stream_base`). Two roundings of one
#: value in one step need two codes.
STREAM_W_DEPRESS = 1  #: weights after pair-wise depression (diehl_cook)
STREAM_W_LEARN = 2  #: weights after the learning rule's potentiation / update
STREAM_W_NORM = 3  #: weights after column normalization (end of sample)
STREAM_VMEM = 4  #: excitatory V_mem after each step
STREAM_VMEM_INH = 5  #: inhibitory V_mem after each step (baselines)
STREAM_VTH = 6  #: theta's increment theta+ on its grid (after a crossing)
STREAM_VMEM_DECAY = 7  #: the decrement of excitatory V_mem toward rest (stochastic rounding)
STREAM_VMEM_INH_DECAY = 8  #: the decrement of inhibitory V_mem toward rest (baselines)
STREAM_THETA_DECAY = 9  #: theta's decrement toward 0 (end of sample)

# 64-bit constants as signed int64 (two's complement), so that numba and torch both take them.
_M1 = 0xFF51AFD7ED558CCD - (1 << 64)
_M2 = 0xC4CEB9FE1A85EC53 - (1 << 64)
_GOLDEN = 0x9E3779B97F4A7C15 - (1 << 64)
_K_SAMPLE = 0x2545F4914F6CDD1D
_K_NETWORK = 0x5851F42D4C957F2D
_K_PARAM = 0x14057B7EF767814F
_LOW31 = (1 << 31) - 1
_LOW24 = (1 << 24) - 1
U_BITS = 24  #: bits of a draw: u = k 2^-24, k in [0, 2^24)
#: where numba's (and numpy's) Geometric draw switches from search (p >= 1/3) to inversion: the
#: input encoder (sim.numba_kernels) and the runner's copy of it (deploy.runner) draw alike
GEOMETRIC_SEARCH = 0.333333333333333333333333


def mix_seed(seed: int, stream: int, index: int) -> int:
    """A 31-bit seed from (seed, stream, sample index) by splitmix64-style mixing: the seed of one
    sample's input train and of its stochastic-rounding streams."""
    z = (seed * 0x9E3779B1 + stream * 0x85EBCA77 + index * 0xC2B2AE3D + 0x27D4EB2F) & 0xFFFFFFFFFFFF
    z = (z ^ (z >> 17)) * 0xED5AD4BB & 0xFFFFFFFFFFFF
    z = (z ^ (z >> 11)) * 0xAC4C1B51 & 0xFFFFFFFFFFFF
    z = z ^ (z >> 15)
    return z & 0x7FFFFFFF


def quantize_seed(seed: int, network_seed: int) -> int:
    """The seed of a network's one-off quantization (stochastic rounding of its weights and
    thresholds, :func:`tinysnn.quant_setup.quantize_parameters`) in a run of seed ``seed``."""
    return mix_seed(seed, STREAM_QUANTIZE, network_seed)


def sampler_seed(study_seed: int, draw: int) -> int:
    """The seed of a search's sampler for its ``draw``-th fresh draw (``search._study``)."""
    return mix_seed(study_seed, STREAM_SAMPLER_DRAW, draw)


def per_trial_weight_seed(study_seed: int, draw: int) -> int:
    """A trial's weight seed under ``weight_seed = "per_trial"``: by the trial's draw."""
    return (study_seed * 100003 + draw) % (2**31)


def digest_seed(hex_digest: str) -> int:
    """A 31-bit seed from a hexadecimal digest (its first 32 bits): the weight seed shared by the
    trials whose trainings have that fingerprint (``weight_seed = "per_training"``)."""
    return int(hex_digest[:8], 16) % (2**31)


def fmix64(z):
    """Murmur3's 64-bit finalizer on int64 (a numba scalar or a torch tensor), wrapping mod 2^64."""
    z = z ^ ((z >> 33) & _LOW31)
    z = z * _M1
    z = z ^ ((z >> 33) & _LOW31)
    z = z * _M2
    return z ^ ((z >> 33) & _LOW31)


def stream_base(sample_seed, network_seed, param):
    """The key of one (sample, network, parameter) stream; int64 scalars or broadcastable tensors."""
    return fmix64(sample_seed * _K_SAMPLE + network_seed * _K_NETWORK + param * _K_PARAM)


def step_key(base, step):
    """The key of the draws of time step ``step`` (the end-of-sample pass uses step T)."""
    return fmix64(base + (step + 1) * _GOLDEN)


def uniform_bits(key, index):
    """The 24-bit integer k of the draw u = k 2^-24 for element ``index`` under ``key``."""
    return (fmix64(key + index * _GOLDEN) >> 40) & _LOW24


def synapse_index(i, j):
    """The element index of weight (input i, neuron j): it does not depend on the padded width."""
    return (i << 32) | j


__all__ = [
    "digest_seed",
    "mix_seed",
    "per_trial_weight_seed",
    "quantize_seed",
    "sampler_seed",
    "STREAM_ASSIGN",
    "STREAM_LEARN",
    "STREAM_QUANTIZE",
    "STREAM_SAMPLER_DRAW",
    "STREAM_TEST",
    "STREAM_TRAIN",
    "STREAM_VMEM",
    "STREAM_VMEM_INH",
    "STREAM_THETA_DECAY",
    "STREAM_VMEM_DECAY",
    "STREAM_VMEM_INH_DECAY",
    "STREAM_VTH",
    "STREAM_W_DEPRESS",
    "STREAM_W_LEARN",
    "STREAM_W_NORM",
    "U_BITS",
    "fmix64",
    "step_key",
    "stream_base",
    "synapse_index",
    "uniform_bits",
]
