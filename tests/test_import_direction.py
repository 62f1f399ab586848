"""The dependency direction of cococ's packages, read from the source (no module is imported).

    ir  <-  frontend, passes  <-  backends  <-  runtime  <-  cococ (CLI and API)

ir imports no other cococ package; frontend and passes import only ir (passes do not import
frontend: a pass's options are text, and what must load a file or a solver to do its work
trains, so it lives in runtime/compress); backends import ir, frontend and passes; runtime
imports those; cococ/ imports anything. Every import counts, at module top or inside a
function: an import inside a function is still a dependency, only a later one.

Besides the layers: no two sibling folders of one package import each other, directly or
round a loop (backends/mcu and backends/tvm are targets around one kernel library, not peers
that call back and forth).

Edges that break the rule today are listed in ALLOWED with the reason and what removes them;
an entry that matches no import any more fails too, so the list only shrinks.
"""
from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# folder -> import package (setup.py maps them so) and its layer; same layer: no edge either way
PACKAGES = {"ir": ("cococ.ir", 0), "frontend": ("cococ.frontend", 1), "passes": ("cococ.passes", 1),
            "backends": ("cococ.backends", 2), "runtime": ("cococ.runtime", 3), "cococ": ("cococ", 4)}

# (importing module, imported module) as fnmatch patterns -> why the edge is there, what removes it;
# empty since the target table and the interpreter moved to ir/, the artifact format and the M4
# emulator to backends/, and qeval to runtime/ (docs/design.md)
ALLOWED: dict[tuple[str, str], str] = {}
# (folder, folder) sibling edges that close a loop today -> why, what removes them
ALLOWED_LOOPS: dict[tuple[str, str], str] = {}


def package_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGES[parts[0]][0], *parts[1:]]) if parts[0] != "cococ" else ".".join(parts)


def imports() -> list[tuple[str, str, str]]:
    """(importing module, imported module, 'file:line') for every cococ import in the six folders."""
    out = []
    for folder in PACKAGES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            module = package_of(path)
            is_pkg = path.name == "__init__.py"
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    if node.level:   # relative: resolve against this module's package
                        base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_pkg else 0)]
                        names = [".".join(base + ([node.module] if node.module else []))]
                    else:
                        names = [node.module or ""]
                else:
                    continue
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                out += [(module, n, where) for n in names if n == "cococ" or n.startswith("cococ.")]
    return out


def layer_of(module: str) -> tuple[str, int]:
    """(folder, layer) of a module; the most specific package wins (cococ.ir before cococ)."""
    best = max((pkg for pkg, _ in PACKAGES.values() if module == pkg or module.startswith(pkg + ".")), key=len)
    return next((folder, rank) for folder, (pkg, rank) in PACKAGES.items() if pkg == best)


def allowed(src: str, dst: str) -> bool:
    return any(fnmatch.fnmatchcase(src, a) and fnmatch.fnmatchcase(dst, b) for a, b in ALLOWED)


def test_no_import_points_upward():
    bad = []
    for src, dst, where in imports():
        (sf, sr), (df, dr) = layer_of(src), layer_of(dst)
        if sf != df and dr >= sr and not allowed(src, dst):
            bad.append(f"{where}: {src} imports {dst} ({sf} -> {df} points upward or sideways)")
    assert not bad, "imports against the dependency direction:\n" + "\n".join(bad)


def test_allowed_edges_still_exist():
    edges = [(src, dst) for src, dst, _ in imports() if layer_of(src)[0] != layer_of(dst)[0]]
    stale = [f"{a} -> {b}" for a, b in ALLOWED
             if not any(fnmatch.fnmatchcase(s, a) and fnmatch.fnmatchcase(d, b) for s, d in edges)]
    assert not stale, "ALLOWED entries that match no import any more (remove them):\n" + "\n".join(stale)


def sibling_folder(module: str) -> str | None:
    """`cococ.backends.mcu.sparse` -> 'backends/mcu'; a module directly in a top folder -> None."""
    folder, _ = layer_of(module)
    rest = module[len(PACKAGES[folder][0]):].lstrip(".").split(".")
    sub = ROOT / folder / rest[0] if rest[0] else None
    return f"{folder}/{rest[0]}" if sub is not None and sub.is_dir() else None


def test_no_loop_between_sibling_folders():
    graph: dict[str, set[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for src, dst, w in imports():
        a, b = sibling_folder(src), sibling_folder(dst)
        if a and b and a != b and a.split("/")[0] == b.split("/")[0] and (a, b) not in ALLOWED_LOOPS:
            graph.setdefault(a, set()).add(b)
            where.setdefault((a, b), w)

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            n = todo.pop()
            if n == goal:
                return True
            if n not in seen:
                seen.add(n)
                todo += graph.get(n, ())
        return False

    loops = [f"{a} -> {b} ({where[a, b]}) and back" for a in graph for b in graph[a] if reaches(b, a)]
    assert not loops, "sibling folders importing each other:\n" + "\n".join(sorted(loops))


# the target families and the library below them: a target folder imports the library and never
# another target; the library imports no target (docs/design.md, "Backends")
TARGET_FOLDERS = {"backends/tvm", "backends/mcu"}
LIBRARY_FOLDER = "backends/kernels"


def test_targets_meet_only_in_the_kernel_library():
    bad = []
    for src, dst, w in imports():
        a, b = sibling_folder(src), sibling_folder(dst)
        if a in TARGET_FOLDERS and b in TARGET_FOLDERS and a != b:
            bad.append(f"{w}: target {a} imports target {b} ({dst})")
        if a == LIBRARY_FOLDER and b in TARGET_FOLDERS:
            bad.append(f"{w}: the kernel library imports target {b} ({dst})")
    assert not bad, "imports across target folders:\n" + "\n".join(bad)
