"""The exception hierarchy.  The CLI turns any ``DrizzleflowError`` into a
one-line message and exit status 2; anything else is a bug and keeps its traceback."""


class DrizzleflowError(Exception):
    """Base of every error caused by the user's recipe, files or environment.

    Subclasses with their own ``__init__`` say how to rebuild themselves
    (``__reduce__``): an error raised in a worker process (Dask, a forked
    pool) reaches the caller pickled, and must arrive as itself, message and
    attributes intact -- not as a TypeError about missing arguments.
    """


class RecipeError(DrizzleflowError):
    """A recipe that cannot be loaded or validated.

    ``where`` is ``file:line:col`` when known, ``key`` the dotted parameter path.
    """

    def __init__(self, message, *, where=None, key=None):
        self.where, self.key, self.detail = where, key, message
        text = message
        if key:
            text = f"{key}: {text}"
        if where:
            text = f"{where}: {text}"
        super().__init__(text)

    def __reduce__(self):
        state = {k: v for k, v in self.__dict__.items() if k not in ("where", "key", "detail")}
        return (_rebuild, (type(self), (self.detail,), {"where": self.where, "key": self.key}, state))


class InputFileError(DrizzleflowError):
    """An input file that is missing, corrupt, or inconsistent with its partner."""

    def __init__(self, path, problem):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self):
        return (_rebuild, (type(self), (self.path, self.problem), {}, self.__dict__))


class ReferenceFileError(InputFileError):
    """A calibration reference file (IDCTAB, OFFTAB, DGEOFILE, ...) that cannot be used."""


class StepError(DrizzleflowError):
    """A step that cannot do its work with the data and parameters it was given."""

    def __init__(self, step, problem):
        self.step, self.problem = step, problem
        super().__init__(f"step '{step}': {problem}")

    def __reduce__(self):
        return (_rebuild, (type(self), (self.step, self.problem), {}, self.__dict__))


class OutputError(DrizzleflowError):
    """An output location that cannot be written (read-only, different recipe, ...)."""


def _rebuild(cls, args, kwargs, state):
    """Unpickle an error: call its ``__init__`` again, then restore extra attributes
    (such as the ``all_errors`` list of a RecipeError)."""
    err = cls(*args, **kwargs)
    err.__dict__.update(state)
    return err
