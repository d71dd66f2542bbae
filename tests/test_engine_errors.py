"""Errors survive the trip from a worker process (Dask, a forked pool) intact."""
import multiprocessing as mp
import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

from drizzleflow.engine.errors import (InputFileError, OutputError, RecipeError, ReferenceFileError,
                                       StepError)

ERRORS = [InputFileError("ua060502m_c1m.fits", "file not found"),
          ReferenceFileError("uref/f8213081u_idc.fits", "no row for detector 5"),
          StepError("drizzle_final", "no input chip falls on the output grid"),
          RecipeError("unknown parameter", where="m2.yaml:4:14", key="drizzle_final.pixfrak"),
          OutputError("out: read-only")]


@pytest.mark.parametrize("err", ERRORS, ids=lambda e: type(e).__name__)
def test_pickled_errors_keep_type_message_and_attributes(err):
    err.all_errors = ["a", "b"]
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err) and str(back) == str(err)
    assert back.__dict__ == err.__dict__


def _fail(n):
    raise InputFileError(f"ua06050{n}m_c1m.fits", "DQ file has 3 groups, the science file 4")


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs fork")
def test_an_error_raised_in_a_worker_process_arrives_as_itself():
    with ProcessPoolExecutor(1, mp_context=mp.get_context("fork")) as pool:
        with pytest.raises(InputFileError, match="ua060502m_c1m.fits: DQ file has 3 groups") as info:
            pool.submit(_fail, 2).result()
    assert info.value.problem.startswith("DQ file")
