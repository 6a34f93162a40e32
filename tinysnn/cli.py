"""The ``tinysnn`` command: ``tinysnn train`` trains and tests networks and prints a table.

Example::

    tinysnn train --dataset mnist --data-root DIR --variant diehl_cook --neurons 100 \\
        --train-samples 1000 --test-samples 1000 --json result.json
"""

import argparse
import json
import platform
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, Optional, Sequence, TextIO, Tuple

from .config import BACKENDS, ConfigError, EncodingConfig, LearningConfig, NetworkConfig, Variant, check_seed
from .quant.formats import FP32, quantized_or_none

if TYPE_CHECKING:  # annotations only: the board path imports none of these (quoted where used)
    import numpy as np

    from .data import Split
    from .deploy import Model, TestTrains
    from .network import Population
    from .quant import QuantSpec
    from .results import RunResult

VARIANT_HELP = (
    "diehl_cook (baseline), sl_stdp (APPROXIMATE SL-STDP baseline: our reading of Srinivasan et "
    "al. 2017, not checked against the paper), tinysnn"
)


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {v}")
    return v


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1, with a message naming the bad value."""
    v = _nonneg_int(text)
    if v == 0:
        raise argparse.ArgumentTypeError("expected a positive integer, got 0")
    return v


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments shared by `tinysnn train` and the benchmarks."""
    p.add_argument("--dataset", default="mnist", help="mnist, fashion-mnist or digits (default mnist)")
    p.add_argument("--data-root", default=None, help="folder holding MNIST/raw or FashionMNIST/raw")
    p.add_argument("--download", action="store_true", help="download MNIST/Fashion-MNIST with torchvision")
    p.add_argument("--variant", default="tinysnn", help=VARIANT_HELP)
    p.add_argument(
        "--neurons",
        type=positive_int,
        nargs="+",
        default=[100],
        help="excitatory neurons; several values train a population of that many networks",
    )
    p.add_argument(
        "--population",
        type=positive_int,
        default=None,
        help="train P networks with seeds seed..seed+P-1 in one run",
    )
    p.add_argument("--train-samples", type=positive_int, default=None, help="training samples (default all)")
    p.add_argument(
        "--assign-samples",
        type=positive_int,
        default=None,
        help="training samples used for label assignment (default: the training samples)",
    )
    p.add_argument("--test-samples", type=positive_int, default=None, help="test samples (default all)")
    p.add_argument(
        "--validation",
        type=_nonneg_int,
        default=0,
        help="carve N samples from the end of the training set and evaluate on them",
    )
    p.add_argument("--epochs", type=positive_int, default=1, help="passes over the training samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="auto (numba on CPU, torch on CUDA), numba, torch, or torch-compile (steps compiled)",
    )
    p.add_argument("--time-steps", type=positive_int, default=250, help="presentation steps (dt = 1 ms)")
    p.add_argument("--max-rate", type=float, default=128.0, help="rate of a full pixel, Hz")
    p.add_argument("--batch-size", type=positive_int, default=500, help="inference batch")
    for name, default, hlp in [
        ("w-inh", None, "tinysnn lateral inhibition w_inh (mV)"),
        ("w-inh-exc", None, "baselines: inh -> exc weight (mV)"),
        ("norm-total", None, "column normalization total (default 0.1 x inputs)"),
        ("theta-plus", None, "adaptive threshold increment (mV)"),
        ("eta-post", None, "tinysnn eta_post"),
        ("t-update", None, "tinysnn update period T_u (steps)"),
        ("n-th", None, "tinysnn N_th"),
        ("nu-pre", None, "pair STDP nu_pre"),
        ("nu-post", None, "pair STDP nu_post"),
        ("eta-p", None, "SL-STDP eta_p (approximate baseline)"),
        ("eta-d", None, "SL-STDP eta_d (approximate baseline)"),
    ]:
        p.add_argument("--" + name, type=float, default=default, help=hlp)
    p.add_argument(
        "--one-spike",
        action="store_true",
        help="at most one excitatory spike per step (BindsNET's DiehlAndCookNodes default)",
    )
    p.add_argument("--scheme", default="ptq", help="quantization scheme: ptq or itq")
    p.add_argument(
        "--quant",
        default=FP32,
        help=f"formats, e.g. weights=Q1.7,vmem=Q8.7,vth=Q9.7 (any subset; {FP32} for none; vmem is V_mem - v_rest)",
    )
    p.add_argument("--rounding", default="truncate", help="truncate, nearest or stochastic")
    p.add_argument(
        "--normalization",
        default=None,
        choices=["sum", "proportional", "apportion", "plain", "settled"],
        help="ITQ with truncation/nearest (docs/method.md; default: the rule that measured best, "
        "tinysnn.quant.DEFAULT_NORMALIZATION): sum, proportional and apportion keep each "
        "column's total on the grid, giving the missing steps to the largest remainders (sum), "
        "the largest weights (proportional) or by a draw in proportion to the remainders "
        "(apportion); plain rounds every scaled weight (the literal rule); settled is plain, "
        "but silent columns within the rounding slack stay as they are",
    )
    p.add_argument(
        "--energy",
        default="auto",
        help="energy meter: auto (the best one here), nvml, jetson, rapl or estimate[:WATTS]",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


NETWORK_CONSTANTS = ("norm_total", "w_inh", "w_inh_exc", "theta_plus")
"""Network constants of `tinysnn train` options (norm_total: 0.1 x inputs when not given)."""
LEARNING_CONSTANTS = ("eta_post", "t_update", "n_th", "nu_pre", "nu_post", "eta_p", "eta_d")


@dataclass(frozen=True)
class TrainChoice:
    """What one run of `tinysnn train` options trains: the dataset, the variant and the constants
    given (``one_spike`` and :data:`NETWORK_CONSTANTS`, :data:`LEARNING_CONSTANTS`; absent = default).
    The benchmarks vary these over one set of parsed options."""

    dataset: str
    variant: str
    constants: Mapping[str, Any]

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "TrainChoice":
        given = {k: getattr(args, k) for k in NETWORK_CONSTANTS + LEARNING_CONSTANTS}
        given = {k: v for k, v in given.items() if v is not None}
        return cls(args.dataset, args.variant, dict(given, one_spike=bool(args.one_spike)))


_OPTIONS = dict(
    {
        k: "--" + k.replace("_", "-")
        for k in NETWORK_CONSTANTS + LEARNING_CONSTANTS + ("max_rate", "time_steps")
    },
    n_neurons="--neurons",
)
"""The `tinysnn train` option of each config field it sets."""


@contextmanager
def _options_named() -> Iterator[None]:
    """Around config building: a ConfigError on a field an option sets starts with that option."""
    try:
        yield
    except ConfigError as exc:
        option = _OPTIONS.get(exc.field or "")
        if option is None:
            raise
        raise ConfigError(f"{option}: {exc}", exc.field) from None


def population_shape(args: argparse.Namespace) -> Tuple[List[int], int]:
    """(sizes, P) of the parsed options: the --neurons values and the number of networks (several
    sizes, one network each; or one size, --population networks of it)."""
    sizes: List[int] = list(args.neurons)
    pop = args.population or 1
    if len(sizes) > 1 and pop > 1:
        raise ConfigError("give either several --neurons values or --population, not both")
    return sizes, (len(sizes) if len(sizes) > 1 else pop)


@dataclass(frozen=True)
class _Configs:
    """The checked configs of a run, before the per-network lists are made."""

    by_size: Mapping[int, NetworkConfig]
    learning: LearningConfig
    seed: int
    sizes: List[int]
    count: int


def _configs(args: argparse.Namespace, choice: TrainChoice, n_input: int) -> _Configs:
    """One config per distinct size, the learning config and the first seed, every value checked by
    the config dataclasses (a bad one names its option)."""
    given = choice.constants
    net_kw: Dict[str, Any] = {k: given[k] for k in NETWORK_CONSTANTS if given.get(k) is not None}
    learn_kw: Dict[str, Any] = {k: given[k] for k in LEARNING_CONSTANTS if given.get(k) is not None}
    sizes, count = population_shape(args)
    seed = check_seed("--seed", args.seed, count)
    variant = Variant.parse(choice.variant)
    one_spike = bool(given.get("one_spike", False))
    with _options_named():
        learning = LearningConfig(**learn_kw)
        by_size = {
            n: NetworkConfig(variant=variant, n_neurons=n, n_input=n_input, one_spike=one_spike, **net_kw)
            for n in sizes
        }
    return _Configs(by_size, learning, seed, sizes, count)


def build_configs(
    args: argparse.Namespace, choice: TrainChoice, n_input: int
) -> Tuple[List[NetworkConfig], LearningConfig, List[int]]:
    """(networks, learning, seeds) of ``choice`` with the sizes and seed of the parsed arguments.

    Networks of one size share one config object, so a large --population costs a list, not P configs.

    Raises:
        ConfigError: for a bad value, naming its option.
    """
    c = _configs(args, choice, n_input)
    nets = [c.by_size[n] for n in c.sizes] if len(c.sizes) > 1 else [c.by_size[c.sizes[0]]] * c.count
    return nets, c.learning, list(range(c.seed, c.seed + c.count))


def run_from_args(
    args: argparse.Namespace, choice: Optional[TrainChoice] = None
) -> Tuple["RunResult", "Population"]:
    """Check every option, load data, build the population, train and evaluate; returns
    (RunResult, population).

    Bad options are refused before any data is read (the network constants are checked again with the
    data's input size) and a run that would not fit in memory before anything is built.
    """
    import torch

    from . import data as D
    from .deploy import check_formats
    from .energy import EnergyMeterError, MeterOptions, make_meter
    from .network import build_population, check_memory, resolve_device
    from .quant import DEFAULT_NORMALIZATION, itq_problem, parse_quant_arg
    from .sim import default_backend
    from .train import RunSpec, run

    export = getattr(args, "export", None)
    if export and Path(export).exists() and any(Path(export).iterdir()):
        raise ConfigError(f"--export: {export} already exists and is not empty: choose a new folder")
    if export:
        check_formats(args.format)
    try:
        spec = parse_quant_arg(
            args.quant,
            rounding=args.rounding,
            scheme=args.scheme,
            normalization=args.normalization or DEFAULT_NORMALIZATION,
        )
    except ValueError as exc:
        raise ConfigError(f"--quant: {exc}") from None
    choice = choice if choice is not None else TrainChoice.from_args(args)
    with _options_named():
        enc = EncodingConfig(time_steps=args.time_steps, max_rate=args.max_rate)
    # every constant, before any data is read (n_input = 1 here: it sets only norm_total's default)
    configs = _configs(args, choice, 1)
    problem = itq_problem(spec, configs.by_size[configs.sizes[0]].theta_plus)
    if problem:
        raise ConfigError(f"--quant: {problem}")
    device = resolve_device(args.device)
    backend = default_backend(device) if args.backend == "auto" else args.backend
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    try:
        meter = make_meter(args.energy, MeterOptions(sync=sync))
    except EnergyMeterError as exc:
        raise ConfigError(f"--energy {args.energy}: {exc}") from None
    try:
        splits = D.load(choice.dataset, args.data_root, download=args.download, validation=args.validation)
        train = splits.train.take(args.train_samples)
        test = splits.validation if args.validation else splits.test
        assert test is not None
        test = test.take(args.test_samples) if args.test_samples is not None else test
        assign = splits.train.take(args.assign_samples) if args.assign_samples is not None else train
        check_memory(
            configs.count,
            train.n_input,
            max(configs.sizes),
            time_steps=enc.time_steps,
            batch_size=args.batch_size,
            eval_samples=len(assign) + len(test),
            backend=backend,
            device=device,
        )
        nets, learn, seeds = build_configs(args, choice, train.n_input)
        torch.set_grad_enabled(False)
        pop = build_population(nets, learn, seeds, device)
        result = run(
            RunSpec(
                pop,
                enc,
                train,
                test,
                assign=assign,
                epochs=args.epochs,
                seed=args.seed,
                backend=backend,
                quant=[spec] * pop.n_networks,
                batch_size=args.batch_size,
                progress=not args.no_progress,
                meter=meter,
            )
        )
    finally:
        meter.close()
    if export:
        _export_all(Path(export), pop, enc, spec, result, train, args)
    return result, pop


def _export_all(
    folder: Path,
    pop: "Population",
    enc: EncodingConfig,
    spec: "QuantSpec",
    result: "RunResult",
    train: "Split",
    args: argparse.Namespace,
) -> None:
    """One model folder per trained network: ``folder`` itself for one, ``folder/net-K`` for several."""
    from .deploy import write_extra
    from .export import export_network, test_trains_of

    for k, net in enumerate(result.networks):
        out = folder if len(result.networks) == 1 else folder / f"net-{k}"
        provenance = {
            "source": "tinysnn train",
            "dataset": result.dataset,
            "evaluated_on": result.eval_split,
            "train_samples": result.train_samples,
            "epochs": result.epochs,
            "run_seed": result.seed,
        }
        trains = test_trains_of(
            result.seed,
            result.backend,
            result.device,
            args.batch_size,
            result.eval_split,
            result.test_samples,
        )
        export_network(
            out,
            pop,
            k,
            enc,
            quantized_or_none(spec),
            net.assignment,
            10,
            accuracy=net.accuracy,
            image_shape=train.image_shape,
            memory=net.memory,
            provenance=provenance,
            test_trains=trains,
        )
        extra = write_extra(out, *args.format)
        print(
            f"exported network {k} to {out}" + (f" (+ {', '.join(p.name for p in extra)})" if extra else "")
        )


_START_UP = {
    "numba": "compiling the numba kernels (the first run on a machine) or loading them from the cache",
    "torch-compile": "torch.compile compiling the steps",
    "torch": "torch's start-up",
}
"""What the first sample of a backend spends besides simulating (:func:`print_table`)."""


def print_table(result: "RunResult", file: Optional[TextIO] = None) -> None:
    """A short result table, one row per network."""
    file = file if file is not None else sys.stdout
    width = max([5] + [len(n.quant) for n in result.networks])  # the quantization text in full
    hdr = f"{'#':>3} {'variant':<11} {'N':>5} {'seed':>5} {'quant':<{width}} {'acc(all)':>9} {'acc(prop)':>9} {'spk/smp':>8}"
    print(hdr, file=file)
    for n in result.networks:
        name = n.variant + ("*" if n.variant == "sl_stdp" else "")
        print(
            f"{n.index:>3} {name:<11} {n.n_neurons:>5} {n.seed:>5} {n.quant:<{width}} "
            f"{100 * n.accuracy:>8.2f}% {100 * n.accuracy_proportion:>8.2f}% {n.spikes_per_sample_test:>8.1f}",
            file=file,
        )
    steady = " after the first" if result.train_samples * result.epochs > 1 else ""
    print(
        f"train {result.train_samples} x {result.epochs} samples in {result.train_seconds:.1f} s "
        f"({result.train_samples_per_s:.1f} samples/s{steady}, {result.aggregate_train_samples_per_s:.1f} "
        f"network-samples/s); inference {result.infer_samples_per_s:.1f} samples/s; "
        f"wall {result.wall_seconds:.1f} s on {result.device} ({result.backend}); "
        f"evaluated on {result.eval_split}",
        file=file,
    )
    rate = result.train_samples_per_s
    start_up = result.first_sample_seconds - (1.0 / rate if rate > 0 and steady else 0.0)
    print(
        f"not in the speeds above: {_START_UP.get(result.backend, 'start-up')} took about {max(start_up, 0.0):.1f} s "
        f"in training (the first sample's {result.first_sample_seconds:.1f} s less a steady sample's) and "
        f"{result.infer_warmup_seconds:.1f} s in a one-sample inference warm-up",
        file=file,
    )
    ex = result.extra
    if ex.get("energy_meter"):
        tag = "ESTIMATE (time x stated power), not a measurement" if ex["energy_is_estimate"] else "measured"
        idle = ex.get("idle_power_w")
        idle_txt = f", idle {idle:.2f} W subtracted" if idle is not None and ex.get("idle_subtracted") else ""
        print(
            f"energy [{ex['energy_meter']}: {tag}{idle_txt}]: training {ex['energy_train_joules']:.3g} J "
            f"({ex['energy_train_joules_per_sample']:.3g} J/sample), inference "
            f"{ex['energy_infer_joules_per_sample']:.3g} J/sample (whole population)",
            file=file,
        )
    for n in result.networks[:8]:
        print(
            f"op-count model, network {n.index}: training {n.op_energy_train_j_per_sample:.3g} J/sample, "
            f"inference {n.op_energy_infer_j_per_sample:.3g} J/sample, "
            f"{n.synops_per_sample_test:.0f} synaptic ops/sample",
            file=file,
        )
    if any(n.variant == "sl_stdp" for n in result.networks):
        print("* sl_stdp is an APPROXIMATE baseline (our reading of SL-STDP, not checked)", file=file)


def machine_info() -> Dict[str, Any]:
    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
    }


