"""The package layout's import rule (docs/DESIGN.md, "Layout"): a module imports only from its own
subpackage or from subpackages below it, at module level and inside functions alike."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "syncopt"

# Bottom to top; each layer may import the layers before it. Layers on one line are peers of one
# floor and may not import each other.
LAYERS = [
    ("core",),
    ("data",),
    ("models",),
    ("training",),
    ("export",),
    ("runtimes",),
    ("parity",),
    ("compress",),
    ("inference",),
    ("analysis",),
    ("deploy",),
    ("pipeline",),
    ("cli",),
]
FLOOR = {name: floor for floor, names in enumerate(LAYERS) for name in names}
TOP_LEVEL = {"__init__", "__main__"}  # the package's face: may import anything it hands on


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found += [(node.lineno, n) for n in names if n.startswith("syncopt")]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("syncopt")]
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "assets" not in p.parts)


def test_every_module_lives_in_a_layer():
    stray = [str(p.relative_to(PACKAGE)) for p in _modules()
             if p.parent == PACKAGE and p.stem not in TOP_LEVEL and p.stem not in FLOOR]
    stray += [p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name not in FLOOR
              and p.name not in ("assets", "__pycache__")]
    assert not stray, f"modules outside every layer: {stray}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_downward(path: Path):
    module = _module(path)
    layer = _layer(module)
    if layer is None or path.stem in TOP_LEVEL and path.parent == PACKAGE:
        return
    upward = []
    for line, name in _imports(path):
        if name in ("syncopt", "syncopt.__version__"):  # "from syncopt import __version__"
            continue
        target = _layer(name)
        if target in FLOOR and target != layer and FLOOR[target] >= FLOOR[layer]:
            upward.append(f"line {line}: {name} ({target} is not below {layer})")
        elif target not in FLOOR:
            upward.append(f"line {line}: {name} (outside every layer: a name from before the layout?)")
    assert not upward, f"{module} imports upward: {upward}"


def test_the_rule_catches_an_upward_import(tmp_path):
    """The checker itself: a core module importing the inference layer is reported."""
    fake = tmp_path / "mod.py"
    fake.write_text("def f():\n    from syncopt.inference.sync import sync_video\n")
    names = [n for _, n in _imports(fake)]
    assert "syncopt.inference.sync.sync_video" in names
    assert FLOOR[_layer("syncopt.inference.sync")] > FLOOR["core"]


def test_moved_modules_import_under_their_old_names_with_a_warning():
    import importlib
    import sys

    import syncopt
    import syncopt.models.syncnet as new

    for old in ("syncopt.reference_models.syncnet", "syncopt.decode"):
        sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match="syncopt.reference_models.syncnet moved to syncopt.models.syncnet"):
        old = importlib.import_module("syncopt.reference_models.syncnet")
    assert old is new and new.__spec__.name == "syncopt.models.syncnet"
    with pytest.warns(DeprecationWarning, match="syncopt.decode moved"):
        from syncopt.decode import decode_dense
    assert decode_dense is importlib.import_module("syncopt.models.decode").decode_dense
    assert all(importlib.util.find_spec(target) is not None for target in syncopt.MOVED.values())


def test_import_syncopt_and_the_cli_stay_light():
    """`syncopt --version` / `--help` import neither torch nor numpy-heavy stacks (start-up under 0.5 s)."""
    import subprocess
    import sys

    code = ("import sys, syncopt.cli; heavy = [m for m in ('torch', 'onnx', 'tensorflow', 'cv2', 'av', 'scipy') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


@pytest.mark.parametrize("path", sorted((PACKAGE.parent / "benchmarks").glob("*.py")), ids=lambda p: p.name)
def test_benchmark_scripts_import_names_that_exist(path: Path):
    """Benchmarks are scripts no test runs whole: every ``from syncopt... import name`` in them (module level
    or inside a function) must resolve under the current layout, without the old-name alias."""
    import importlib
    import importlib.util
    import warnings

    missing = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "syncopt":
            with warnings.catch_warnings():
                warnings.simplefilter("error", DeprecationWarning)  # an old module name
                module = importlib.import_module(node.module)
            missing += [f"{node.module}.{a.name}" for a in node.names
                        if not hasattr(module, a.name) and importlib.util.find_spec(f"{node.module}.{a.name}") is None]
    assert not missing, missing
