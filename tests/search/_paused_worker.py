"""A search worker that hangs after its N-th checkpoint, so that a test can kill it mid-trial.

    python tests/_paused_worker.py SPEC.toml N MARKER

runs the study of SPEC.toml like ``tinysnn-search run SPEC.toml --no-progress``; once the N-th
population checkpoint is written it writes its pid to MARKER and sleeps until it is killed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from search import load_spec, run_study


def main(spec_path: str, count: int, marker: Path) -> None:
    written = []

    def hang_after_count(path: Path, next_sample: int) -> None:
        written.append(next_sample)
        if len(written) == count:
            marker.write_text(str(os.getpid()))
            while True:
                time.sleep(1)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    run_study(load_spec(spec_path), progress=False, log=log, on_checkpoint=hang_after_count)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
