"""Make a real installed-distribution layout (dist-info + entry_points.txt) in a folder, so tests
exercise zoo's genuine entry-point discovery without pip."""
import shutil
import textwrap
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"


def make_dist(root: Path, dist: str, entry_points: dict, modules: dict, version: str = "0.1.0") -> Path:
    """Write modules (name -> source) and DIST-VERSION.dist-info with zoo.plugins entry points into root."""
    root.mkdir(parents=True, exist_ok=True)
    for name, src in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(src))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[zoo.plugins]\n{lines}")
    return root


def toy_dist(root: Path) -> Path:
    """The toy plugin (tests/fixtures/toyzoo.py) as an installed distribution 'zoo-toy'."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "toyzoo.py", root / "toyzoo.py")
    return make_dist(root, "zoo-toy", {"toy": "toyzoo"}, {})


# Plugin modules that break in the ways zoo must report (tests/test_foundation.py, tests/test_plugins.py).
BROKEN_SOURCES = {
    "brokenimport": "import does_not_exist_anywhere\n",
    "raisinghook": """
        from zoo import hookimpl
        @hookimpl
        def zoo_register_models(register):
            raise RuntimeError("boom in hook")
    """,
    "dupeplugin": """
        from zoo import hookimpl
        from toyzoo import Toy
        @hookimpl
        def zoo_register_models(register):
            register(Toy, name="toy")
    """,
}
