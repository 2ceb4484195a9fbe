"""Built-in evaluation metrics (fid, is, kid, prc, nll, modes, density), registered like any plugin's.

Each is declared once in zoo/metrics.py (``BUILTIN``): its name, what it needs, its compute function and
its result keys with direction and format. A third-party plugin registers its own the same way.
"""
from zoo import hookimpl
from zoo.metrics import BUILTIN


@hookimpl
def zoo_register_metrics(register):
    for m in BUILTIN:
        register(m.name, m.compute, m.scores, needs=m.needs, description=m.description, default=m.default,
                 table=m.table)
