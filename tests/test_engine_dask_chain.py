"""The tutorial chain on a Dask cluster of worker processes gives the same bytes as a serial run.

Work items shipped to Dask workers capture the step's context in closures; the
context pickles without its executor (the Dask client), and workers write into the
same output directory, so a cluster needs a file system shared with the client.
"""
import subprocess
import sys
from pathlib import Path

import pytest

distributed = pytest.importorskip("dask.distributed")

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "m2_tutorial.yaml"
SMALL = ["input.size=128", "input.nexp=3"]


def _run(out, *extra):
    cmd = [sys.executable, "-m", "drizzleflow.engine.cli", "run", str(RECIPE), *SMALL, "--output", str(out), "-q",
           *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=out.parent)
    assert p.returncode == 0, p.stderr[-2000:]
    return out


def test_dask_processes_match_serial(tmp_path):
    serial = _run(tmp_path / "serial")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        dask = _run(tmp_path / "dask", "--dask-scheduler", cluster.scheduler_address)
    for name in ("final_drz_sci.fits", "final_drz_wht.fits", "final_drz_ctx.fits"):
        assert (dask / name).read_bytes() == (serial / name).read_bytes(), name
    # the CR flags written by the workers reached the working DQ files
    for dq in sorted((serial / "work").glob("*_c1m.fits")):
        assert (dask / "work" / dq.name).read_bytes() == dq.read_bytes(), dq.name
