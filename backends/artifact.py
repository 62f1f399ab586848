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
Subclasses may add keys of their own.
"""
from __future__ import annotations

import importlib
import json
import shutil
import time
import weakref
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from cococ.ir.core import DTYPES, CococError, Graph
from cococ.ir.parser import parse_file
from cococ.ir.printer import save_ir

MANIFEST = "artifact.json"

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


def save_graph(graph: Graph, dir: Path) -> None:
    """model.ir + model.npz, the graph the artifact was built from."""
    save_ir(graph, Path(dir) / "model.ir", weights="npz")


def load_artifact(dir: str | Path) -> Artifact:
    """Open an artifact folder written by `Artifact.save` (or `cococ build -o DIR`)."""
    dir = Path(dir)
    path = dir / MANIFEST
    if not path.exists():
        raise CococError(f"{dir}: not a cococ artifact (no {MANIFEST}); make one with `cococ build -o {dir}`")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CococError(f"{path}: bad JSON: {e}") from None
    kind = manifest.get("kind")
    if kind not in KINDS:
        raise CococError(f"{path}: unknown artifact kind {kind!r} (known: {', '.join(KINDS)})")
    module, cls = KINDS[kind].split(":")
    return getattr(importlib.import_module(module), cls).load(dir, manifest)
