"""The ``tinysnn-search`` command: run, status, select and dashboard of an Optuna study of tinySNN models.

Example::

    tinysnn-search run studies/quickstart.toml
    tinysnn-search status
    tinysnn-search select --mu 0.2
    tinysnn-search confirm studies/quickstart.toml   # a spec with [fidelity]: the front on the full data
    tinysnn-search report --out runs/report
    tinysnn-search dashboard

``run`` remembers its study in ``runs/.last.json``, so the other commands need no arguments after it;
they also take the spec (``tinysnn-search select studies/mnist-n400.toml --mu 0.2``) or a storage URL
(``--storage URL [--study NAME]``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple

from tinysnn.cli import positive_int as _pos_int

LAST = Path("runs") / ".last.json"


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}") from None
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {value}")
    return value


def _nonneg_int(text: str) -> int:
    value = _nonneg_float(text)
    if value != int(value):
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(value)


def _port(text: str) -> int:
    """argparse type: a TCP port, 1..65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number in 1..65535, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number in 1..65535, got {value}")
    return value


def _storage_url(text: str) -> str:
    """argparse type: a non-empty Optuna storage URL."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "expected an Optuna storage URL such as sqlite:///runs/NAME.db, got ''"
        )
    return text


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tinysnn-search",
        description="Optuna search for small, accurate, energy-efficient spiking networks (tinySNN)",
    )
    sub = p.add_subparsers(dest="command")
    r = sub.add_parser("run", help="create or resume a study from a spec and run it to its trial budget")
    r.add_argument("spec", help="study spec (TOML), e.g. studies/quickstart.toml")
    r.add_argument(
        "--storage", help="Optuna storage URL (default: the spec's, else sqlite:///runs/<study>.db)"
    )
    r.add_argument("--trials", type=_pos_int, help="the study's total of complete trials (not N more)")
    r.add_argument("--population", type=_pos_int, help="trials asked and trained together")
    r.add_argument(
        "--device", choices=["cpu", "cuda", "auto"], help="where trials train (default: the spec's)"
    )
    r.add_argument("--data-root", help="folder holding MNIST/raw or FashionMNIST/raw")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    c = sub.add_parser(
        "confirm",
        help="re-train the Pareto front of a [fidelity] study on the full "
        "[data] and record the confirmed values select ranks on",
    )
    c.add_argument("spec", help="the study's spec (TOML), with a [fidelity] table")
    c.add_argument("--storage", type=_storage_url, help="Optuna storage URL (default: the spec's)")
    c.add_argument("--top", type=_pos_int, help="at most this many front trials, highest accuracy first")
    c.add_argument(
        "--neighbours",
        type=_nonneg_int,
        default=0,
        metavar="M",
        help="also the M complete trials nearest to the front (default 0)",
    )
    c.add_argument(
        "--device", choices=["cpu", "cuda", "auto"], help="where trials train (default: the spec's)"
    )
    c.add_argument("--data-root", help="folder holding MNIST/raw or FashionMNIST/raw")
    c.add_argument("--no-progress", action="store_true", help="no progress bars")
    for name, hlp in (
        ("status", "trial counts against the budget, the front, the best accuracy"),
        ("select", "pick a trial from the Pareto front with R = acc - mu M_norm"),
        ("report", "figures (Pareto front, size x precision, reward vs mu) and a CSV of the trials"),
        ("export", "write a trial's network as a deployable model folder"),
        ("pack", "write the study (database, artifacts, trained networks) into one file for another machine"),
        ("dashboard", "start optuna-dashboard on the study's storage and artifacts"),
    ):
        s = sub.add_parser(name, help=hlp)
        s.add_argument("spec", nargs="?", help="study spec (default: the study of the last run)")
        s.add_argument("--storage", type=_storage_url, help="Optuna storage URL")
        s.add_argument("--study", help="study name (default: the only study in the storage)")
        if name in ("select", "export"):
            s.add_argument("--mu", type=_nonneg_float, default=0.2, help="memory weight mu (default 0.2)")
            s.add_argument(
                "--nu", type=_nonneg_float, default=0.0, help="energy weight nu: R -= nu E/E_max (default 0)"
            )
        if name == "export":
            s.add_argument(
                "--trial", type=int, default=None, help="the trial to export (default: select's with --mu)"
            )
            s.add_argument("--out", required=True, help="the model folder to write (must not exist)")
            s.add_argument("--artifacts", help="artifact folder (default: the one the study recorded)")
            s.add_argument(
                "--format",
                default=["model"],
                nargs="+",
                choices=["model", "c", "nir"],
                help="one or more: model (the folder alone), c (also model.h + tinysnn_infer.c), "
                "nir (also model.nir, extra nir)",
            )
        if name == "pack":
            s.add_argument("--out", required=True, help="the pack file to write (.tar.gz)")
            s.add_argument(
                "--checkpoints", action="store_true", help="also the checkpoints of unfinished trials"
            )
            s.add_argument("--artifacts", help="artifact folder (default: the one the study recorded)")
        if name == "select":
            s.add_argument(
                "--sweep",
                nargs="*",
                type=_nonneg_float,
                default=None,
                metavar="MU",
                help="also the selected trial for each mu (default 0 0.05 0.1 0.2 0.5 1)",
            )
            s.add_argument("--json", help="write the selection, the ranked front and the sweep to this file")
            s.add_argument("--export", help="write the selected trial's model folder into this folder")
        if name == "status":
            s.add_argument(
                "--last",
                type=_nonneg_int,
                default=20,
                metavar="N",
                help="show the last N trials that were not pruned, and the front (default 20)",
            )
        if name == "report":
            s.add_argument("--out", help="folder to write into (default runs/<study>/report)")
            s.add_argument(
                "--mu",
                type=_nonneg_float,
                nargs="+",
                default=None,
                metavar="MU",
                help="the mu values to select a trial for (default 0 0.05 0.1 0.2 0.5 1)",
            )
            s.add_argument(
                "--nu", type=_nonneg_float, default=0.0, help="energy weight nu: R -= nu E/E_max (default 0)"
            )
        if name == "dashboard":
            s.add_argument("--host", default="127.0.0.1", help="address to listen on")
            s.add_argument("--port", type=_port, default=8080, help="1..65535 (default 8080)")
            s.add_argument("--artifacts", help="artifact folder (default: the one the study recorded)")
    u = sub.add_parser(
        "unpack",
        help="restore a packed study: DEST/<study>.db and DEST/<study>/ (artifacts, trained, checkpoints)",
    )
    u.add_argument("pack", help="a file written by tinysnn-search pack")
    u.add_argument("--dest", default="runs", help="folder to restore into (default runs, as a spec expects)")
    u.add_argument("--force", action="store_true", help="replace a study of the same name under --dest")
    return p


def _locate(args: argparse.Namespace) -> Tuple[str, Optional[str], Optional[str]]:
    """(storage URL, study name or None, artifact folder or None) from a spec, --storage or the last run."""
    from .errors import SearchError
    from .spec import load_spec

    if args.spec:
        spec = load_spec(args.spec)
        return (
            args.storage or spec.study.storage_url,
            args.study or spec.study.name,
            str(spec.study.artifact_dir / "artifacts"),
        )
    if args.storage:
        return args.storage, args.study, None
    if LAST.is_file():
        try:
            last = json.loads(LAST.read_text())
            return last["storage"], args.study or last["study"], last.get("artifacts")
        except (ValueError, KeyError):
            pass
    dbs = sorted(Path("runs").glob("*.db"))
    if len(dbs) == 1:
        return f"sqlite:///{dbs[0]}", args.study, None
    command = getattr(args, "command", None) or "status"
    named = f"tinysnn-search {command} SPEC.toml, or --storage URL [--study NAME]"
    if dbs:
        raise SearchError(
            f"which study? runs/ holds {len(dbs)} study databases and no run of this folder was "
            f"recorded in runs/.last.json: name one, {named}"
        )
    raise SearchError(
        "no study here (no run of this folder is recorded in runs/.last.json, runs/ holds no "
        f"study database): run a spec first (tinysnn-search run studies/quickstart.toml), or name "
        f"the study, {named}"
    )


def _load(args: argparse.Namespace) -> Tuple[Any, str, Optional[str]]:
    import optuna

    from ._study import open_storage
    from .errors import SearchError
    from .pack import sqlite_path

    url, name, artifacts = _locate(args)
    db = sqlite_path(url)
    if db is not None and not db.is_file():  # a reading command never creates a database
        raise SearchError(
            f"no study database at {db}: check --storage, or run `tinysnn-search run SPEC.toml` first"
        )
    storage = open_storage(url)
    names = optuna.get_all_study_names(storage)
    if name is None:
        if len(names) != 1:
            raise SearchError(
                f"{url} holds {len(names)} studies ({', '.join(names) or 'none'}): pick one with --study NAME"
            )
        name = names[0]
    if name not in names:
        raise SearchError(
            f"no study {name!r} in {url} (it holds: {', '.join(names) or 'none'}): "
            "run `tinysnn-search run SPEC.toml` first, or check --storage / --study"
        )
    from .pack import resolve_artifacts

    study = optuna.load_study(study_name=name, storage=storage)
    return study, url, artifacts or resolve_artifacts(url, study.user_attrs.get("artifact_dir"))


def cmd_run(args: argparse.Namespace) -> int:
    from .report import trials_table
    from .spec import load_spec

    spec = (
        load_spec(args.spec)
        .replace(storage=args.storage, trials=args.trials, population=args.population, device=args.device)
        .with_data_root(args.data_root)
    )
    from .runner import run_study  # torch and numba: only once the spec is known to be good

    report = run_study(spec, progress=not args.no_progress)
    LAST.parent.mkdir(parents=True, exist_ok=True)
    LAST.write_text(
        json.dumps(
            {
                "storage": report.storage_url,
                "study": report.study_name,
                "artifacts": str(Path(report.artifact_dir) / "artifacts"),
            }
        )
    )
    study, url, _ = _load(argparse.Namespace(spec=None, storage=report.storage_url, study=report.study_name))
    told = [t for t in study.get_trials(deepcopy=False) if t.number in set(report.told)]
    if told:
        print(trials_table(told))
    from .report import plural, status_lines

    print("\n".join(status_lines(study, url)))
    extra = []
    if report.rejected:
        rejected = plural(report.rejected, "impossible combination")
        extra.append(f"this run: {rejected} rejected before training")
    if report.requeued:
        extra.append(f"re-queued trials {report.requeued} of stopped workers")
    for line in extra:
        print("  " + line)
    print("next: tinysnn-search select --mu 0.2   |   tinysnn-search dashboard")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from .report import status_lines, trials_so_far

    study, url, _ = _load(args)
    print("\n".join(status_lines(study, url)))
    print(trials_so_far(study, args.last))
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    from .report import candidates_table, sweep_table
    from .select import DEFAULT_MUS, has_fidelity, mu_sweep, select

    study, _, artifacts = _load(args)
    best, ranked = select(study, args.mu, args.nu)
    fidelity = has_fidelity(study)
    print(candidates_table(ranked, args.mu, args.nu, best.number, fidelity=fidelity))
    if fidelity:
        print(
            "fidelity: confirmed = ranked on the values re-trained on the full data (tinysnn-search "
            "confirm); cheap = on the values it was searched at"
        )
    print(
        f"selected: trial {best.number} (R = {best.reward:.4f}, accuracy {100 * best.accuracy:.2f} %, "
        f"M_norm {best.memory_norm:.4f}, {best.attrs.get('quant_text', '')})"
    )
    sweep = None
    if args.sweep is not None:
        sweep = mu_sweep(study, args.sweep or DEFAULT_MUS, args.nu)
        print(sweep_table(sweep))
    if args.json:
        payload = {
            "mu": args.mu,
            "nu": args.nu,
            "selected": best.number,
            "front": [c.__dict__ for c in ranked],
            "sweep": [{"mu": m, "trial": c.number, "reward": c.reward} for m, c in sweep or []],
        }
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str))
        print(f"wrote {args.json}")
    if args.export:
        out = Path(args.export) / f"{study.study_name}-trial{best.number}"
        print(f"wrote {_export(args, study, best.number, artifacts, out)}")
    return 0


def cmd_confirm(args: argparse.Namespace) -> int:
    from .report import confirm_lines
    from .spec import load_spec

    spec = (
        load_spec(args.spec).replace(storage=args.storage, device=args.device).with_data_root(args.data_root)
    )
    from .confirm import confirm_study  # torch and numba: only once the spec is known to be good

    report = confirm_study(spec, top=args.top, neighbours=args.neighbours, progress=not args.no_progress)
    study, _, _ = _load(
        argparse.Namespace(spec=None, storage=spec.study.storage_url, study=report.study_name)
    )
    print("\n".join(confirm_lines(study, report.chosen, report.trained, report.agreement)))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .plots import require_plots, save_figure, study_figures
    from .report import check_output_folder, trials_frame
    from .select import DEFAULT_MUS, mu_sweep

    require_plots()
    study, _, _ = _load(args)
    out = Path(args.out) if args.out else Path("runs") / study.study_name / "report"
    check_output_folder(out)  # an existing folder is written into: its <study>-* files are replaced
    sweep = mu_sweep(study, args.mu or DEFAULT_MUS, args.nu)  # no complete trial: one line, nothing written
    out.mkdir(parents=True, exist_ok=True)
    csv = out / f"{study.study_name}-trials.csv"
    trials_frame(study).to_csv(csv, index=False)
    print(f"wrote {csv}")
    for stem, fig in study_figures(study, sweep, args.nu).items():
        for path in save_figure(fig, out, f"{study.study_name}-{stem}"):
            print(f"wrote {path}")
    return 0


def _export(args: argparse.Namespace, study: Any, number: int, artifacts: Optional[str], out: Path) -> Path:
    from ._study import open_storage
    from .export import export_trial

    url, _, _ = _locate(args)
    return export_trial(study, open_storage(url), number, artifacts, out)


def cmd_export(args: argparse.Namespace) -> int:
    from .select import select

    study, _, artifacts = _load(args)
    number = args.trial if args.trial is not None else select(study, args.mu, args.nu)[0].number
    from tinysnn.deploy import check_formats, load_model, write_extra

    check_formats(args.format)
    out = _export(args, study, number, args.artifacts or artifacts, Path(args.out))
    extra = write_extra(out, *args.format)
    also = f" + {', '.join(p.name for p in extra)}" if extra else ""
    dataset = load_model(out).meta["provenance"].get("dataset") or "DATASET"
    print(f"wrote {out}{also} (trial {number}); run it with: tinysnn infer {out} --dataset {dataset}")
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from .pack import pack_study

    study, url, artifacts = _load(args)
    out = pack_study(url, study.study_name, args.artifacts or artifacts, Path(args.out), args.checkpoints)
    print(f"wrote {out} ({out.stat().st_size} bytes): on the other machine, tinysnn-search unpack {out.name}")
    return 0


def cmd_unpack(args: argparse.Namespace) -> int:
    from .pack import unpack_study

    got = unpack_study(Path(args.pack), Path(args.dest), args.force)
    print(f"restored study {got['study']!r}: storage {got['storage']}, artifacts {got['artifacts']}")
    print(
        f"next: tinysnn-search select --storage {got['storage']}   |   tinysnn-search run SPEC.toml "
        f"--storage {got['storage']} (resumes it)"
    )
    return 0


_PT_GUESSED = "application/vnd.snesdev-page-table"
"""The type Python's mimetypes guesses for ``.pt`` (a SNES page table), which ``upload_artifact``
records for a trial's ``model.pt`` and optuna-dashboard serves as recorded."""


