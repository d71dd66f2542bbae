"""A third-party drizzleflow plugin, for the engine's tests."""
import json
from pathlib import Path

from pydantic import Field

from drizzleflow.engine.atomic import write_text
from drizzleflow.engine.step import Params, Step


class EchoStep(Step):
    """Plugin step: write its parameters and the input names to echo.json."""

    name = "plugin_echo"
    writes = ("echo",)
    aliases = {"plugin_word": "word"}

    class Params(Params):
        word: str = Field("hello", min_length=1, description="A word to echo.")
        times: int = Field(1, ge=1, le=5, description="How many times.")

    def run(self, context, params):
        dest = context.path("echo.json")
        write_text(dest, json.dumps({"echo": [params.word] * params.times,
                                     "inputs": [Path(p).name for p in context.inputs]}))
        context.put("echo", context.rel(dest))


def provide(spec, dest):
    """Input provider: write `count` small files into dest."""
    files = []
    for i in range(int(spec.get("count", 2))):
        f = Path(dest, f"gen{i}.txt")
        write_text(f, f"generated {i}\n")
        files.append(f)
    return {"files": files, "uref": str(dest)}


def register(subparsers):
    p = subparsers.add_parser("plugin-hello", help="say hello from a plugin")
    p.add_argument("who")
    p.set_defaults(func=lambda args: print(f"hello {args.who} from a plugin") or 0)
