"""What `cococ.build` returns and `cococ run` loads: one base class for every target.

An artifact is a folder plus an in-memory object. The folder always holds `artifact.json`
(the manifest), `model.ir` + `model.npz` (the graph that was built, so `cococ run --check` can
run the reference interpreter on it), and whatever the target needs (a TVM library, a C
project and an ELF). Each backend subclasses `Artifact` and registers its `kind`, so
`load_artifact(dir)` can find the right class from the manifest alone, without importing
every backend (TVM is slow to import; the MCU path should not pay for it). The format is
defined here, beside the backends that write it, so that runtime (which loads and runs
artifacts) depends on backends and not the other way round.

Manifest keys every artifact writes:
    kind      "mcu" | "tvm" (selects the class, see KINDS)
    target    target name ("arm-m4", "x86", "cuda")
    inputs    [{"name", "shape", "dtype"}]  in graph-input order
    outputs   [{"name", "shape", "dtype"}]  in graph-output order
    options   build options (for a rebuild / the report), JSON-able
    sha256    {file: sha256 hex} of the folder's code files (`code_files`: the x86/cuda library,
              the M4 ELF), recorded when the backend wrote them
Subclasses may add keys of their own.

An artifact folder is code: `cococ run` loads its library into the process. Before loading,
`verify_code` compares each code file with the hash the manifest recorded at build time and
refuses a mismatch or a hash-less manifest with a one-line error; a truncated model.so would
otherwise kill the process with SIGBUS. The hash catches a damaged or half-copied folder, not a
deliberate change: whoever can write the library can write the manifest too (docs/cli-guide.md).
"""
from __future__ import annotations

import hashlib
import importlib
import json
import math
import shutil
import time
import weakref
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from cococ.ir.core import DTYPES, CococError, Graph
from cococ.ir.memory import check_memory
from cococ.ir.parser import parse_file
from cococ.ir.printer import save_ir

MANIFEST = "artifact.json"
HASHES = "sha256"   # manifest key of the code files' hashes

# manifest kind -> "module:Class"; imported lazily by load_artifact
KINDS: dict[str, str] = {
    "mcu": "cococ.backends.mcu.artifact:MCUArtifact",
    "tvm": "cococ.backends.tvm.artifact:TVMArtifact",
}


def io_spec(values) -> list[dict[str, Any]]:
    """[{"name", "shape", "dtype"}] for a list of IR Values (the manifest's inputs/outputs)."""
    return [{"name": v.name, "shape": list(v.type.shape), "dtype": v.type.dtype} for v in values]