def _models_as_octet_stream(app: Any) -> Any:
    """The WSGI ``app``, with artifacts recorded as :data:`_PT_GUESSED` served as application/octet-stream."""

    def serve(environ: Any, start_response: Any) -> Any:
        def start(status: str, headers: Any, exc_info: Any = None) -> Any:
            if environ.get("PATH_INFO", "").startswith("/artifacts/"):
                headers = [
                    (k, "application/octet-stream" if k.lower() == "content-type" and v == _PT_GUESSED else v)
                    for k, v in headers
                ]
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return serve


def _bind(host: str, port: int, app: Any) -> Any:
    """A WSGI server listening on host:port (bound, not yet serving), or one line saying why not."""
    import errno
    import socket
    from wsgiref.simple_server import WSGIServer, make_server

    from .errors import SearchError

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except (socket.gaierror, UnicodeError):
        raise SearchError(
            f"--host {host!r} is neither an IP address nor a known host name: pass one such as "
            "127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"
        ) from None

    class Server(WSGIServer):
        address_family = family

    try:
        return make_server(host, port, app, Server)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise SearchError(
                f"port {port} on {host} is in use (another dashboard?): pass a free one, "
                f"--port {port + 1 if port < 65535 else 8080}"
            ) from None
        if exc.errno == errno.EACCES:
            raise SearchError(f"port {port} needs root: pass --port 1024 or higher (default 8080)") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise SearchError(
                f"--host {host} is not an address of this machine: pass 127.0.0.1 or one of its own addresses"
            ) from None
        raise SearchError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}): pass another --host or --port"
        ) from None


