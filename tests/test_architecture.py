"""docs/architecture.md states the direction of imports between the package's rooms; every module
under src/convnet keeps it (its imports read with `ast`, lazy ones inside functions included)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "convnet"
DOC = ROOT / "docs" / "architecture.md"

# Imports the page's direction forbids that are still in the code, each with the change that
# removes it; the test fails when one goes, so that the entry goes too.
KNOWN: dict[tuple[str, str], str] = {}

# Modules at the package's top level besides cli.py, which the page places in its "Besides the
# order" list: each with the room whose level it sits on.
TOP_LEVEL = {"__main__": "cli", "_argtypes": "layers"}
# Rooms and modules that import nothing of ours (the page says so of each).
IMPORT_NOTHING = ("layers", "_argtypes")


def room_levels() -> dict[str, int]:
    """The rooms of the page's arrow line, each with its level: 0 for the leftmost."""
    section = DOC.read_text().split("## The direction of imports", 1)[1]
    line = next(line for line in section.splitlines() if "→" in line)
    return {room.strip(): level for level, group in enumerate(line.split("→"))
            for room in re.split(r"[,/]", group)}


def imports(path: Path, package_dir: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a convnet module in the file, absolute or relative."""
    module = "convnet." + ".".join(path.relative_to(package_dir).with_suffix("").parts)
    package = module.removesuffix(".__init__") if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names] if target == "convnet" else [target]
            found += [(node.lineno, name) for name in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return [(line, name) for line, name in found if name.startswith("convnet.")]


def room_of(module: str) -> str | None:
    """The room of a module: its first part under convnet (``cli``, ``__main__`` for the
    top-level files); None for the package itself, the public API above every room."""
    parts = module.removesuffix(".__init__").split(".")
    return parts[1] if len(parts) > 1 else None


def violations(package_dir: Path = PACKAGE) -> dict[tuple[str, str], str]:
    """(importing module, imported module) -> "file:line: why" for every import against the page."""
    level = room_levels()
    level.update({module: level[room] for module, room in TOP_LEVEL.items()})
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        module = "convnet." + ".".join(path.relative_to(package_dir).with_suffix("").parts)
        source = room_of(module)
        for line, target in imports(path, package_dir):
            dest = room_of(target)
            if source is None or source == dest:
                continue
            why = None
            if dest is None:
                why = "imports the public API, which sits above every room"
            elif source not in level or dest not in level:
                why = f"a room the page does not place ({source if source not in level else dest})"
            elif level[dest] > level[source]:
                why = f"{source} is left of {dest}"
            elif source in IMPORT_NOTHING:
                why = f"{source} imports nothing of ours"
            elif source == "data" and dest in ("models", "train"):
                why = "data/ imports no model and no trainer"
            if why:
                where = path.relative_to(package_dir.parents[1])
                found[(module.removesuffix(".__init__"), target)] = f"{where}:{line}: {why}"
    return found


def test_the_page_places_every_room():
    rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms | {"cli"} == set(room_levels()), "docs/architecture.md's arrow line must name every room"
    assert room_levels()["layers"] == room_levels()["ops"] == 0 and room_levels()["cli"] == max(room_levels().values())


def test_the_page_places_every_top_level_module():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "cli"}
    assert modules == set(TOP_LEVEL), "a module at the top of src/convnet needs a place on docs/architecture.md"
    section = DOC.read_text().split("## The direction of imports", 1)[1].split("\n## ", 1)[0]
    missing = [m for m in TOP_LEVEL if f"`{m}.py`" not in section]
    assert not missing, f"docs/architecture.md's direction of imports does not place {missing}"


def test_imports_run_the_way_the_page_says():
    found = violations()
    new = {k: v for k, v in found.items() if k not in KNOWN}
    assert not new, "imports against docs/architecture.md:\n" + "\n".join(sorted(new.values()))
    gone = set(KNOWN) - set(found)
    assert not gone, f"no longer in the code, remove from KNOWN: {sorted(gone)}"


def test_the_check_sees_a_violation(tmp_path):
    """The checker itself: an upward import, a lazy one inside a function, is reported."""
    fake = tmp_path / "src" / "convnet"
    (fake / "layers").mkdir(parents=True)
    (fake / "layers" / "__init__.py").write_text("")
    (fake / "layers" / "bad.py").write_text("def f():\n    from ..train import Trainer\n    from .. import models\n")
    for room in set(room_levels()) - {"layers", "cli"}:
        (fake / room).mkdir()
        (fake / room / "__init__.py").write_text("")
    found = violations(fake)
    assert set(found) == {("convnet.layers.bad", "convnet.train"), ("convnet.layers.bad", "convnet.models")}
    assert "layers is left of train" in found[("convnet.layers.bad", "convnet.train")]
