"""Three tiny demo/test steps that exercise the engine without astronomy.

They are registered like any other step (``toy_source``, ``toy_scale``,
``toy_drizzle``, ``toy_sum``) so ``drizzleflow steps`` lists them and ``configs/toy.yaml`` can run
on any machine.  Each one writes a small file atomically, records it as a
product, and appends its name to ``<output>/toy/work.log`` — an honest witness
that the step really did work (the tests read it to prove that cached steps do
none).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from pydantic import Field

from .atomic import atomic_path, write_text
from .step import Context, Params, Step

__all__ = ["ToySource", "ToyScale", "ToyDrizzle", "ToySum"]


def _witness(context: Context, what: str):
    # Append-only log of work actually done (not a product; never read by steps).
    path = context.path("toy", "work.log")
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(what + "\n")


def _save_array(context: Context, name: str, array) -> str:
    dest = context.path("toy", f"{name}.npy")
    with atomic_path(dest, suffix=".npy") as tmp:
        np.save(tmp, array)
    return context.rel(dest)


class ToySource(Step):
    """Demo step: an array made from the input files' sizes (so it depends on the inputs)."""

    name = "toy_source"
    writes = ("toy_array",)

    class Params(Params):
        length: int = Field(8, ge=1, le=4096, description="Number of elements of the array.")
        offset: float = Field(0.0, ge=-1e6, le=1e6, description="Constant added to every element.")
        offset_file: str | None = Field(None, description="A text file holding one more constant to add "
                                        "(a file the parameters name: its content is part of the cache key).")

    @classmethod
    def key_files(cls, params):
        return [params.offset_file] if params.offset_file else []

    def run(self, context, params):
        sizes = [Path(p).stat().st_size for p in context.inputs] or [0]
        base = np.arange(params.length, dtype=np.float64) + params.offset
        if params.offset_file:
            base += float(Path(params.offset_file).read_text())
        array = base + float(sum(sizes) % 1000)
        context.put("toy_array", _save_array(context, context.step_name, array))
        _witness(context, context.step_name)


class ToyScale(Step):
    """Demo step: multiply the current toy array by a factor."""

    name = "toy_scale"
    reads = ("toy_array",)
    writes = ("toy_array",)
    aliases = {"toy_factor": "factor"}

    class Params(Params):
        factor: float = Field(2.0, gt=0, le=100, description="Multiplier applied to every element (0 < factor <= 100).")
        mode: str = Field("multiply", pattern="^(multiply|divide)$",
                          description="'multiply' or 'divide' the array by factor.")
        exit_if_exists: str | None = Field(
            None, description="Test hook: if this file exists when the step starts, the process exits at once "
                              "(os._exit(3)), as a killed run would.")
        sleep: float = Field(0.0, ge=0, le=60, description="Seconds to wait before working (demo of progress).")

    def run(self, context, params):
        if params.exit_if_exists and Path(params.exit_if_exists).exists():
            os._exit(3)
        if params.sleep:
            for _ in context.progress(range(10), desc=f"{context.step_name}: waiting"):
                time.sleep(params.sleep / 10)
        array = np.load(context.abs(context.get("toy_array")))
        array = array * params.factor if params.mode == "multiply" else array / params.factor
        context.put("toy_array", _save_array(context, context.step_name, array))
        _witness(context, context.step_name)


class ToyDrizzle(Step):
    """Demo step: a one-dimensional drizzle of the toy array onto a finer or coarser grid.

    Each input element is a "drop" of width ``pixfrac`` (in input pixels)
    centred on its pixel; the output grid has pixels ``scale`` input pixels
    wide; each drop's value is shared among the output pixels it overlaps, by
    overlap length, and each output pixel is the weighted mean of the drops on
    it (``fillval`` where none land).  Flux density is conserved.
    """

    name = "toy_drizzle"
    reads = ("toy_array",)
    writes = ("toy_array",)

    class Params(Params):
        pixfrac: float = Field(1.0, gt=0, le=1, description="Drop width as a fraction of an input pixel.")
        scale: float = Field(1.0, gt=0.05, le=20, description="Output pixel size in input pixels.")
        fillval: float = Field(0.0, description="Value of output pixels that no drop reaches.")

    def preflight(self, context, params):
        # witnessed apart from the work log: checks are not work
        with open(context.path("toy", "preflight.log"), "a", encoding="utf-8") as fh:
            fh.write(context.step_name + "\n")

    def run(self, context, params):
        data = np.load(context.abs(context.get("toy_array")))
        nout = int(np.ceil(len(data) / params.scale))
        num = np.zeros(nout)
        wht = np.zeros(nout)
        half = params.pixfrac / 2.0
        for i, value in enumerate(data):
            lo, hi = (i + 0.5 - half) / params.scale, (i + 0.5 + half) / params.scale
            for j in range(max(int(np.floor(lo)), 0), min(int(np.ceil(hi)), nout)):
                overlap = min(hi, j + 1) - max(lo, j)
                if overlap > 0:
                    num[j] += value * overlap
                    wht[j] += overlap
        out = np.full(nout, params.fillval, dtype=np.float64)
        good = wht > 0
        out[good] = num[good] / wht[good]
        context.put("toy_array", _save_array(context, context.step_name, out))
        _witness(context, context.step_name)


def _chunk_sum(chunk):
    return float(np.sum(np.asarray(chunk, dtype=np.float64)))


class ToySum(Step):
    """Demo step: sum the toy array in chunks through the run's executor; write JSON."""

    name = "toy_sum"
    reads = ("toy_array",)
    writes = ("toy_total",)

    class Params(Params):
        chunks: int = Field(4, ge=1, le=64, description="Number of chunks handed to the executor.")

    def run(self, context, params):
        array = np.load(context.abs(context.get("toy_array")))
        parts = [c.tolist() for c in np.array_split(array, params.chunks)]
        sums = context.map(_chunk_sum, parts)
        total = float(sum(sums))  # fixed order: map returns results in input order
        dest = context.path("toy", f"{context.step_name}.json")
        write_text(dest, json.dumps({"total": total, "chunk_sums": sums}, indent=1) + "\n")
        context.put("toy_total", context.rel(dest))
        _witness(context, context.step_name)
