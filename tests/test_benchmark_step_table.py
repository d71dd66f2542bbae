"""The per-step comparison of benchmarks/astrodrizzle.py: its two parsers read the
formats the programs really write (AstroDrizzle's trailer table, our run summary)."""
import importlib.util
from pathlib import Path

import pytest

from drizzleflow.engine.runner import RunResult, StepResult

# loaded by path: benchmarks/ is not a package, and the name must not meet drizzlepac's
_spec = importlib.util.spec_from_file_location(
    "bench_astrodrizzle", Path(__file__).resolve().parents[1] / "benchmarks" / "astrodrizzle.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

# the end of an AstroDrizzle 3.x trailer file (astrodrizzle.log), as written on M2
AD_TRAILER = """\
[INFO    ] ==== Processing Step 'Final Drizzle' finished at 07:36:52.871 (01/12/2026)
[INFO    ] 
   --------------------          --------------------
                   Step          Elapsed time
   --------------------          --------------------

[INFO    ]    Initialization                0.9858 sec 
[INFO    ]    Static Mask                   0.4037 sec 
[INFO    ]    Subtract Sky                  2.1385 sec 
[INFO    ]    Separate Drizzle              4.2564 sec 
[INFO    ]    Create Median                 2.5121 sec 
[INFO    ]    Blot                          3.1559 sec 
[INFO    ]    Driz_CR                       1.6464 sec 
[INFO    ]    Final Drizzle                 7.2169 sec 
[INFO    ]    ====================          ====================
[INFO    ]    Total                         22.3156 sec
[INFO    ] 
[INFO    ] Trailer file written to: astrodrizzle.log
"""


def test_ad_trailer_table(tmp_path):
    p = tmp_path / "astrodrizzle.log"
    # a "sec" line before the table (a step's own message) must not count
    p.write_text("[INFO    ] sky took 9.5 sec\n" + AD_TRAILER)
    got = bench.ad_step_seconds(p)
    assert got["Static Mask"] == pytest.approx(0.4037)
    assert got["Final Drizzle"] == pytest.approx(7.2169)
    assert got["Total"] == pytest.approx(22.3156)
    assert "sky took" not in " ".join(got)
    assert all(a in got for a, _ in bench.STEP_PAIRS)
    # no trailer, or one without the table (a run that stopped early): nothing, no error
    assert bench.ad_step_seconds(tmp_path / "missing.log") == {}
    p.write_text(AD_TRAILER.split("Elapsed time")[0])
    assert bench.ad_step_seconds(p) == {}


def test_our_summary_from_the_real_formatter(tmp_path):
    steps = [StepResult(name, name, "k", status, sec) for name, status, sec in
             [("ingest", "ran", 0.3012), ("static_mask", "cached", 0.0), ("sky", "ran", 0.27),
              ("drizzle_final", "ran", 1.166)]]
    text = RunResult(tmp_path, tmp_path / "manifest.json", steps, 2.0, {}, "x").summary()
    log = tmp_path / "ours.log"
    log.write_text("step drizzle_final (drizzle_final): done in 1.17 s\n" + text + "\n\tExit status: 0\n")
    # only steps that ran, with the table's two decimals
    assert bench.our_step_seconds(log) == {"ingest": 0.3, "sky": 0.27, "drizzle_final": 1.17}


def test_step_rows_outside_is_wall_minus_steps():
    ad = {a: 1.0 for a, _ in bench.STEP_PAIRS}
    ours = {o: 0.25 for _, o in bench.STEP_PAIRS if o != "median"}
    rows = bench.step_rows(ad, ours, 10.0, 2.5)
    assert len(rows) == len(bench.STEP_PAIRS) + 1
    median = [r for r in rows if r[0].endswith("/ median")][0]
    assert median[1] == 1.0 and median[2] is None
    label, ad_out, our_out = rows[-1]
    assert label == "outside the steps"
    assert ad_out == pytest.approx(10.0 - 8 * 1.0)
    assert our_out == pytest.approx(2.5 - 7 * 0.25)