def dashboard_app(url: str, folder: Optional[str]) -> Tuple[Any, Any]:
    """optuna-dashboard's WSGI app for storage ``url`` with the artifacts in ``folder`` (None or no such
    folder: none), and the artifact store (or None).

    Its trials carry their constraint values as the list the dashboard reads (its infeasible trials are
    shown as such, :class:`search._constraints.ListedConstraintsStorage`), and its models are served as
    application/octet-stream.
    """
    import optuna_dashboard
    from optuna.artifacts import FileSystemArtifactStore

    from ._constraints import ListedConstraintsStorage
    from ._study import open_storage

    store = FileSystemArtifactStore(folder) if folder and Path(folder).is_dir() else None
    app = optuna_dashboard.wsgi(open_storage(url, ListedConstraintsStorage), artifact_store=store)
    return _models_as_octet_stream(app), store


def cmd_dashboard(args: argparse.Namespace) -> int:
    from .errors import SearchError

    try:
        import optuna_dashboard  # noqa: F401
    except ImportError:
        raise SearchError('optuna-dashboard is not installed: pip install -e ".[dashboard]"') from None

    _, url, artifacts = _load(args)
    folder = args.artifacts or artifacts
    app, store = dashboard_app(url, folder)
    server = _bind(args.host, args.port, app)  # bound before the line below: a bad host or port is one line
    where = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"optuna-dashboard on http://{where}:{args.port}/dashboard/ for {url} "
        f"(artifacts: {folder if store else 'none found'}); Ctrl-C stops it",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # how it is stopped
        pass
    finally:
        server.server_close()
    return 0


