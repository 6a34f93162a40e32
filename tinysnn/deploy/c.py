"""The C export of a model: ``model.h`` (packed arrays and constants) beside ``tinysnn_infer.c``.

``model.h`` holds the model as the C reference reads it: the packed weight and threshold codes
(the payload's bytes, as ``static const uint8_t`` arrays: theta = V_th - v_th for a qWN model, the
thresholds v_th + theta in float32 otherwise; FP32 weights instead as a ``static const float``
array of the same values, decoded once here, so that the C reference adds whole rows), the neuron
labels, and every constant as a macro: for a qWN model the integer plan of :func:`tinysnn.deploy.runner.fixed_plan`, for an
FP32 or qW model the float32 constants as exact hexadecimal literals. ``tinysnn_infer.c`` is a
fixed file, the same for every model. numpy only.
"""

from pathlib import Path
from typing import List, SupportsFloat, Union

import numpy as np

from ..config import Variant
from ..quant.formats import format_text, rounding_code
from .model import Model, add_files
from .packing import pack_codes
from .runner import fixed_plan, prepare

__all__ = ["C_SOURCE", "ram_bytes", "write_c"]

C_SOURCE = Path(__file__).with_name("tinysnn_infer.c")


def _bytes(name: str, data: bytes, ctype: str = "uint8_t") -> str:
    rows = [", ".join(str(b) for b in data[k : k + 24]) for k in range(0, len(data), 24)] or ["0"]
    body = ",\n    ".join(rows)
    return f"static const {ctype} {name}[{max(len(data), 1)}] = {{\n    {body}\n}};"


def _f32(x: SupportsFloat) -> str:
    return f"{float(np.float32(x)).hex()}f"


def _hex(x: float) -> str:
    """A float32 value as a C hexadecimal literal, without its mantissa's trailing zeros."""
    mantissa, exponent = x.hex().split("p")
    whole, _, frac = mantissa.partition(".")
    return f"{whole}.{frac.rstrip('0') or '0'}p{exponent}f"


def _floats(name: str, values: np.ndarray) -> str:
    """``values`` (finite float32, as a loaded model holds) as a ``static const float`` array of exact
    hexadecimal literals, in their row-major order."""
    texts = [_hex(x) for x in np.asarray(values, np.float32).ravel().astype(np.float64).tolist()]
    rows = [", ".join(texts[k : k + 8]) for k in range(0, len(texts), 8)] or ["0"]
    body = ",\n    ".join(rows)
    return f"static const float {name}[{max(len(texts), 1)}] = {{\n    {body}\n}};"


def _int(x: int) -> str:
    return f"INT64_C({int(x)})"


def _wide_sums(model: Model) -> bool:
    """Whether a sum of weight codes can pass int32 (the C reference then adds in int64)."""
    wf = model.format_of("weights")
    return wf is not None and model.n_input * (2**wf.total_bits - 1) > 2**31 - 1


