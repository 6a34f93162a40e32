"""The NIR export of a model (extra ``nir``): the network as a Neuromorphic Intermediate Representation graph.

Nodes: ``input`` -> ``affine`` (the input weights, dequantized: code x 2^-f) -> ``lif`` (the
excitatory layer) -> ``output``, with the lateral inhibition as a recurrent edge ``lif`` ->
``lateral`` -> ``lif`` (tinysnn: -w_inh off the diagonal). The baselines' inhibitory layer is a
second LIF: ``lif`` -> ``exc_to_inh`` -> ``inh_lif`` -> ``inh_to_exc`` -> ``lif``.

Units: mV and seconds. Our neurons are current-based with delta synapses: an input of weight w
raises V_mem by w mV at once, and V_mem leaks toward v_rest with time constant tau. In NIR's LIF,
``tau dv/dt = (v_leak - v) + r I``, a delta input of charge w raises v by ``r w / tau``, so
``r = tau``. The thresholds are the frozen V_th = v_th + theta of each neuron.

What NIR cannot express, and the graph therefore leaves out (``metadata`` says so): the one-spike
rule (at most one excitatory spike per step), the refractory period, the discrete time step with
the fixed-point rounding of a quantized model, and the adaptive threshold while learning (only
the frozen thresholds of inference are exported).
"""

import inspect
from pathlib import Path
from typing import Union

import numpy as np

from .model import Model, ModelError, add_files
from .runner import prepare

__all__ = ["NIR_FILE", "write_nir"]

NIR_FILE = "model.nir"
_Scalar = Union[float, np.floating]  # the runner's constants are float32 scalars


def write_nir(model: Model, folder: Union[str, Path]) -> Path:
    """Write ``model.nir`` (HDF5, read back with ``nir.read``) into ``folder``."""
    try:
        import nir
    except ImportError:
        raise ModelError('--format nir needs the nir package: pip install "tinysnn[nir]"') from None
    net = prepare(model)
    n, dt = model.n_neurons, float(model.meta["encoding"]["dt"]) / 1000.0
    wf = model.format_of("weights")
    w = model.groups["input_weights"].astype(np.float64)
    weights = (w * 2.0**-wf.frac_bits if wf is not None else w).astype(np.float32)
    vr, vres, dec, _ = net.exc

    # nir >= 1.0.4 has LIF(v_reset=...) and graph metadata; 1.0.1, the last release for Python 3.8,
    # has neither: there the graph carries the network alone
    has_reset = "v_reset" in inspect.signature(nir.LIF).parameters

    def lif(v_rest: _Scalar, v_reset: _Scalar, v_th: np.ndarray, decay: _Scalar) -> "nir.LIF":
        tau = -dt / float(np.log(decay))
        kw = {"v_reset": np.full(n, v_reset, np.float32)} if has_reset else {}
        return nir.LIF(
            tau=np.full(n, tau, np.float32),
            r=np.full(n, tau, np.float32),
            v_leak=np.full(n, v_rest, np.float32),
            v_threshold=np.asarray(v_th, np.float32),
            **kw,
        )

    off_diagonal = (np.ones((n, n)) - np.eye(n)).astype(np.float32)
    nodes = {
        "input": nir.Input(input_type=np.array([model.n_input])),
        "affine": nir.Affine(weight=weights.T.copy(), bias=np.zeros(n, np.float32)),
        "lif": lif(vr, vres, net.vth, dec),
        "output": nir.Output(output_type=np.array([n])),
    }
    edges = [("input", "affine"), ("affine", "lif"), ("lif", "output")]
    if net.baseline:
        vr_i, vres_i, vth_i, dec_i, _ = net.inh
        nodes["exc_to_inh"] = nir.Linear(weight=(float(net.w_ei) * np.eye(n)).astype(np.float32))
        nodes["inh_lif"] = lif(vr_i, vres_i, np.full(n, vth_i), dec_i)
        nodes["inh_to_exc"] = nir.Linear(weight=-float(net.w_lat) * off_diagonal)
        edges += [
            ("lif", "exc_to_inh"),
            ("exc_to_inh", "inh_lif"),
            ("inh_lif", "inh_to_exc"),
            ("inh_to_exc", "lif"),
        ]
    else:
        nodes["lateral"] = nir.Linear(weight=-float(net.w_lat) * off_diagonal)
        edges += [("lif", "lateral"), ("lateral", "lif")]
    meta = {
        "source": "tinysnn",
        "variant": model.variant,
        "units": "mV, s",
        "dt": dt,
        "not_expressed": "one spike per step, refractory period, discrete-time fixed-point rounding, "
        "threshold adaptation while learning",
        "labels": np.asarray(model.labels),
        "v_reset_mV": float(vres),
    }
    has_meta = "metadata" in inspect.signature(nir.NIRGraph).parameters  # not in nir 1.0.1 (Python 3.8)
    graph = nir.NIRGraph(nodes=nodes, edges=edges, **({"metadata": meta} if has_meta else {}))
    (path,) = add_files(folder, {NIR_FILE: lambda p: nir.write(str(p), graph)})
    return path