def _stopped_line(signum: int, requeued: Sequence[int]) -> str:
    """The one line a run stopped by a signal ends with: which signal, and which trials were re-queued."""
    name = "Ctrl-C (SIGINT)" if signum == signal.SIGINT else signal.Signals(signum).name
    held = (
        f"trials {list(requeued)} were failed and re-queued"
        if requeued
        else "no trial was running here, nothing to re-queue"
    )
    return f"tinysnn-search: stopped by {name}; {held}; run the same command to continue"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``tinysnn-search``.

    ``run`` and ``confirm`` stop on SIGINT, SIGTERM and SIGHUP alike: the trials they hold are
    re-queued, one line says what was stopped, and the exit status is 128 + the signal's number
    (130, 143, 129), whatever exception the signal became on its way up (``search._workers.StopSignals``).
    """
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 2
    from ._workers import StopSignals, requeued_by

    stops = StopSignals()
    with stops if args.command in ("run", "confirm") else contextlib.nullcontext(stops):
        try:
            code = _dispatch(args)
        except BaseException as exc:
            if stops.signum is not None:
                print(_stopped_line(stops.signum, requeued_by(exc)), file=sys.stderr)
                return 128 + stops.signum
            if isinstance(exc, KeyboardInterrupt):
                print("tinysnn-search: interrupted; run the same command to continue", file=sys.stderr)
                return 130
            raise
    if stops.signum is not None:  # its exception was swallowed on the way (a finalizer) and the run ended
        print(_stopped_line(stops.signum, []), file=sys.stderr)
        return 128 + stops.signum
    return code


def _dispatch(args: argparse.Namespace) -> int:
    """Run the command of ``args``; bad input and known failures become one line and exit 2."""
    import optuna

    from .errors import SearchError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    commands = {
        "run": cmd_run,
        "confirm": cmd_confirm,
        "status": cmd_status,
        "select": cmd_select,
        "report": cmd_report,
        "export": cmd_export,
        "pack": cmd_pack,
        "unpack": cmd_unpack,
        "dashboard": cmd_dashboard,
    }
    try:
        return commands[args.command](args)
    except (SearchError, ValueError, FileNotFoundError) as exc:
        print(f"tinysnn-search: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `tinysnn-search status | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a damaged, locked or full database under any command: its cause, one line
        from ._study import storage_problem

        problem = storage_problem(exc, getattr(args, "storage", None))
        if problem is None:
            raise
        print(f"tinysnn-search: error: {problem}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
