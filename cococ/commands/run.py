"""Run a built artifact on its target and print the outputs (arm-m4: on the emulated Cortex-M4,
with executed instructions and estimated cycles per layer).

    cococ run build/lenet-m4 --random --check
    cococ run build/lenet-x86 --input digit.npy --bench 100
"""
from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from cococ.commands.common import input_file, positive_int
from cococ.ir.core import CococError
from cococ.ir.interpreter import run as interpret
from cococ.ir.memory import check_memory
from cococ.passes.quantize import QMAX

F32_TOL = 1e-4          # |y - ref| <= F32_TOL * (1 + |ref|)
Q15_TOL = 0.01          # q15: |y - ref| <= Q15_TOL * max|ref| (1% of the output's range; docs/mcu.md)
QUANT_TOL = {"q15": Q15_TOL, "int8": 0.15}  # int8: 15% of the output's range (docs/mcu.md)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="artifact folder written by `cococ build`")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--input", metavar="FILE", help=".npy (one input) or .npz (inputs by name)")
    src.add_argument("--random", action="store_true", help="random inputs (the default): normal, or for a "
                     "q15/int8 build calibrated on data uniform in its calibration range")
    parser.add_argument("--seed", type=int, default=0, help="seed for --random (default 0)")
    parser.add_argument("--bench", type=positive_int, metavar="N", help="time N runs (arm-m4: the cycle estimate)")
    parser.add_argument("--check", action="store_true",
                        help="compare with the reference interpreter on the saved graph; exit 1 on mismatch")


def read_inputs(art, path: str | None, seed: int) -> dict[str, np.ndarray]:
    if path is None:
        return random_inputs(art, seed)
    p = input_file(path, "--input")
    try:
        data = np.load(p, allow_pickle=False)
        arrays = [data] if isinstance(data, np.ndarray) else {k: data[k] for k in data.files}
    except Exception as e:  # noqa: BLE001 - truncation, garbage, pickles, zip errors: all the user's file
        raise CococError(f"--input {p}: cannot read as .npy/.npz ({type(e).__name__}: {e})") from None
    try:
        return art.normalize_inputs(arrays)
    except (TypeError, ValueError) as e:  # an array numpy cannot cast to the input's dtype (strings, objects)
        raise CococError(f"--input {p}: {e}") from None


def random_inputs(art, seed: int) -> dict[str, np.ndarray]:
    """Random-normal inputs, as a float build or one calibrated on random-normal inputs expects;
    for a build calibrated on data, uniform inside the input range it was calibrated on
    (|x| <= scale * qmax): the device clips beyond it, so normal inputs outside a narrow
    calibration (digits in [0, 1]) would fail --check without a bug."""
    quant = (art.manifest.get("options") or {}).get("quantize")
    meta = art.load_graph().meta.get("quant", {}) if isinstance(quant, str) and quant in QMAX else {}
    if not meta or meta.get("calibration", {}).get("source", "").startswith("random normal"):
        return art.random_inputs(seed)
    check_memory(sum(4 * math.prod(s["shape"]) for s in art.manifest["inputs"]), f"random inputs of {art.dir}")
    scales = meta.get("scales", {})
    rng = np.random.default_rng(seed)
    inputs = {}
    for s in art.manifest["inputs"]:
        peak = scales.get(s["name"], 1.0 / QMAX[quant]) * QMAX[quant]
        inputs[s["name"]] = rng.uniform(-peak, peak, s["shape"]).astype(np.float32)
        print(f"input {s['name']}: random uniform in [-{peak:.4g}, {peak:.4g}], the range the {quant} build "
              f"was calibrated on (the device clips outside it; --input for real data)")
    return inputs


def show_array(name: str, y: np.ndarray) -> str:
    flat = y.reshape(-1)
    head = np.array2string(flat[:10], precision=6, max_line_width=200)
    extra = f" ... ({flat.size} values, min {flat.min():.6g}, max {flat.max():.6g})" if flat.size > 10 else ""
    arg = f"  argmax {int(np.argmax(flat))}" if y.ndim == 2 and y.shape[0] == 1 else ""
    return f"{name} {list(y.shape)}: {head}{extra}{arg}"


