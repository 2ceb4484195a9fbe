"""What the test files share for running zoo as a user does: in a fresh process (``from helpers import zoo_cli``)."""
from __future__ import annotations

import os
import subprocess
import sys


class Finished(subprocess.CompletedProcess):
    """A finished ``zoo`` process; ``output`` is its stdout and stderr together."""

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def zoo_env(site=None, **env) -> dict:
    """This process's environment with one torch thread (2 shared cores), ``site`` (a folder of plugin
    distributions) as ``PYTHONPATH``, then ``env`` on top: a value of ``None`` removes that variable."""
    out = dict(os.environ, OMP_NUM_THREADS="1")
    if site is not None:
        out["PYTHONPATH"] = str(site)
    for key, value in env.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = str(value)
    return out


def zoo_cli(*args, site=None, cwd=None, env=None, timeout=900, module="zoo") -> Finished:
    """``python -m zoo ARGS`` (or ``-m module``) in a fresh process, its output captured as text; ``site`` and
    ``env`` as in :func:`zoo_env`."""
    r = subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                       env=zoo_env(site, **(env or {})), timeout=timeout)
    return Finished(r.args, r.returncode, r.stdout, r.stderr)
