"""The read-side commands on a study built by hand (no training): `status` (trials so far, pruned trials
by reason, the front marked), `select` (the fidelity only where the study has one), `report --out` and
`dashboard` (one line for a bad folder, host or port, before anything is written or served)."""

from __future__ import annotations

import io
import socket
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.trial import TrialState, create_trial

from search._study import METRIC_NAMES
from search.cli import main
from search.select import LIMITS_KEY

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

# (N, weights format, accuracy, M_norm, energy J); a min_accuracy of 0.5 keeps the last one off the front
TRIALS = [
    (100, "fp32", 0.80, 0.26, 3e-6),
    (100, "UQ1.7", 0.79, 0.07, 1e-6),
    (400, "fp32", 0.91, 1.00, 9e-6),
    (400, "UQ1.3", 0.85, 1.20, 9e-6),
    (40, "UQ1.1", 0.30, 0.01, 1e-7),
]
# why each pruned trial was pruned, as the runner records it
PRUNED = [
    {"rejected": "V_th step too coarse"},
    {"released": "same configuration as trial 1"},
    {"released": "same configuration as trial 2"},
    {"released": "over budget: workers asking at once; the others hold it"},
]


def _attrs(n: int, weights: str) -> Dict[str, Any]:
    quant = "fp32" if weights == "fp32" else "qW"
    return {
        "variant": "tinysnn",
        "n_neurons": n,
        "quant": quant,
        "scheme": "fp32" if quant == "fp32" else "ptq",
        "rounding": "" if quant == "fp32" else "truncate",
        "weights_format": weights,
        "vmem_format": "fp32",
        "vth_format": "fp32",
        "quant_text": weights,
    }


def _study(folder: Path, fidelity: bool = False) -> Tuple[str, optuna.Study]:
    url = f"sqlite:///{folder / 'tiny.db'}"
    study = optuna.create_study(
        study_name="tiny", storage=url, directions=["maximize", "minimize", "minimize"]
    )
    study.set_metric_names(METRIC_NAMES)
    study.set_user_attr("trials", 8)
    study.set_user_attr(LIMITS_KEY, {"min_accuracy": 0.5, "max_memory_norm": None, "max_energy_j": None})
    study.set_user_attr("spec_science", {"fidelity": {"train_samples": 100}} if fidelity else {"data": {}})
    for n, weights, acc, mem, energy in TRIALS:
        study.add_trial(create_trial(values=[acc, mem, energy], user_attrs=_attrs(n, weights)))
    for attrs in PRUNED:
        study.add_trial(create_trial(state=TrialState.PRUNED, user_attrs=attrs))
    return url, study


def _table(out: str) -> List[List[str]]:
    """The rows of the `trials so far` table: its lines after the header and the dashes."""
    lines = out.split("trials so far", 1)[1].splitlines()[3:]
    return [line.split() for line in lines if line.strip()]


