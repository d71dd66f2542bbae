"""drizzleflow's workflow engine: recipes, validation, registry, runner, cache, CLI.

The engine knows nothing about astronomy; the steps know nothing about YAML.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("drizzleflow")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
