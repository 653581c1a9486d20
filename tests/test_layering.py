"""The house's layers: every import between charrnn's modules points down, and none
closes a circle -- module-level imports and those inside functions alike.

    layer 0  charrnn (the version), errors, backend, atomic, web   (used by all)
    layer 1  text        decoding, jamo, vocabulary
    layer 2  nn          the Keras model, fused recurrence, cells, the one step, weight names
    layer 3  store       datasets, run directories, checkpoints, weights file, the one loader
    layer 4  generate    symbol choice, NumPy / XLA engines, sampler, text out, -i
    layer 5  training, analysis, export   (the commands' libraries; siblings)
    layer 6  serve       the HTTP server: generation and scoring for other programs
    layer 7  api (the Python API), and its older re-exports charrnn.runs, .data, .scoring
    layer 8  cli: the command line, a layer over the API

A module may import any lower layer and its own subpackage; the loose modules of layers
0, 7 and 8 may import each other (no circles).  charrnn/__init__.py reaches the API lazily
(FRONT_DOOR), which is not an import of layer 0's.  Layer 5's siblings may not, but for one:
training -> analysis (validation scores with the one scoring definition).
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "charrnn"

LAYERS = {
    "charrnn": 0,
    "errors": 0,
    "backend": 0,
    "atomic": 0,
    "web": 0,
    "text": 1,
    "nn": 2,
    "store": 3,
    "generate": 4,
    "training": 5,
    "analysis": 5,
    "export": 5,
    "serve": 6,
    "api": 7,
    "cli": 8,
    "__main__": 8,
    "runs": 7,
    "data": 7,
    "scoring": 7,
}
SIDEWAYS = {("training", "analysis")}
# The package's front door: charrnn/__init__.py hands out the API's names on first use
# (PEP 562 __getattr__), importing charrnn.api only then; nothing below imports it.
FRONT_DOOR = ("charrnn", "charrnn.api")
LOOSE = (0, 7, 8)  # layers of single modules, not subpackages (8: cli and __main__)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def group(name: str) -> str:
    """The layer-table key of module ``charrnn.x.y``: its subpackage or top module."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def imports(path: Path, root: Path):
    """(line, imported module) for every charrnn import in ``path``, wherever it sits."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module_name(path, root)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == root.name:
                    yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            if base.split(".")[0] != root.name:
                continue
            for a in node.names:  # `from charrnn.store import loader` imports a module
                sub = f"{base}.{a.name}"
                yield node.lineno, sub if resolves(sub, root) else base


def resolves(name: str, root: Path) -> bool:
    rel = Path(*name.split(".")[1:])
    return (root / rel).with_suffix(".py").is_file() or (root / rel / "__init__.py").is_file()


def problems(root: Path) -> list:
    """Every upward or forbidden sideways import, and every circle, as 'file:line: why'."""
    found, graph = [], {}
    for path in sorted(root.rglob("*.py")):
        src = module_name(path, root)
        for line, dst in imports(path, root):
            if dst == src or (src, dst) == FRONT_DOOR:
                continue
            graph.setdefault(src, {}).setdefault(dst, (path, line))
            a, b = group(src), group(dst)
            if a not in LAYERS or b not in LAYERS:
                found.append(
                    f"{path}:{line}: {src} or {dst} has no layer in tests/test_layering.py"
                )
            elif a != b and (
                LAYERS[b] > LAYERS[a]
                or LAYERS[b] == LAYERS[a] not in LOOSE
                and (a, b) not in SIDEWAYS
            ):
                kind = "up" if LAYERS[b] > LAYERS[a] else "sideways"
                found.append(
                    f"{path}:{line}: {src} (layer {LAYERS[a]}) imports {kind} "
                    f"{dst} (layer {LAYERS[b]})"
                )
    found += circles(graph)
    return found


def circles(graph: dict) -> list:
    """A circle of imports (depth-first search), named by the import that closes it."""
    found, state = [], {}

    def visit(node, trail):
        state[node] = "open"
        for nxt, (path, line) in graph.get(node, {}).items():
            if state.get(nxt) == "open":
                ring = trail[trail.index(nxt) :] + [node, nxt] if nxt in trail else [node, nxt]
                found.append(f"{path}:{line}: closes a circle: {' -> '.join(ring)}")
            elif nxt not in state:
                visit(nxt, trail + [node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def test_imports_point_down_and_close_no_circle():
    assert problems(ROOT) == []


def test_every_module_has_a_layer():
    groups = {group(module_name(p, ROOT)) for p in ROOT.rglob("*.py")}
    assert groups <= set(LAYERS), groups - set(LAYERS)


def _tree(tmp_path, files: dict) -> Path:
    root = tmp_path / "charrnn"
    for name, text in {"__init__.py": "", **files}.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return root


def test_a_planted_upward_import_is_named_with_file_and_line(tmp_path):
    """The checker itself: an upward import inside a function, found at its line."""
    root = _tree(
        tmp_path,
        {
            "text/__init__.py": "",
            "text/vocab.py": "import numpy\n",
            "store/__init__.py": "",
            "store/loader.py": "from charrnn.text import vocab\n",
            "text/jamo.py": "def f():\n    from charrnn.store import loader\n",
        },
    )
    assert problems(root) == [
        f"{root / 'text' / 'jamo.py'}:2: charrnn.text.jamo (layer 1) "
        "imports up charrnn.store.loader (layer 3)"
    ]


def test_a_circle_inside_one_layer_is_found(tmp_path):
    root = _tree(
        tmp_path,
        {
            "store/__init__.py": "",
            "store/a.py": "from charrnn.store import b\n",
            "store/b.py": "\n\ndef later():\n    from charrnn.store.a import x\n",
        },
    )
    assert problems(root) == [
        f"{root / 'store' / 'b.py'}:4: closes a circle: "
        "charrnn.store.a -> charrnn.store.b -> charrnn.store.a"
    ]


def test_siblings_may_not_import_each_other_but_training_may_score(tmp_path):
    root = _tree(
        tmp_path,
        {
            "analysis/__init__.py": "",
            "analysis/scoring.py": "",
            "export/__init__.py": "",
            "export/page.py": "",
            "training/__init__.py": "",
            "training/loop.py": "from charrnn.analysis import scoring\n",
            "analysis/visualize.py": "import charrnn.export.page\n",
        },
    )
    assert problems(root) == [
        f"{root / 'analysis' / 'visualize.py'}:1: charrnn.analysis.visualize "
        "(layer 5) imports sideways charrnn.export.page (layer 5)"
    ]


def test_each_command_is_imported_from_the_module_that_defines_it():
    """charrnn.cli.group.COMMANDS names the module of every command (imported on demand, so
    `charrnn sample` imports only its own): each registers exactly the commands listed for it,
    and a fresh `import charrnn.cli` imports none of them."""
    import importlib
    import subprocess
    import sys

    from charrnn.cli.group import COMMANDS, cli

    for module in set(COMMANDS.values()):
        before = set(cli.commands)
        importlib.import_module(f"charrnn.cli.{module}")
        listed = {name for name, m in COMMANDS.items() if m == module}
        assert listed <= set(cli.commands), (module, listed - set(cli.commands))
        assert set(cli.commands) - before <= listed, (module, set(cli.commands) - before)
    assert set(cli.commands) == set(COMMANDS)
    probe = (
        "import sys, charrnn.cli; "
        "print(sorted(m for m in sys.modules if m.startswith('charrnn.cli.')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['charrnn.cli.group']", out.stdout