def test_status_shows_the_trials_so_far_with_the_front_marked(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    url, _ = _study(tmp_path)
    assert main(["status", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "5 complete of 8, 4 pruned" in out
    rows = _table(out)
    assert [r[0] if r[0] == "yes" else "" for r in rows] == ["yes", "yes", "yes", "", ""]
    assert [r[1 if r[0] == "yes" else 0] for r in rows] == ["0", "1", "2", "3", "4"]
    assert all(r[-1] == "COMPLETE" for r in rows)  # pruned ones are counted, not listed
    assert "Pareto front: 3 trials" in out


def test_status_counts_the_pruned_trials_by_reason_in_the_right_number(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    url, _ = _study(tmp_path)
    assert main(["status", "--storage", url]) == 0
    out = capsys.readouterr().out
    (pruned,) = [line for line in out.splitlines() if line.strip().startswith("pruned:")]
    assert "1 impossible combination (" in pruned and "2 duplicates (" in pruned
    assert "1 over the budget (" in pruned and "other" not in pruned
    assert "infeasible (kept off the front): 1 complete trial; 1 below min_accuracy 0.5" in out


def test_status_last_keeps_the_table_short_but_the_front_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    url, _ = _study(tmp_path)
    assert main(["status", "--storage", url, "--last", "1"]) == 0
    out = capsys.readouterr().out
    assert "the last 1 of 5 trials, and older ones on the front" in out
    numbers = [r[1] if r[0] == "yes" else r[0] for r in _table(out)]
    assert numbers == ["0", "1", "2", "4"]  # the front (0, 1, 2) and the last trial (4)


def test_status_without_a_study_says_run_a_spec_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["status"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tinysnn-search: error: no study here")
    assert (
        "tinysnn-search run studies/quickstart.toml" in err[0] and "tinysnn-search status SPEC.toml" in err[0]
    )
    assert "--storage URL" in err[0] and "select" not in err[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mu", ["inf", "nan", "-1", "x"])
def test_select_mu_must_be_a_finite_number(
    dashboard_study: str, capsys: pytest.CaptureFixture, mu: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["select", "--storage", dashboard_study, "--mu", mu])
    assert exit_.value.code == 2
    assert "argument --mu: expected a finite number >= 0" in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("command", ["status", "select", "confirm"])
def test_an_empty_storage_url_is_refused_not_taken_for_the_last_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, command: str
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = ["studies.toml"] if command == "confirm" else []
    with pytest.raises(SystemExit) as exit_:
        main([command, *spec, "--storage", ""])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "argument --storage: expected an Optuna storage URL" in err[-1]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fidelity", [False, True])
def test_select_shows_the_fidelity_only_where_the_study_has_one(
    tmp_path: Path, capsys: pytest.CaptureFixture, fidelity: bool
) -> None:
    url, _ = _study(tmp_path, fidelity=fidelity)
    assert main(["select", "--storage", url]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert ("fidelity" in header) is fidelity and ("cheap" in out) is fidelity
    assert "selected: trial 1" in out


def _report(url: str, out: Path) -> int:
    return main(["report", "--storage", url, "--out", str(out), "--mu", "0.2"])


def test_report_out_onto_a_file_or_under_one_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    url, _ = _study(tmp_path)
    afile = tmp_path / "afile"
    afile.write_text("mine")
    for out, words in ((afile, "is a file: pass a folder"), (afile / "sub", "lies under the file")):
        assert _report(url, out) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("tinysnn-search: error: --out") and words in err[0]
    assert afile.read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("tiny.db")] == ["afile"]


def test_report_writes_into_an_existing_folder_and_keeps_its_other_files(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("matplotlib")
    url, _ = _study(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert _report(url, out) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "tiny-trials.csv").is_file()
    assert (out / "tiny-pareto.png").is_file()


@pytest.fixture
def dashboard_study(tmp_path: Path) -> str:
    pytest.importorskip("optuna_dashboard")
    url, _ = _study(tmp_path)
    return url


def _one_error_line(capsys: pytest.CaptureFixture) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert captured.out == "" and len(err) == 1, captured  # nothing served: the URL line never printed
    return err[0]


def test_dashboard_port_out_of_range_names_the_option(
    dashboard_study: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["dashboard", "--storage", dashboard_study, "--port", "70000"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "argument --port: expected a port number in 1..65535, got 70000" in err[-1]
    assert "Traceback" not in "".join(err)


@pytest.mark.parametrize("host", ["256.1.1.1"])
def test_dashboard_bad_host_is_one_line(
    dashboard_study: str, capsys: pytest.CaptureFixture, host: str
) -> None:
    assert main(["dashboard", "--storage", dashboard_study, "--host", host]) == 2
    line = _one_error_line(capsys)
    assert f"--host {host!r} is neither an IP address nor a known host name" in line and "127.0.0.1" in line


def test_dashboard_port_in_use_is_one_line(dashboard_study: str, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["dashboard", "--storage", dashboard_study, "--port", str(port)]) == 2
    line = _one_error_line(capsys)
    assert f"port {port} on 127.0.0.1 is in use" in line and "--port" in line


def test_dashboard_serves_a_model_as_octet_stream(tmp_path: Path) -> None:
    optuna_dashboard = pytest.importorskip("optuna_dashboard")
    from search.cli import _models_as_octet_stream

    url, study = _study(tmp_path)
    store = FileSystemArtifactStore(str(tmp_path))
    model = tmp_path / "model.pt"
    model.write_bytes(b"\x00\x01")
    trial = study.ask()
    artifact = upload_artifact(artifact_store=store, file_path=str(model), study_or_trial=trial)
    study.tell(trial, state=TrialState.FAIL)
    app = _models_as_octet_stream(optuna_dashboard.wsgi(url, artifact_store=store))
    got: List[Any] = []
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": f"/artifacts/{study._study_id}/{trial._trial_id}/{artifact}",
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
    }
    body = b"".join(app(environ, lambda status, headers, *a: got.append((status, dict(headers)))))
    ((status, headers),) = got
    assert status.startswith("200") and body == b"\x00\x01"
    assert headers["Content-Type"] == "application/octet-stream"
