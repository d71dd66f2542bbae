"""A third-party plugin package: installed by pip, discovered through entry points,
run from a recipe; a broken one is a warning, not a crash."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGINS = Path(__file__).parent / "plugins"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    """pip-install both plugin packages into a throwaway target directory; the
    subprocesses of these tests see it on PYTHONPATH (the shared venv is untouched)."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    for name in ("dfplugin_demo", "dfplugin_broken"):
        src = build / name
        shutil.copytree(PLUGINS / name, src)  # build outside the repository (no stray build/ folders)
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-warn-script-location",
               "--disable-pip-version-check", "--target", str(target), str(src)]
        # offline and fast with the environment's setuptools; a fresh venv whose setuptools
        # cannot build wheels (no `wheel` package) falls back to pip's isolated build
        p = subprocess.run(cmd[:4] + ["--no-build-isolation"] + cmd[4:], capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stdout + p.stderr
    env = dict(os.environ)
    env["PYTHONPATH"] = str(target) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def cli(args, env, cwd):
    return subprocess.run([sys.executable, "-m", "drizzleflow.engine.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_plugin_step_lists_and_runs_from_a_recipe(plugin_env, tmp_path):
    p = cli(["steps"], plugin_env, tmp_path)
    assert p.returncode == 0, p.stderr
    assert "plugin_echo" in p.stdout and "word = \"hello\"  (alias: plugin_word)" in p.stdout
    # the broken plugin: a warning that names it, and everything else still works
    assert "broken_step" in p.stderr and "dfplugin-broken" in p.stderr and "failed to import" in p.stderr
    assert "Traceback" not in p.stderr and "toy_source" in p.stdout

    (tmp_path / "x.txt").write_text("x")
    (tmp_path / "r.yaml").write_text(textwrap.dedent("""\
        input: "*.txt"
        output: out
        steps:
          - {step: plugin_echo, params: {plugin_word: hi, times: 2}}
    """))
    p = cli(["run", "r.yaml", "-q"], plugin_env, tmp_path)
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "out" / "echo.json").read_text()) == {"echo": ["hi", "hi"], "inputs": ["x.txt"]}


def test_plugin_input_provider_and_command(plugin_env, tmp_path):
    (tmp_path / "r.yaml").write_text(textwrap.dedent("""\
        input: {echo_files: yes, count: 3}
        output: out
        steps:
          - {step: plugin_echo}
    """))
    env = dict(plugin_env, uref="/from/the/environment")   # the provider's uref wins over $uref
    p = cli(["run", "r.yaml", "-q"], env, tmp_path)
    assert p.returncode == 0, p.stderr
    echo = json.loads((tmp_path / "out" / "echo.json").read_text())
    assert echo["inputs"] == ["gen0.txt", "gen1.txt", "gen2.txt"]
    man = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert man["uref"].startswith(str(tmp_path / "out" / "inputs" / "echo_files-"))
    # second run: the provider is not called again and every step is cached
    p = cli(["run", "r.yaml"], plugin_env, tmp_path)
    assert p.returncode == 0 and "reusing 3 files" in p.stderr and "0 ran, 1 from cache" in p.stdout

    p = cli(["plugin-hello", "world"], plugin_env, tmp_path)
    assert p.returncode == 0 and p.stdout.strip() == "hello world from a plugin"


def test_without_the_plugin_its_step_is_unknown(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    (tmp_path / "r.yaml").write_text('input: "*.txt"\nsteps: [{step: plugin_echo}]\n')
    p = cli(["validate", "r.yaml"], dict(os.environ), tmp_path)
    assert p.returncode == 2 and "unknown step type 'plugin_echo'" in p.stderr and "Traceback" not in p.stderr


def test_using_the_broken_plugin_is_a_clear_error(plugin_env, tmp_path):
    (tmp_path / "x.txt").write_text("x")
    (tmp_path / "r.yaml").write_text('input: "*.txt"\nsteps: [{step: broken_step}]\n')
    p = cli(["validate", "r.yaml"], plugin_env, tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert ("r.yaml:2:16: step type 'broken_step' is registered by dfplugin-broken 0.0.1 but failed to import "
            "(ModuleNotFoundError") in p.stderr
    # a recipe that does not use it is not bothered (steps are imported only when named)
    (tmp_path / "ok.yaml").write_text('input: "*.txt"\nsteps: [{step: toy_source}]\n')
    p = cli(["validate", "ok.yaml"], plugin_env, tmp_path)
    assert p.returncode == 0 and "broken_step" not in p.stderr
