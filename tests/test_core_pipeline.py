"""DrizzlePipeline: images queued one after another, units run without phase barriers."""
import threading

import numpy as np
import pytest

from drizzleflow.steps.drizzle import Drizzle, DrizzleArrayError, core
from drizzleflow.steps.drizzle.pipeline import DrizzlePipeline


def _affine_map(ny, nx, scale, theta, shift, curve):
    y, x = np.indices((ny, nx), dtype=np.float64)
    c, s = np.cos(theta) / scale, np.sin(theta) / scale
    X = c * x - s * y + curve * (x - nx / 2) ** 2 / scale + shift[0]
    Y = s * x + c * y + shift[1]
    return np.ascontiguousarray(np.dstack([X, Y]))


def _chips(n=7, seed=2):
    """Tall overlapping chips on a tall output: many bands and edge units per chip,
    and each chip's units overlap the previous chips' rows."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        data = (rng.random((300, 40)) + 0.5).astype(np.float32)
        data[rng.random(data.shape) < 0.01] = np.nan
        weight = rng.random((300, 40)).astype(np.float32)
        pm = _affine_map(300, 40, 0.7, 0.2 + 0.04 * k, (150 + 3.1 * k, 3 + 9.7 * k), 0.0004)
        out.append(dict(data=data, pixmap=pm, weight=weight, scale=0.7, exptime=1.0 + k, in_units="counts"))
    return out


def _one_by_one(chips, shape, pixfrac, kernel="square", ids=None):
    drz = Drizzle(shape, kernel=kernel, fillval=-1.0)
    for k, c in enumerate(chips):
        drz.add_image(pixfrac=pixfrac, input_id=None if ids is None else ids[k], **c)
    return drz


@pytest.mark.parametrize("pixfrac", [1.0, 0.6])
@pytest.mark.parametrize("threads, ahead", [(1, 1), (2, 2), (3, 2), (2, 4)])
def test_pipeline_gives_the_bits_of_one_image_at_a_time(pixfrac, threads, ahead):
    chips = _chips()
    shape = (420, 240)
    ref = _one_by_one(chips, shape, pixfrac)
    drz = Drizzle(shape, kernel="square", fillval=-1.0)
    with DrizzlePipeline(drz, threads=threads, ahead=ahead) as pipe:
        skipped = [pipe.add_image(pixfrac=pixfrac, **c) for c in chips]
    assert sum(skipped) == sum(int(np.isnan(c["data"]).sum()) for c in chips)
    for a, b in zip(ref.finish(), drz.finish()):
        assert np.array_equal(a, b, equal_nan=True)
    assert drz.ninputs == len(chips) and drz.total_exptime == ref.total_exptime
    assert (drz.finish()[1] > 0).sum() > 20000


def test_units_really_overlap_between_images(monkeypatch):
    """The point of the pipeline: a unit of the next image runs while units of
    the previous one are still running (rows permitting)."""
    chips = _chips(5)
    running, overlapped = {}, []
    lock = threading.Lock()
    real = core.Drizzle._run

    def spy(self, job, b0, b1, tiles=None, want=0):
        with lock:
            if any(j is not job for j in running.values()):
                overlapped.append((b0, b1))
            running[threading.get_ident()] = job
        try:
            real(self, job, b0, b1, tiles, want)
            threading.Event().wait(0.002)   # long enough for the other worker to start something
        finally:
            with lock:
                running.pop(threading.get_ident(), None)

    monkeypatch.setattr(core.Drizzle, "_run", spy)
    drz = Drizzle((420, 240), kernel="square")
    with DrizzlePipeline(drz, threads=2, ahead=2) as pipe:
        for c in chips:
            pipe.add_image(pixfrac=1.0, **c)
    assert overlapped


def test_other_kernels_and_new_context_planes_go_through_in_order():
    chips = _chips(4)
    ids = [0, 40, 3, 70]                 # 40 and 70 need new context planes mid-stream
    ref = _one_by_one(chips, (420, 240), 0.8, ids=ids)
    drz = Drizzle((420, 240), kernel="square", fillval=-1.0)
    with DrizzlePipeline(drz, threads=2) as pipe:
        for c, i in zip(chips, ids):
            pipe.add_image(pixfrac=0.8, input_id=i, **c)
    assert drz.out_ctx.shape[0] == 3
    for a, b in zip(ref.finish(), drz.finish()):
        assert np.array_equal(a, b, equal_nan=True)
    turbo = _one_by_one(chips, (420, 240), 0.8, kernel="turbo")
    drz = Drizzle((420, 240), kernel="turbo", fillval=-1.0)
    with DrizzlePipeline(drz, threads=2) as pipe:
        for c in chips:
            pipe.add_image(pixfrac=0.8, **c)
    for a, b in zip(turbo.finish(), drz.finish()):
        assert np.array_equal(a, b, equal_nan=True)


def test_a_failing_unit_is_raised_and_nothing_hangs(monkeypatch):
    chips = _chips(6)
    real = core.Drizzle._run
    calls = []

    def failing(self, job, *args):
        calls.append(1)
        if len(calls) == 5:
            raise MemoryError("no memory for a tile buffer")
        return real(self, job, *args)

    monkeypatch.setattr(core.Drizzle, "_run", failing)
    drz = Drizzle((420, 240), kernel="square")
    pipe = DrizzlePipeline(drz, threads=2)
    with pytest.raises(MemoryError, match="tile buffer"):
        with pipe:
            for c in chips:
                pipe.add_image(pixfrac=1.0, **c)
    assert all(not w.is_alive() for w in pipe._workers)


def test_the_callers_error_drops_queued_work(monkeypatch):
    chips = _chips(3)
    drz = Drizzle((420, 240), kernel="square")
    pipe = DrizzlePipeline(drz, threads=2)
    with pytest.raises(KeyError):
        with pipe:
            pipe.add_image(pixfrac=1.0, **chips[0])
            raise KeyError("the feed failed")
    assert all(not w.is_alive() for w in pipe._workers)
    assert not pipe._active


def test_bad_input_is_refused_before_anything_is_queued():
    drz = Drizzle((50, 50), kernel="square")
    with DrizzlePipeline(drz, threads=2) as pipe:
        with pytest.raises(DrizzleArrayError, match="pixmap"):
            pipe.add_image(np.ones((10, 10), np.float32), np.zeros((10, 9, 2)))
        assert not pipe._active