def run(args: argparse.Namespace) -> int:
    from cococ.backends.artifact import load_artifact  # local: the IR parser's lark grammar, not for --help
    art = load_artifact(args.dir)
    inputs = read_inputs(art, args.input, args.seed)
    outputs = art.run(inputs)
    for name, y in outputs.items():
        print(show_array(name, y))
    if art.manifest["kind"] == "mcu":
        print_profile(art.profile())
    if args.bench:
        b = art.bench(args.bench, inputs)
        if "median_s" in b:
            print(f"bench: {b['n']} runs, median {b['median_s'] * 1e3:.3f} ms, min {b['min_s'] * 1e3:.3f} ms")
        else:
            print(f"bench: {b['cycles']:,} cycles (estimated), {b['instructions']:,} instructions; "
                  f"{b['cycles'] / 168e3:.2f} ms at 168 MHz")
    if args.check:
        return check(art, inputs, outputs)
    return 0


def print_profile(p: dict) -> None:
    """The per-step table (97 columns); a sparse step shows its kernel after the op and the MACs
    its kernel does (stored weights only), so cycles/MAC compares with the dense steps'."""
    print(f"{'step':>4}  {'layers':20} {'op (kernel)':24} {'MACs':>10} {'instructions':>12} {'cycles':>12} "
          f"{'cyc/MAC':>8}")
    sparse = 0
    for s in p["steps"]:
        layers = "+".join(s["layers"]) or "-"
        fmt = s.get("format", "dense")
        op = s["op"] if fmt == "dense" else f"{s['op']} ({fmt})"
        sparse += fmt != "dense"
        cpm = f"{s['cycles_per_mac']:.2f}" if s["cycles_per_mac"] else ""
        print(f"{s['step']:>4}  {layers[:20]:20} {op[:24]:24} {s.get('stored_macs', s['macs']):>10,} "
              f"{s['instructions']:>12,} {s['cycles']:>12,} {cpm:>8}")
    print(f"{'':4}  {'(executor)':20} {'':24} {'':>10} {p['executor_instructions']:>12,} {p['executor_cycles']:>12,}")
    if sparse:
        print(f"{sparse} sparse step{'s' if sparse > 1 else ''} (csr / simd_group kernel): MACs of the stored "
              "weights only")
    ws = (f"; {p['flash_ws']} flash wait states: {p['flash_stall_cycles']:,} of them stalls"
          if p.get("flash_ws") else "")
    print(f"total: {p['instructions']:,} instructions, {p['cycles']:,} estimated cycles "
          f"(Cortex-M4 table, docs/mcu.md{ws})")


def check(art, inputs, outputs) -> int:
    ref = interpret(art.load_graph(), inputs)
    quant = (art.manifest.get("options") or {}).get("quantize")
    tol = QUANT_TOL.get(quant) if isinstance(quant, str) else None
    ok = True
    for name, y in outputs.items():
        if name not in ref:  # a damaged manifest: an output the saved graph does not have
            raise CococError(f"{art.dir}/artifact.json: output '{name}' is not an output of model.ir "
                             f"({', '.join(ref)}); rebuild the artifact with `cococ build`")
        r = ref[name]
        err = float(np.max(np.abs(y - r))) if r.size else 0.0
        if tol is not None:
            bound = tol * float(np.max(np.abs(r)))
            good = err <= bound
            desc = f"max |err| {err:.3g} (bound {bound:.3g} = {tol:g} x max|ref|, {quant})"
        else:
            good = bool(np.all(np.abs(y - r) <= F32_TOL * (1 + np.abs(r))))
            desc = f"max |err| {err:.3g} (tolerance {F32_TOL:g} x (1 + |ref|))"
        if r.ndim == 2:
            agree = float(np.mean(np.argmax(y, 1) == np.argmax(r, 1)))
            desc += f", top-1 agreement {agree:.0%}"
        print(f"check {name}: {'ok' if good else 'MISMATCH'}: {desc}")
        ok &= good
    if not ok:
        print("check failed", file=sys.stderr)
    return 0 if ok else 1
