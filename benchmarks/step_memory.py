"""Peak resident memory and CPU time per step of a recipe run.

    .venv/bin/python benchmarks/step_memory.py RECIPE [name.param=value ...] --output DIR [--force]

Runs ``drizzleflow run`` in this process with every registered step's ``run``
wrapped: before a step the kernel's peak-RSS counter (VmHWM) is reset through
``/proc/self/clear_refs`` (Linux), after it the step's own peak, the RSS it
leaves behind and its CPU time (user + system, all threads), the system part and the
minor page faults are printed; the
process's overall peak (``ru_maxrss``, what ``/usr/bin/time -f %M`` reports)
comes last.  CPU time rather than wall time because the benchmark machine is
shared.  Without ``clear_refs`` each line shows the running peak instead.
"""
from __future__ import annotations

import functools
import resource
import sys
import time


def _status(key: str) -> int:
    """A ``/proc/self/status`` field in MiB (0 where it does not exist)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _usage() -> tuple[float, float, int]:
    """(user s, system s, minor page faults) of the process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_minflt


def _cpu() -> float:
    u = _usage()
    return u[0] + u[1]


ROWS: list[tuple] = []


def _wrap(cls):
    run = cls.run

    @functools.wraps(run)
    def wrapped(self, context, params):
        rss0 = _status("VmRSS")
        reset = _reset_peak()
        u0, t0 = _usage(), time.perf_counter()
        try:
            return run(self, context, params)
        finally:
            u1 = _usage()
            ROWS.append((cls.name, rss0, _status("VmHWM"), _status("VmRSS"), u1[0] - u0[0] + u1[1] - u0[1],
                         u1[1] - u0[1], u1[2] - u0[2], time.perf_counter() - t0, reset))
    cls.run = wrapped


def main(argv=None) -> int:
    from drizzleflow.engine import cli, registry
    for cls in registry.steps().values():
        _wrap(cls)
    c0 = _cpu()
    rc = cli.main(["run", *(sys.argv[1:] if argv is None else argv)])
    print(f"{'step':<18}{'RSS before':>11}{'peak':>7}{'after':>7}{'CPU s':>8}{'of it sys':>10}"
          f"{'faults':>9}{'wall s':>8}  (MiB)")
    for name, before, peak, after, cpu, sys_s, faults, wall, reset in ROWS:
        print(f"{name:<18}{before:>11}{peak:>7}{after:>7}{cpu:>8.2f}{sys_s:>10.2f}{faults:>9}{wall:>8.2f}"
              + ("" if reset else "  (running peak)"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"{'process':<18}{'':>11}{peak:>7}{'':>7}{_cpu() - c0:>8.2f}")
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
