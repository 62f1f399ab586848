"""The formats benchmarks/fuzz_frontends.py fuzzes: for each, its seeds, mutator, writer and loader.

A loader does with the file what the CLI does: parse it, and where the CLI would go on, go on
(random weights for small nets, as `--init random`; weights into the net they belong to; an
artifact folder through `cococ run --check`). Seeds are real files: the Caffe corpus
(../shared/corpus), the shipped examples, and files written from them (IR text, .caffemodel,
.npz, a tiny arm-m4 artifact), so the mutations start from inputs the frontends accept.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "prototxt"
EXAMPLES = ROOT / "examples"
TESTS = ROOT / "tests" / "frontend"  # the ONNX seeds and the .caffemodel writer live beside their tests
SMALL = 1_000_000  # nets with fewer params also take random weights (the size guard's path)


@dataclass
class Seed:
    name: str
    data: bytes
    ctx: Any = None  # what the loader needs besides the bytes (the net of a weights file, ...)


@dataclass
class Case:
    seed: str
    data: bytes
    ctx: Any = None
    member: str | None = None  # artifact: the file of the folder that was mutated


# ---- mutators ------------------------------------------------------------------------------------

_TOKEN = re.compile(rb'"(?:[^"\\\n]|\\.)*"|[A-Za-z_][A-Za-z0-9_]*|-?\d+\.?\d*(?:[eE][+-]?\d+)?|\S')
_NUM = re.compile(rb"-?\d+\.?\d*(?:[eE][+-]?\d+)?")
_NUMBERS = [b"0", b"-1", b"1", b"2147483648", b"99999999999999999999", b"1e308", b"-inf", b"nan", b"0x7fffffff",
            b"3.5", b"-0"]
GIANT = [b"100000", b"1000000", b"65536", b"2147483647", b"4294967295", b"1099511627776"]
_NAMES = [b"layer", b"layers", b"module", b"top", b"bottom", b"type", b"name", b"include", b"phase", b"input",
          b"input_dim", b"{", b"}", b":", b'"Convolution"', b'"Eltwise"', b'"Slice"', b'"Input"', b'""', b"TRAIN",
          b"%x", b"=", b"[", b"]", b"(", b")", b"f32", b"i8", b"@g", b"return", b"graph", b"dense", b"conv2d"]


def mutate_text(data: bytes, rng: random.Random, rounds: int | None = None) -> bytes:
    """Byte flips, truncation, token deletion / duplication / replacement / misspelling, numbers
    swapped for edge values or giant dimensions."""
    for _ in range(rounds or rng.randint(1, 3)):
        kind = rng.choice(("flip", "truncate", "delete", "duplicate", "number", "giant", "keyword", "swap", "typo"))
        if not data:
            return data
        if kind == "flip":
            i = rng.randrange(len(data))
            data = data[:i] + bytes([rng.randrange(256)]) + data[i + 1:]
        elif kind == "truncate":
            data = data[:rng.randrange(len(data))]
        else:
            toks = [(m.start(), m.end()) for m in _TOKEN.finditer(data)]
            if not toks:
                continue
            s, e = rng.choice(toks)
            if kind in ("number", "giant"):
                nums = [t for t in toks if _NUM.fullmatch(data[t[0]:t[1]])]
                s, e = rng.choice(nums) if nums else (s, e)
                data = data[:s] + rng.choice(_NUMBERS if kind == "number" else GIANT) + data[e:]
            elif kind == "delete":
                data = data[:s] + data[e:]
            elif kind == "duplicate":
                data = data[:e] + b" " + data[s:e] + data[e:]
            elif kind == "keyword":
                data = data[:s] + rng.choice(_NAMES) + data[e:]
            elif kind == "typo" and e - s > 2:  # a misspelt field name (`strde`)
                j = rng.randrange(s, e)
                data = data[:j] + data[j + 1:]
            else:  # swap with another token of the file
                s2, e2 = rng.choice(toks)
                data = data[:s] + data[s2:e2] + data[e:]
    return data


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """Binary formats: flip / set / insert / delete bytes, truncate, or write a giant varint or
    little-endian integer (a length, a dimension) over a random place."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(b)) if b else 0
        kind = rng.choice(("flip", "set", "insert", "delete", "truncate", "varint", "int64"))
        if kind == "flip" and b:
            b[i] ^= 1 << rng.randrange(8)
        elif kind == "set" and b:
            b[i] = rng.randrange(256)
        elif kind == "insert":
            b[i:i] = bytes([rng.randrange(256)]) * rng.randint(1, 8)
        elif kind == "delete":
            del b[i:i + rng.randint(1, 8)]
        elif kind == "truncate":
            del b[i:]
        elif kind == "varint":
            b[i:i + 1] = rng.choice([b"\xff\xff\xff\xff\x0f", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x80"])
        else:
            b[i:i + 8] = rng.choice([2**31 - 1, 2**32, 2**40, 2**63 - 1, 2**64 - 1]).to_bytes(8, "little")
    return bytes(b)


def _text_case(s: Seed, rng: random.Random) -> Case:
    return Case(s.name, mutate_text(s.data, rng), s.ctx)


def _bytes_case(s: Seed, rng: random.Random) -> Case:
    return Case(s.name, mutate_bytes(s.data, rng), s.ctx)


# ---- text formats --------------------------------------------------------------------------------

def _nets() -> list[Path]:
    return sorted(p for p in list(CORPUS.rglob("*.prototxt")) + list(EXAMPLES.rglob("*.prototxt"))
                  if "solver" not in p.name)


def _nparams(graph) -> int:
    return sum(p.type.size for l in graph.layers for p in l.params.values())


def _prototxt_seeds(work: Path) -> list[Seed]:
    from cococ.frontend.prototxt import load_prototxt
    return [Seed(p.name, p.read_bytes(), _nparams(load_prototxt(p)) < SMALL) for p in _nets()]


def _load_prototxt(path: Path, case: Case) -> None:
    """Half the cases (by length) with --lenient, which lets unknown fields through to the converters."""
    from cococ.frontend.prototxt import load_prototxt
    from cococ.frontend.weights import init_weights
    g = load_prototxt(path, lenient=len(case.data) % 2 == 1)
    if case.ctx:
        init_weights(g, "random")


def _solver_seeds(work: Path) -> list[Seed]:
    files = list(CORPUS.rglob("*solver*.prototxt")) + list(EXAMPLES.rglob("*solver*.prototxt"))
    return [Seed(p.name, p.read_bytes()) for p in sorted(files)]


def _load_solver(path: Path, case: Case) -> None:
    from cococ.frontend.solver import load_solver
    s = load_solver(path)
    if s.net_param is not None:
        s.net_graph("TRAIN")


def _ir_seeds(work: Path) -> list[Seed]:
    """The shipped .ir, and the IR text of every example and small corpus net (hashes for
    weights), one with its weights inline."""
    from cococ.frontend.load import load
    from cococ.frontend.prototxt import load_prototxt
    from cococ.frontend.weights import init_weights
    from cococ.ir.printer import print_graph
    out = [Seed(p.name, p.read_bytes(), True) for p in sorted(EXAMPLES.rglob("*.ir"))]
    for p in _nets():
        if p.stat().st_size < 20_000:
            g = load_prototxt(p)
            out.append(Seed(p.stem + ".ir", print_graph(g).encode(), _nparams(g) < SMALL))
    bn = load(EXAMPLES / "ir" / "bn_net.ir")
    out.append(Seed("bn_net-inline.ir", print_graph(init_weights(bn, "random"), "inline").encode(), True))
    return out


def _load_ir(path: Path, case: Case) -> None:
    from cococ.frontend.load import load
    from cococ.frontend.weights import init_weights
    g = load(path)
    if case.ctx:
        init_weights(g, "random")


# ---- ONNX ----------------------------------------------------------------------------------------

def _onnx_seeds(work: Path) -> list[Seed]:
    from benchmarks.fuzz_onnx import onnx_seeds
    return [Seed(f"onnx-{i}", data) for i, data in enumerate(onnx_seeds())]


def _onnx_case(s: Seed, rng: random.Random) -> Case:
    from benchmarks.fuzz_onnx import structured
    return Case(s.name, mutate_bytes(s.data, rng) if rng.random() < 0.5 else structured(s.data, rng))


def _load_onnx(path: Path, case: Case) -> None:
    from cococ.frontend.onnx import load_onnx
    load_onnx(path)


# ---- weights: caffemodel, safetensors, npz --------------------------------------------------------

WEIGHTED = ["lenet/lenet", "lenet300/lenet300", "resnet/resnet"]  # examples with .prototxt + .safetensors


def _example_weights() -> list[tuple[Path, dict[str, np.ndarray]]]:
    from safetensors.numpy import load_file
    return [(EXAMPLES / f"{w}.prototxt", load_file(str(EXAMPLES / f"{w}.safetensors"))) for w in WEIGHTED]


def _caffemodel(net: Path, arrays: dict[str, np.ndarray], v1: bool) -> bytes:
    """A .caffemodel of the example's weights, blobs in the ops' Caffe order (caffe_blobs)."""
    from test_caffemodel import blob, layer  # the tests' protobuf writer (tests/frontend on sys.path)
    from cococ.frontend.prototxt import load_prototxt
    g = load_prototxt(net)
    out = b""
    for l in g.layers:
        blobs = [blob(arrays[f"{l.name}/{p}"]) for p in l.opdef.caffe_blobs if f"{l.name}/{p}" in arrays]
        if blobs:
            out += layer(l.meta.get("caffe_name", l.name), l.meta.get("caffe_type", l.op), blobs, v1=v1)
    return out


def _caffemodel_seeds(work: Path) -> list[Seed]:
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    return [Seed(f"{net.stem}{'-v1' if v1 else ''}.caffemodel", _caffemodel(net, arrays, v1), net)
            for net, arrays in _example_weights() for v1 in (False, True) if not (v1 and "resnet" in net.stem)]


def _safetensors_seeds(work: Path) -> list[Seed]:
    return [Seed(f"{w}.safetensors", (EXAMPLES / f"{w}.safetensors").read_bytes(), EXAMPLES / f"{w}.prototxt")
            for w in WEIGHTED]


def _safetensors_case(s: Seed, rng: random.Random) -> Case:
    """Half the cases edit the JSON header (a shape, dtype or offset) and keep its length field right."""
    if rng.random() < 0.5:
        return _bytes_case(s, rng)
    n = int.from_bytes(s.data[:8], "little")
    header = json.loads(s.data[8:8 + n])
    key = rng.choice([k for k in header if k != "__metadata__"])
    what = rng.choice(("shape", "dtype", "data_offsets"))
    if what == "shape":
        header[key]["shape"] = [rng.choice([0, 1, 3, 100000, 2**31, 2**40]) for _ in range(rng.randint(0, 4))]
    elif what == "dtype":
        header[key]["dtype"] = rng.choice(["F16", "F64", "I8", "U8", "BOOL", "Q4", ""])
    else:
        a, b = header[key]["data_offsets"]
        header[key]["data_offsets"] = [a, rng.choice([a, b + 4, 2**40, a - 4])]
    text = json.dumps(header).encode()
    return Case(s.name, len(text).to_bytes(8, "little") + text + s.data[8 + n:], s.ctx)


def _npz_seeds(work: Path) -> list[Seed]:
    out = [Seed("bn_net.npz", (EXAMPLES / "ir" / "bn_net.npz").read_bytes(), EXAMPLES / "ir" / "bn_net.ir")]
    for (net, arrays), compress in zip(_example_weights()[:2], (np.savez, np.savez_compressed)):
        path = work / f"{net.stem}.npz"
        compress(path, **arrays)
        out.append(Seed(path.name, path.read_bytes(), net))
    return out


def _load_weights(path: Path, case: Case) -> None:
    from cococ.frontend.load import load
    from cococ.frontend.weights import load_weights
    load_weights(load(case.ctx), path)


# ---- run inputs: .npy / .npz ---------------------------------------------------------------------

INPUT_SPEC = [{"name": "data", "shape": [1, 1, 28, 28], "dtype": "f32"}]


def _npy_seeds(work: Path) -> list[Seed]:
    digit = np.load(EXAMPLES / "lenet" / "digit.npy")
    path = work / "inputs.npz"
    np.savez(path, data=digit)
    return [Seed("digit.npy", (EXAMPLES / "lenet" / "digit.npy").read_bytes(), ".npy"),
            Seed("inputs.npz", path.read_bytes(), ".npz")]


def _load_input(path: Path, case: Case) -> None:
    """What `cococ run DIR --input FILE` does with the file, against LeNet's input spec."""
    from cococ.backends.artifact import Artifact
    from cococ.commands.run import read_inputs
    read_inputs(Artifact("x86", {"inputs": INPUT_SPEC, "outputs": []}), str(path), 0)


# ---- artifact folders ----------------------------------------------------------------------------

TINY = """name: "tiny"
input: "data"
input_shape { dim: 1 dim: 1 dim: 8 dim: 8 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 2 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc" inner_product_param { num_output: 3 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""
MEMBERS = ("artifact.json", "model.ir", "model.npz", "report.json", "model.elf")


def _artifact_seeds(work: Path) -> list[Seed]:
    """A tiny arm-m4 build (emulated in milliseconds), cached until the net or the backend changes."""
    import cococ
    from cococ.frontend.prototxt import load_prototxt_text
    from cococ.frontend.weights import init_weights
    key = hashlib.sha256(TINY.encode())
    for src in sorted((ROOT / "backends").rglob("*.py")):
        key.update(src.read_bytes())
    cache = Path(tempfile.gettempdir()) / f"cococ-fuzz-artifact-{key.hexdigest()[:12]}"
    if not (cache / "artifact.json").exists():
        tmp = Path(tempfile.mkdtemp(prefix=cache.name + "-"))
        cococ.build(init_weights(load_prototxt_text(TINY, path="tiny.prototxt")), "arm-m4", out_dir=tmp)
        tmp.rename(cache) if not cache.exists() else shutil.rmtree(tmp)
    files = {m: (cache / m).read_bytes() for m in MEMBERS if (cache / m).exists()}
    return [Seed(m, data, files) for m, data in files.items()]


def _artifact_case(s: Seed, rng: random.Random) -> Case:
    if s.name == "model.elf":  # the header and the tables, or a truncation: code bytes could loop
        b = bytearray(s.data)
        if rng.random() < 0.5:
            del b[rng.randrange(len(b)):]
        else:
            b[:64] = mutate_bytes(bytes(b[:64]), rng)[:64]
        data = bytes(b)
    elif s.name == "model.npz":
        data = mutate_bytes(s.data, rng)
    else:
        data = mutate_text(s.data, rng)
    return Case(s.name, data, s.ctx, member=s.name)


def _write_artifact(case: Case, work: Path) -> Path:
    d = work / "artifact"
    d.mkdir(exist_ok=True)
    for m, data in case.ctx.items():
        (d / m).write_bytes(case.data if m == case.member else data)
    return d


def _load_artifact(path: Path, case: Case) -> None:
    """`cococ run DIR --check`, in this process (a CococError propagates, as to the CLI's main)."""
    from cococ.cli import make_parser
    from cococ.commands.run import run
    run(make_parser("run").parse_args(["run", str(path), "--check"]))


# ---- the table -----------------------------------------------------------------------------------

@dataclass
class Format:
    seeds: Callable[[Path], list[Seed]]
    mutate: Callable[[Seed, random.Random], Case]
    load: Callable[[Path, Case], None]
    suffix: str | Callable[[Case], str]
    write: Callable[[Case, Path], Path] = field(default=None)  # type: ignore[assignment]

    def __post_init__(self):
        if self.write is None:
            self.write = self._write_file

    def _write_file(self, case: Case, work: Path) -> Path:
        suffix = self.suffix(case) if callable(self.suffix) else self.suffix
        path = work / f"fuzz{suffix}"
        path.write_bytes(case.data)
        return path


FORMATS: dict[str, Format] = {  # cheapest first: a campaign cut by time gives the costly ones what is left
    "npy": Format(_npy_seeds, _bytes_case, _load_input, lambda case: case.ctx),
    "solver": Format(_solver_seeds, _text_case, _load_solver, ".prototxt"),
    "ir": Format(_ir_seeds, lambda s, rng: Case(s.name, (mutate_text if rng.random() < 0.8 else mutate_bytes)(
        s.data, rng), s.ctx), _load_ir, ".ir"),
    "npz": Format(_npz_seeds, _bytes_case, _load_weights, ".npz"),
    "onnx": Format(_onnx_seeds, _onnx_case, _load_onnx, ".onnx"),
    "caffemodel": Format(_caffemodel_seeds, _bytes_case, _load_weights, ".caffemodel"),
    "safetensors": Format(_safetensors_seeds, _safetensors_case, _load_weights, ".safetensors"),
    "artifact": Format(_artifact_seeds, _artifact_case, _load_artifact, "", _write_artifact),
    "prototxt": Format(_prototxt_seeds, _text_case, _load_prototxt, ".prototxt"),
}
