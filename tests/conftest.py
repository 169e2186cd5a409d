import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_gpukit(*args, timeout=300, cwd=None, env=None):
    """Run `python -m gpukit ARGS` as a user would, in a subprocess."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    # Piped output wraps at COLUMNS where set: a width exported in the shell running the tests
    # must not decide where the text they look for breaks.
    full_env.pop("COLUMNS", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "gpukit", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or ROOT, env=full_env)


@pytest.fixture
def gpukit_cli():
    return run_gpukit


@pytest.fixture(autouse=True, scope="session")
def _private_ceilings_cache(tmp_path_factory):
    """Every test, and every gpukit it starts, keeps its ceilings in a folder of this session:
    `compare` stores quick ones where none exist, and those must not land in the user's cache
    (nor figures from there leak into what the tests see). A test may still point
    GPUKIT_CACHE_DIR elsewhere."""
    patch = pytest.MonkeyPatch()
    patch.setenv("GPUKIT_CACHE_DIR", str(tmp_path_factory.mktemp("ceilings-cache")))
    yield
    patch.undo()