def cmd_train(args: argparse.Namespace) -> int:
    result, _ = run_from_args(args)
    print_table(result)
    if args.json:
        recs = [result.record(k) for k in range(len(result.networks))]
        payload: Any = recs[0] if len(recs) == 1 else recs
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=2)
        print(f"wrote {args.json}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Add the C and/or NIR form to an exported model folder (numpy only; nir needs the nir extra)."""
    from .deploy import write_extra

    written = write_extra(args.model, *args.format)
    print(f"wrote {', '.join(str(p) for p in written) or 'nothing (the folder is the model)'}")
    return 0


TRAINS_BUDGET = 1 << 30
"""Most bytes of input spike trains `tinysnn infer` holds at once (B x T x n_input bools): a larger
--batch-size is lowered to fit, so a long presentation runs in smaller batches."""


class _TrainsFile:
    """``--save-trains FILE``: the input of the C reference's ``main`` (docs/deploy.md), written to
    a temporary sibling and renamed at the end, so an interrupted run leaves no partial file."""

    def __init__(self, path: str, samples: int) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise ConfigError(f"--save-trains: {path} already exists: choose a new file or delete it")
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            self.file = open(self.tmp, "wb")  # noqa: SIM115 - closed in finish() / discard()
            self.file.write(f"{samples}\n".encode())
        except OSError as exc:
            raise ConfigError(
                f"--save-trains: cannot write {path} ({exc.strerror}): choose a folder you can write to"
            ) from None

    def add(self, seeds: "np.ndarray", trains: "np.ndarray") -> None:
        """Sample b: its seed (int64, little-endian), then its T x n_input train as 0/1 bytes."""
        import struct

        for seed, train in zip(seeds, trains):
            self.file.write(struct.pack("<q", int(seed)) + train.astype("uint8").tobytes())

    def finish(self) -> None:
        self.file.close()
        Path(self.tmp).replace(self.path)

    def discard(self) -> None:
        self.file.close()
        self.tmp.unlink()


def _infer_trains(
    model: "Model", dataset: str, seed: Optional[int], batch_size: int
) -> Tuple["TestTrains", bool, str]:
    """(source of the trains, whether they are the recorded test trains, a sentence saying which)."""
    from .deploy import TestTrains
    from .streams import STREAM_TEST

    recorded = model.test_trains
    if seed is None and recorded is not None and recorded.dataset == dataset and recorded.split == "test":
        return (
            recorded,
            True,
            f"the trial's own test trains (seed {recorded.seed}, {recorded.encoder} encoder)",
        )
    if seed is not None:
        why = f"drawn from --seed {seed}"
    elif recorded is None:
        why = "drawn from seed 0: this model does not record its test trains (exported before they were)"
    elif recorded.split != "test":
        why = (
            f"drawn from the recorded seed {recorded.seed}: the recorded accuracy was measured on a "
            "validation split carved from the training set, not on these test images"
        )
    else:
        why = (
            f"drawn from the recorded seed {recorded.seed}: the recorded accuracy was measured on "
            f"{recorded.dataset}, not {dataset}"
        )
    chosen = seed if seed is not None else (recorded.seed if recorded is not None else 0)
    fresh = TestTrains(
        seed=chosen,
        stream=STREAM_TEST,
        encoder="isi",
        device="cpu",
        batch_size=batch_size,
        dataset=dataset,
        split="test",
        samples=0,
    )
    return fresh, False, why + ", with the numba simulator's encoder"


def cmd_infer(args: argparse.Namespace) -> int:
    """Run an exported model with the numpy runner (no torch, numba or optuna).

    By default on the spike trains the model's recorded accuracy was measured on (``test_trains``
    in model.json), so that accuracy comes back exactly; ``--seed N`` draws other trains.
    """
    import time

    import numpy as np

    from . import data as D
    from .deploy import load_model, predict, prepare, run_trains, runner_kind, sample_seeds, trial_trains
    from .energy import EnergyMeterError, make_meter

    seed = None if args.seed is None else check_seed("--seed", args.seed)
    dataset = D.normalize_name(args.dataset)
    model = load_model(args.model)
    source, own, trains_text = _infer_trains(model, dataset, seed, args.batch_size)
    images, labels, _ = D.load_arrays(dataset, args.data_root)["test"]
    default_n = source.samples if own and source.samples else len(labels)
    n = min(args.test_samples or default_n, len(labels))
    images, labels = images[:n], labels[:n]
    if images.ndim != 2 or images.shape[1] != model.n_input:
        raise ConfigError(
            f"{dataset} images have {images.shape[1:]} inputs but the model takes "
            f"{model.n_input}: use the dataset the model was trained on"
        )
    if int(labels.max(initial=0)) >= model.n_classes or int(labels.min(initial=0)) < 0:
        raise ConfigError(f"{dataset}: labels must be classes 0..{model.n_classes - 1}, as the model's")
    net = prepare(model)
    T = model.encoding.time_steps
    batch = (
        source.batch_size
        if source.encoder == "torch"
        else max(1, min(args.batch_size, TRAINS_BUDGET // (T * model.n_input)))
    )
    try:
        meter = make_meter(args.energy) if args.energy != "none" else None
    except EnergyMeterError as exc:
        raise ConfigError(f"--energy {args.energy}: {exc}") from None
    saved = _TrainsFile(args.save_trains, n) if args.save_trains else None
    predictions = []
    try:
        if meter is not None:
            meter.start()
        t0 = time.perf_counter()
        for a in range(0, n, batch):
            chunk = images[a : a + batch]
            trains = trial_trains(model, chunk, a, source)
            seeds = sample_seeds(source.seed, a, len(chunk), source.stream)
            counts = run_trains(model, trains, seeds, net)
            predictions.append(predict(model, counts))
            if saved is not None:
                saved.add(seeds, trains)
        seconds = time.perf_counter() - t0
        reading = meter.stop() if meter is not None else None
        if saved is not None:
            saved.finish()
    except BaseException:
        if saved is not None:
            saved.discard()
        raise
    finally:
        if meter is not None:
            meter.close()
    pred = np.concatenate(predictions) if predictions else np.zeros(0, np.int64)
    acc = float((pred == labels).mean()) if n else float("nan")
    recorded_acc = model.meta.get("accuracy")
    record = {
        "model": str(args.model),
        "dataset": dataset,
        "samples": n,
        "accuracy": acc,
        "samples_per_s": n / seconds if seconds > 0 else 0.0,
        "no_prediction": int((pred < 0).sum()),
        "runner": runner_kind(model),
        "trains": dict(source.as_dict(), recorded=own),
        "recorded_accuracy": recorded_acc,
    }
    print(
        f"{model.variant} N={model.n_neurons} {model.meta['label']}: accuracy {100 * acc:.2f} % on {n} "
        f"{dataset} test images ({record['samples_per_s']:.1f} samples/s, {runner_kind(model)})"
    )
    recorded_text = ""
    if recorded_acc is not None and own:
        recorded_text = f"; recorded accuracy {100 * recorded_acc:.2f} % on {source.samples} images"
    print(f"spike trains: {trains_text}{recorded_text}")
    if reading is not None:
        tag = "ESTIMATE (time x stated power), not a measurement" if reading.is_estimate else "measured"
        record.update(
            energy_meter=reading.meter,
            energy_is_estimate=reading.is_estimate,
            energy_j_per_sample=reading.joules / max(n, 1),
        )
        print(f"energy [{reading.meter}: {tag}]: {reading.joules / max(n, 1):.3g} J/sample")
    if saved is not None:
        print(f"wrote {args.save_trains} ({n} samples for the C reference's main)")
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2))
        print(f"wrote {args.json}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="tinysnn", description="tinySNN spiking networks: train and test")
    sub = parser.add_subparsers(dest="command")
    tr = sub.add_parser("train", help="train networks with STDP and test them")
    add_train_arguments(tr)
    tr.add_argument("--json", default=None, help="write the result record(s) to this file")
    tr.add_argument(
        "--export",
        default=None,
        help="write the trained network as a model folder (several networks: FOLDER/net-K)",
    )
    tr.add_argument(
        "--format",
        default=["model"],
        nargs="+",
        choices=["model", "c", "nir"],
        help="with --export, one or more of: model (the folder alone), c (also model.h + "
        "tinysnn_infer.c), nir (also model.nir, extra nir)",
    )
    ex = sub.add_parser("export", help="add the C reference and/or a NIR graph to an exported model folder")
    ex.add_argument("model", help="model folder (from tinysnn train --export or tinysnn-search export)")
    ex.add_argument(
        "--format",
        required=True,
        nargs="+",
        choices=["c", "nir"],
        help="one or more of: c (model.h + tinysnn_infer.c), nir (model.nir, extra nir)",
    )
    inf = sub.add_parser("infer", help="run an exported model with numpy alone (tinysnn.deploy's runner)")
    inf.add_argument("model", help="model folder (from tinysnn train --export or tinysnn-search export)")
    inf.add_argument(
        "--dataset",
        required=True,
        help="mnist, fashion-mnist or digits (its test split; digits needs pip install scikit-learn)",
    )
    inf.add_argument("--data-root", default=None, help="folder holding MNIST/raw or FashionMNIST/raw")
    inf.add_argument(
        "--test-samples",
        type=positive_int,
        default=None,
        help="first N test images (default: the recorded test's count, else all)",
    )
    inf.add_argument(
        "--seed",
        type=int,
        default=None,
        help="draw other input trains from this seed (default: the trains the recorded accuracy "
        "was measured on)",
    )
    inf.add_argument("--batch-size", type=positive_int, default=200, help="images run together")
    inf.add_argument(
        "--energy",
        default="none",
        help="none (default), auto (the best meter here), nvml, jetson, rapl or estimate[:WATTS]",
    )
    inf.add_argument(
        "--save-trains",
        default=None,
        metavar="FILE",
        help="also write the seeds and trains run, as the C reference's main reads them",
    )
    inf.add_argument("--json", default=None, help="write the result record to this file")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return {"infer": cmd_infer, "export": cmd_export, "train": cmd_train}[args.command](args)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"tinysnn: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