class Artifact:
    """A built model: `run(inputs)`, `save(dir)`, `bench(n)`; subclasses implement `_run`.

    `dir` is where the artifact lives on disk (None until saved, for backends that build in
    memory). `graph` is the IR that was built (kept for `--check`; None if loaded without it).
    """

    kind: ClassVar[str] = ""

    def __init__(self, target: str, manifest: dict[str, Any], dir: str | Path | None = None,
                 graph: Graph | None = None):
        self.target = target
        self.manifest = dict(manifest)
        self.manifest.setdefault("kind", self.kind)
        self.manifest.setdefault("target", target)
        self.dir = Path(dir) if dir is not None else None
        self.graph = graph

    # -- the interface ---------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        return [i["name"] for i in self.manifest["inputs"]]

    @property
    def output_names(self) -> list[str]:
        return [o["name"] for o in self.manifest["outputs"]]

    def run(self, inputs) -> dict[str, np.ndarray]:
        """Run once. `inputs`: dict name -> array, a list in input order, or one array."""
        return self._run(self.normalize_inputs(inputs))

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def bench(self, n: int = 10, inputs=None) -> dict[str, Any]:
        """Time `n` runs (wall clock, seconds). Subclasses with better clocks (cycles) override."""
        feeds = self.normalize_inputs(inputs if inputs is not None else self.random_inputs())
        self._run(feeds)  # warm-up
        times = []
        for _ in range(max(1, n)):
            t0 = time.perf_counter()
            self._run(feeds)
            times.append(time.perf_counter() - t0)
        return {"n": len(times), "median_s": float(np.median(times)), "min_s": float(np.min(times))}

    def save(self, dir: str | Path) -> Path:
        """Write the artifact folder (manifest + graph + the subclass's files); returns the path."""
        dir = Path(dir)
        dir.mkdir(parents=True, exist_ok=True)
        if self.dir is not None and self.dir.resolve() != dir.resolve():
            shutil.copytree(self.dir, dir, dirs_exist_ok=True)
        self._save_files(dir)
        if self.graph is not None and not (dir / "model.ir").exists():
            save_graph(self.graph, dir)
        (dir / MANIFEST).write_text(json.dumps(self.manifest, indent=2) + "\n")
        self.dir = dir
        return dir

    def remove_when_collected(self) -> "Artifact":
        """For an artifact built into a temporary folder (no out_dir): the folder goes when the
        object does (or at exit). A search that builds every candidate to measure its cycles
        would otherwise leave one folder per build in /tmp; `save(dir)` copies what to keep."""
        weakref.finalize(self, shutil.rmtree, str(self.dir), True)
        return self

    def _save_files(self, dir: Path) -> None:
        """Subclass hook: write files that are not already in `self.dir`."""

    # -- the code in the folder ------------------------------------------------------------
    def code_files(self) -> list[str]:
        """Names (in `dir`) of the files that are code: loaded into this process or executed.
        Subclasses list theirs; the manifest holds their sha256 (`record_hashes`)."""
        return []

    def record_hashes(self) -> "Artifact":
        """Record the sha256 of every code file in the manifest: the backend calls this once it
        has written them, so the manifest describes the build's own files."""
        self.manifest[HASHES] = {name: file_sha256(self.dir / name) for name in self.code_files()}
        return self

    def verify_code(self) -> None:
        """Refuse to load code files that are not the ones built (see the module docstring)."""
        recorded = self.manifest.get(HASHES)
        for name in self.code_files():
            path = self.dir / name
            if not isinstance(recorded, dict) or not isinstance(recorded.get(name), str):
                raise CococError(f"{self.dir / MANIFEST}: no sha256 recorded for {name}, so it cannot be checked "
                                 f"before loading; rebuild the artifact with `cococ build`")
            if not path.is_file():
                raise CococError(f"{path}: missing from the artifact folder; rebuild it with `cococ build`")
            if file_sha256(path) != recorded[name]:
                raise CococError(f"{path}: sha256 differs from the one {MANIFEST} recorded at build time "
                                 f"(changed or truncated since); refusing to load it: rebuild with `cococ build`")

    @classmethod
    def load(cls, dir: Path, manifest: dict[str, Any]) -> "Artifact":
        return cls(manifest["target"], manifest, dir)

    # -- helpers ---------------------------------------------------------------------------
    def normalize_inputs(self, inputs) -> dict[str, np.ndarray]:
        specs = self.manifest["inputs"]
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != len(specs):
                raise CococError(f"model takes {len(specs)} inputs, got {len(inputs)}")
            inputs = {s["name"]: x for s, x in zip(specs, inputs)}
        out = {}
        for s in specs:
            if s["name"] not in inputs:
                raise CococError(f"missing input '{s['name']}' (inputs: {', '.join(self.input_names)})")
            x = np.asarray(inputs[s["name"]])
            if tuple(x.shape) != tuple(s["shape"]):
                raise CococError(f"input '{s['name']}' has shape {list(x.shape)}, model expects {s['shape']}")
            out[s["name"]] = x.astype(DTYPES[s["dtype"]], copy=False)
        return out

    def random_inputs(self, seed: int = 0) -> dict[str, np.ndarray]:
        specs = self.manifest["inputs"]  # shapes from a file: refuse a giant one before numpy tries
        check_memory(sum(math.prod(s["shape"]) * np.dtype(DTYPES[s["dtype"]]).itemsize for s in specs),
                     f"random inputs of {self.dir or 'the artifact'}")
        rng = np.random.default_rng(seed)
        return {s["name"]: rng.standard_normal(s["shape"]).astype(DTYPES[s["dtype"]])
                for s in self.manifest["inputs"]}

    def load_graph(self) -> Graph:
        """The graph that was built (from the folder's model.ir/model.npz if not in memory)."""
        if self.graph is None:
            if self.dir is None or not (self.dir / "model.ir").exists():
                raise CococError("artifact has no model.ir; cannot run the reference interpreter")
            self.graph = parse_file(self.dir / "model.ir")
        return self.graph

    def __repr__(self) -> str:
        return f"{type(self).__name__}(target={self.target!r}, dir={str(self.dir) if self.dir else None!r})"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_graph(graph: Graph, dir: Path) -> None:
    """model.ir + model.npz, the graph the artifact was built from."""
    save_ir(graph, Path(dir) / "model.ir", weights="npz")


def check_manifest(manifest: Any, path: Path) -> None:
    """The keys every artifact writes, with their types: a damaged manifest is named here, not
    met later as a KeyError inside a backend."""
    if not isinstance(manifest, dict):
        raise CococError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    kind = manifest.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:  # a list or an object is unhashable
        raise CococError(f"{path}: unknown artifact kind {kind!r} (known: {', '.join(KINDS)})")
    if not isinstance(manifest.get("target"), str):
        raise CococError(f"{path}: 'target' must be a target name, got {manifest.get('target')!r}")
    for key in ("inputs", "outputs"):
        specs = manifest.get(key)
        if not (isinstance(specs, list) and all(
                isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("dtype"), str)
                and s["dtype"] in DTYPES
                and isinstance(s.get("shape"), list) and all(type(d) is int and d >= 0 for d in s["shape"])
                for s in specs)):
            raise CococError(f"{path}: '{key}' must be a list of {{name, shape, dtype}}, got {specs!r:.80}")
    if not isinstance(manifest.get("options") or {}, dict):
        raise CococError(f"{path}: 'options' must be an object")


def load_artifact(dir: str | Path) -> Artifact:
    """Open an artifact folder written by `Artifact.save` (or `cococ build -o DIR`)."""
    dir = Path(dir)
    path = dir / MANIFEST
    if not path.exists():
        raise CococError(f"{dir}: not a cococ artifact (no {MANIFEST}); make one with `cococ build -o {dir}`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:  # JSONDecodeError, or UnicodeDecodeError on bytes that are not UTF-8
        raise CococError(f"{path}: bad JSON: {e}") from None
    except OSError as e:
        raise CococError(f"{path}: cannot read: {e.strerror or e}") from None
    check_manifest(manifest, path)
    kind = manifest["kind"]
    module, cls = KINDS[kind].split(":")
    return getattr(importlib.import_module(module), cls).load(dir, manifest)
