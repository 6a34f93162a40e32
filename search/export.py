"""Export a trial of a study as a deployable model folder (``tinysnn-search export``).

Each complete trial stores its trained network as the artifact ``model.pt`` (written by
:mod:`search.objective`); this module reads it back through Optuna's artifact API, rebuilds the
network and writes the model folder of :mod:`tinysnn.deploy` with the study's provenance and the
seed, backend and split of the trial's test, so that ``tinysnn infer`` draws the trial's own test
trains again. The stored file is untrusted: no pickle runs, and what it holds must build a network.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta
from optuna.trial import TrialState

from .errors import SearchError

__all__ = ["MODEL_ARTIFACT", "export_trial"]

MODEL_ARTIFACT = "model.pt"


def _trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    trials = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    if not trials:
        raise SearchError(f"study {study.study_name!r} has no trial {number}")
    trial = trials[0]
    if trial.state != TrialState.COMPLETE:
        raise SearchError(
            f"trial {number} is {trial.state.name}, not COMPLETE: only a finished trial has a model"
        )
    return trial


def _load_network(path: Path, number: int) -> Dict[str, Any]:
    from ._checkpoint import VerifyError, read_verified

    fix = "pack the study again on the machine that trained it, or re-run the trial"
    try:
        model = read_verified(path)
    except VerifyError as exc:
        raise SearchError(f"trial {number}: its stored network is damaged ({exc}): {fix}") from None
    except Exception:  # noqa: BLE001 - torch's refusal of a pickled object, or bytes that do not load
        raise SearchError(
            f"trial {number}: its stored network is not plain tensors and values (a pickled "
            f"object, refused without running it): {fix}"
        ) from None
    if not isinstance(model, dict) or model.get("format") != "tinysnn-search-model/1":
        raise SearchError(f"trial {number}: its stored network is not a tinysnn-search model file: {fix}")
    return model


def _trial_trains(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> Optional[Any]:
    """Where the trial's test trains came from (the study's seed and the trial's backend, device,
    evaluated split and size); None for a trial recorded before these attributes existed."""
    from tinysnn.export import test_trains_of
    from tinysnn.train import RunSpec

    attrs, science = trial.user_attrs, study.user_attrs.get("spec_science") or {}
    seed, backend, device = science.get("seed"), attrs.get("backend"), attrs.get("device")
    split, samples = attrs.get("eval_split"), attrs.get("test_samples")
    if seed is None or backend is None or device is None or split is None or samples is None:
        return None
    batch = RunSpec.batch_size  # search.objective runs at the default
    return test_trains_of(seed, backend, device, batch, split, samples)


def export_trial(
    study: optuna.Study, storage: Any, number: int, artifacts: Optional[str], folder: Path
) -> Path:
    """Write trial ``number`` of ``study`` (kept in ``storage``) as a model folder at ``folder``.

    Raises:
        SearchError: for a trial that is not COMPLETE, has no model artifact, or whose artifact
            file is missing here (one line naming the trial, the file and the fix).
    """
    from tinysnn.config import EncodingConfig, LearningConfig, LIFParams, NetworkConfig
    from tinysnn.export import export_network
    from tinysnn.network import build_population
    from tinysnn.quant import parse_quant_arg, quantized_or_none

    trial = _trial(study, number)
    metas = [m for m in get_all_artifact_meta(trial, storage=storage) if m.filename == MODEL_ARTIFACT]
    if not metas:
        raise SearchError(
            f"trial {number} has no {MODEL_ARTIFACT} artifact (it was trained before models were stored)"
        )
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise SearchError(f"{folder} already exists and is not empty: choose a new folder or delete it")
    where = Path(artifacts) if artifacts else None
    source = where / metas[0].artifact_id if where is not None else None
    if source is None or not source.is_file():
        raise SearchError(
            f"trial {number}: its model file {source or metas[0].artifact_id} is not on this machine: "
            "copy the study with `tinysnn-search pack` on the machine that trained it and `unpack` it here"
        )
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / MODEL_ARTIFACT
        download_artifact(
            artifact_store=FileSystemArtifactStore(str(where)),
            file_path=str(local),
            artifact_id=metas[0].artifact_id,
        )
        model = _load_network(local, number)
    try:
        net_kw = dict(model["network"])
        net_kw["exc"], net_kw["inh"] = LIFParams(**net_kw["exc"]), LIFParams(**net_kw["inh"])
        pop = build_population(NetworkConfig(**net_kw), LearningConfig(**model["learning"]), seeds=0)
        pop.load_state_dict(model["state"])
        spec = parse_quant_arg(str(model["quant"]))
        encoding = EncodingConfig(**model["encoding"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise SearchError(
            f"trial {number}: its stored network does not describe a network "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}): "
            "re-run the trial"
        ) from None
    attrs = trial.user_attrs
    provenance = {
        "source": "tinysnn-search",
        "study": study.study_name,
        "trial": number,
        "dataset": model.get("dataset"),
        "spec_fingerprint": study.user_attrs.get("spec_fingerprint"),
        "weight_seed": attrs.get("weight_seed"),
    }
    memory = {
        k: attrs.get(k)
        for k in (
            "memory_norm",
            "memory_convention",
            "memory_bytes_compact",
            "memory_bytes_as_simulated",
            "memory_reference_bytes",
        )
    }
    return export_network(
        folder,
        pop,
        0,
        encoding,
        quantized_or_none(spec),
        model["labels"],
        10,
        accuracy=model.get("accuracy"),
        memory=memory,
        provenance=provenance,
        test_trains=_trial_trains(study, trial),
    )