def model_header(model: Model) -> str:
    """The text of ``model.h`` for ``model``."""
    net = prepare(model)
    wf, vf, tf = model.format_of("weights"), model.format_of("vmem"), model.format_of("vth")
    g = model.groups
    defs: List[tuple] = [
        ("N", model.n_neurons),
        ("N_INPUT", model.n_input),
        ("T", int(model.meta["encoding"]["time_steps"])),
        ("CLASSES", model.n_classes),
        ("BASELINE", int(net.baseline)),
        ("ONE_SPIKE", int(net.one_spike)),
        ("VMEM_FIXED", int(vf is not None)),
        ("W_FIXED", int(wf is not None)),
        ("SEED", _int(net.seed)),
        ("REFR", net.exc[3]),
        ("REFR_I", net.inh[4]),
    ]
    if wf is not None:
        weights = pack_codes(g["input_weights"], wf.total_bits, signed=False)
        weights_text = (
            "/* input weights, row-major (input i, neuron j), packed big-endian at their bit width */\n"
            + _bytes("tinysnn_weights", weights)
        )
        defs += [
            ("W_BITS", wf.total_bits),
            ("W_FRAC", wf.frac_bits),
            ("W_SCALE", f"{2.0**-wf.frac_bits!r}"),
            ("WIDE_SUMS", int(_wide_sums(model))),
        ]
    else:
        w32 = np.ascontiguousarray(g["input_weights"], np.float32)
        weights = pack_codes(w32.view(np.uint32), 32, False)  # the payload's bytes: 4 a weight
        weights_text = (
            "/* input weights, row-major (input i, neuron j): the payload's float32 values as exact\n"
            "   hexadecimal literals, a contiguous row per input (4 bytes a weight, as packed) */\n"
            + _floats("tinysnn_weights", w32)
        )
        defs += [("W_BITS", 32)]
    if vf is not None:
        assert tf is not None
        c = fixed_plan(net)
        vth = pack_codes(g["exc_theta"], tf.total_bits, signed=tf.is_signed())
        vth_name, vth_text = (
            "tinysnn_theta",
            "thresholds, stored as theta = V_th - v_th (V_th = v_th + theta)",
        )
        defs += [
            ("F", c.fF),
            ("FV", c.fv),
            ("G", c.fG),
            ("SHIFT", c.shift),
            ("VMEM_LO", _int(c.lo)),
            ("VMEM_HI", _int(c.hi)),
            ("ROUNDING", rounding_code(net.rounding)),
            ("LEAK_EXC", _int(c.leak_exc)),
            ("LEAK_INH", _int(c.leak_inh)),
            ("W_LAT_F", _int(c.w_lat_F)),
            ("W_EI_F", _int(c.w_ei_F)),
            ("K_RESET", _int(c.k_reset)),
            ("K_RESET_I", _int(c.k_reset_i)),
            ("INH_REST", _int(c.inh_rest)),
            ("VR_V", _int(c.vr_v)),
            ("VR_G", _int(c.vr_G)),
            ("VTH_I_G", _int(c.vth_i_G)),
            ("VTH_BITS", tf.total_bits),
            ("VTH_FRAC", tf.frac_bits),
            ("VTH_SIGNED", int(tf.is_signed())),
            ("VTH_G", _int(c.vth_G)),
        ]
    else:
        vth = pack_codes(net.vth.view(np.uint32), 32, signed=False)
        vth_name, vth_text = (
            "tinysnn_vth",
            "thresholds V_th = v_th + theta, added in float32 as the simulator does",
        )
        vr, vres, dec, _ = net.exc
        vr_i, vres_i, vth_i, dec_i, _ = net.inh
        defs += [
            ("VR", _f32(vr)),
            ("VRES", _f32(vres)),
            ("DEC", _f32(dec)),
            ("VR_I", _f32(vr_i)),
            ("VRES_I", _f32(vres_i)),
            ("VTH_I", _f32(vth_i)),
            ("DEC_I", _f32(dec_i)),
            ("W_LAT", _f32(net.w_lat)),
            ("W_EI", _f32(net.w_ei)),
        ]
    flash, ram = len(weights) + len(vth) + 2 * model.n_neurons, ram_bytes(model)
    defs += [("FLASH_BYTES", flash), ("RAM_BYTES", ram)]
    lines = [
        f"/* model.h: {model.variant} N={model.n_neurons} {model.meta['label']}, generated by tinysnn from",
        f" * {model.path or 'a model'}; do not edit. Weights {format_text(wf)}, V_mem "
        f"{format_text(vf)}, V_th {format_text(tf)}, rounding {net.rounding}.",
        f" * Flash: {flash} bytes of model arrays (weights {len(weights)}, thresholds {len(vth)}, labels "
        f"{2 * model.n_neurons}) plus tinysnn_infer.c's code;",
        f" * RAM: {ram} bytes of state (static), plus the input train the caller passes "
        f"(T x n_input = {model.encoding.time_steps * model.n_input} bytes). */",
        "#ifndef TINYSNN_MODEL_H",
        "#define TINYSNN_MODEL_H",
        "#include <stdint.h>",
        "",
    ]
    lines += [f"#define TINYSNN_{k} {v}" for k, v in defs]
    labels = ", ".join(str(int(x)) for x in model.labels)
    lines += [
        "",
        weights_text,
        f"/* frozen {vth_text} of the excitatory neurons */",
        _bytes(vth_name, vth),
        "/* class of each neuron from label assignment, -1: does not vote */",
        f"static const int16_t tinysnn_labels[{model.n_neurons}] = {{{labels}}};",
        "",
        "#endif",
        "",
    ]
    return "\n".join(lines)


def ram_bytes(model: Model) -> int:
    """The bytes of ``tinysnn_infer.c``'s static state for ``model`` (its struct ``st``): per neuron,
    rounded up to a multiple of 8 neurons, the accumulator (float64 for FP32 weights, int64 where a
    sum of codes can pass 2^31, else int32), V_mem, current, overshoot and threshold (int64 for a
    qWN model, float32 otherwise), a decoded code (4), refractory counter (4) and two flags (1 each);
    the baselines add their inhibitory V_mem, refractory counter and two flags."""
    wf, vf = model.format_of("weights"), model.format_of("vmem")
    baseline = Variant(model.variant).has_inhibitory_layer
    acc = 8 if wf is None or _wide_sums(model) else 4
    state = (8 if vf is not None else 4) * (5 if baseline else 4)
    per_neuron = acc + state + 4 + 4 + 2 + ((4 + 2) if baseline else 0)
    return per_neuron * (-(-model.n_neurons // 8) * 8)


def write_c(model: Model, folder: Union[str, Path]) -> List[Path]:
    """Write ``model.h`` and ``tinysnn_infer.c`` into the model folder ``folder``; returns their paths.

    Raises:
        ModelError: when the folder cannot be written; neither file is left half-written.
    """
    header, source = model_header(model), C_SOURCE.read_text()
    return add_files(
        folder, {"model.h": lambda p: p.write_text(header), "tinysnn_infer.c": lambda p: p.write_text(source)}
    )
