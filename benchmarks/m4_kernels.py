"""arm-m4 kernels per layer: cococ f32 / q15 / int8 against a plain C loop (the floor) and a
CMSIS-NN-style q15 / int8 kernel (the peer). Issue 4, benchmark (b).

For every conv / dense layer of LeNet-5 (examples/lenet) and LeNet-300-100 (examples/lenet300),
estimated cycles and executed instructions per MAC on the emulated Cortex-M4
(backends/mcu/emulator.py: unicorn + the Cortex-M4 cycle table of docs/mcu.md), for

- **cococ f32**, **cococ q15**, **cococ int8**: `cococ.build(graph, "arm-m4", ...)`, the whole
  model run once in the emulator; the per-layer numbers are the emulator's per-step counts (as
  `cococ run` prints them; the conv/dense step, with its fused bias/ReLU and requantisation;
  fixed-point convs include their im2col);
- **plain C f32**, **plain C q15**, **plain C int8**: the textbook nested loops (bias, optional
  ReLU, and for q15/int8 a rounding shift + saturation), one function per layer with the shapes
  as constants;
- **CMSIS-style q15**: the arm_fully_connected_q15 / arm_nn_mat_mult_kernel_q7_q15 arrangement:
  two output rows (channels) at a time, one 32-bit activation load (two q15 lanes) feeding two
  `__smlad`s (4 MACs per two SMLADs), the k loop unrolled to two words per iteration as
  mat_mult_kernel does; convs gather each output pixel's receptive field into a q15 column first
  (im2col, as arm_convolve_HWC_q15_basic), zero-padded to an even length;
- **CMSIS-style int8**: arm_fully_connected_q7 / arm_nn_mat_mult_kernel_q7_q15_reordered: the
  activations widened to a q15 column (convs: im2col, as arm_convolve_HWC_q7_basic), two output
  rows at a time, each row's four int8 weights read as one word (stored reordered
  [w0, w2, w1, w3]) and widened by SXTB16 / SXTB16 ROR 8 into two q15 pairs: 4 SMLADs per two
  column loads and two weight loads.

(3) and (4) are written here in C (benchmarks/m4_kernels/kernels.c.in), compiled with
arm-none-eabi-gcc -O2 -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 (the flags of
backends/mcu/emulate.py, whose linker script this reuses) into one tiny ELF per net and variant,
with a `model_run` that calls layer kernels `k<i>_<layer>` once each; the Emulator splits the
counts per kernel call. Each kernel's outputs are checked against numpy. Weights are random
(const, in flash), inputs random (SRAM); these loops' timing does not depend on the values.

    python benchmarks/m4_kernels.py [--net lenet|lenet300]
    python benchmarks/m4_kernels.py --int8-shapes     # the MLPerf Tiny layer shapes, int8 (m4_kernels_int8.py)
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import m4_kernels_int8  # noqa: E402  (beside this script)
TEMPLATES = Path(__file__).resolve().parent / "m4_kernels" / "kernels.c.in"

SH = 12  # requantization shift of the hand-written kernels (out = sat16/sat8(round(acc / 2^SH)))


@dataclass
class Layer:
    name: str
    op: str          # "conv" | "dense"
    c: int           # conv: input channels, dense: input length
    h: int
    w: int
    o: int           # output channels / length
    k: int           # conv kernel size (square, stride 1, no pad)
    relu: bool

    @property
    def oh(self):
        return self.h - self.k + 1

    @property
    def ow(self):
        return self.w - self.k + 1

    @property
    def kdim(self):   # length of one dot product
        return self.c * self.k * self.k if self.op == "conv" else self.c

    @property
    def n_out(self):
        return self.o * self.oh * self.ow if self.op == "conv" else self.o

    @property
    def macs(self):
        return self.n_out * self.kdim


NETS = {
    "lenet": ("LeNet-5", ROOT / "examples/lenet/lenet.prototxt", ROOT / "examples/lenet/lenet.safetensors",
              [Layer("conv1", "conv", 1, 28, 28, 20, 5, False), Layer("conv2", "conv", 20, 12, 12, 50, 5, False),
               Layer("ip1", "dense", 800, 1, 1, 500, 0, True), Layer("ip2", "dense", 500, 1, 1, 10, 0, False)]),
    "lenet300": ("LeNet-300-100", ROOT / "examples/lenet300/lenet300.prototxt",
                 ROOT / "examples/lenet300/lenet300.safetensors",
                 [Layer("ip1", "dense", 784, 1, 1, 300, 0, True), Layer("ip2", "dense", 300, 1, 1, 100, 0, True),
                  Layer("ip3", "dense", 100, 1, 1, 10, 0, False)]),
}


# --------------------------------------------------------------------------- cococ (1), (2)

def cococ_layers(proto, weights, layers, quantize):
    """Build with cococ for arm-m4, run once in the emulator; per layer {cycles, instructions, ...},
    the profile, and the linked image's flash and weight bytes."""
    import cococ
    g = cococ.load(str(proto), weights=str(weights))
    opts = {"flash": "1M" if quantize == "q15" else "512K" if quantize else "2M"}
    with tempfile.TemporaryDirectory() as d:
        art = cococ.build(g, "arm-m4", out_dir=d, quantize=quantize, target_options=opts)
        art.run(art.random_inputs(0))
        prof = art.profile()
        sizes = {"flash": art.report["flash"], "weight_bytes": art.report["weight_bytes"]}
    out = {}
    for L in layers:
        steps = [s for s in prof["steps"] if L.name in s["layers"] and s["macs"]]
        if len(steps) != 1:
            raise RuntimeError(f"cococ {quantize or 'f32'}: {len(steps)} MAC steps hold {L.name}: {prof['steps']}")
        s = steps[0]
        if s["macs"] != L.macs:
            raise RuntimeError(f"{L.name}: cococ counts {s['macs']} MACs, this script {L.macs}")
        out[L.name] = {"cycles": s["cycles"], "instructions": s["instructions"], "op": s["op"],
                       "layers": s["layers"]}
    return out, prof, sizes


# --------------------------------------------------------------------------- hand-written C (3), (4)

def _templates() -> dict[str, str]:
    """kernels.c.in: blocks `//== name` ... up to the next `//==`."""
    blocks, cur = {}, None
    for line in TEMPLATES.read_text().splitlines(keepends=True):
        if line.startswith("//== "):
            cur = line[5:].strip()
            blocks[cur] = ""
        elif cur is not None:
            blocks[cur] += line
    return blocks


def _fill(t: str, **kw) -> str:
    for k, v in kw.items():
        t = t.replace(f"@{k}@", str(v))
    return t


def _arr(ctype, name, a, const):
    if a.dtype == np.float32:
        vals = ",".join(f"{float(v):.9g}" for v in a.reshape(-1))
    else:
        vals = ",".join(str(int(v)) for v in a.reshape(-1))
    return f"{'const ' if const else ''}{ctype} {name}[{a.size}] __attribute__((aligned(4))) = {{{vals}}};\n"


def _data(L: Layer, rng):
    """Random f32 (exact multiples of 2^-6), q15 and int8 data for one layer, and numpy references."""
    xshape = (L.c, L.h, L.w) if L.op == "conv" else (L.c,)
    wshape = (L.o, L.kdim)
    xf = (rng.integers(-64, 64, xshape) / 64).astype(np.float32)
    wf = (rng.integers(-64, 64, wshape) / 64).astype(np.float32)
    bf = (rng.integers(-64, 64, L.o) / 64).astype(np.float32)
    xq = rng.integers(-8192, 8192, xshape).astype(np.int16)
    wq = rng.integers(-1024, 1024, wshape).astype(np.int16)
    bq = rng.integers(-(1 << 16), 1 << 16, L.o).astype(np.int32)

    def cols(x):
        if L.op == "dense":
            return x.reshape(1, -1)
        c = np.stack([x[:, i:i + L.k, j:j + L.k].reshape(-1) for i in range(L.oh) for j in range(L.ow)])
        return c  # (oh*ow, kdim), column order (c, kh, kw) = the weights' order

    yf = cols(xf).astype(np.float64) @ wf.T.astype(np.float64) + bf           # (pixels, o)
    acc = cols(xq).astype(np.int64) @ wq.T.astype(np.int64) + bq
    yq = np.clip((acc + (1 << (SH - 1))) >> SH, 0 if L.relu else -32768, 32767)
    if L.relu:
        yf = np.maximum(yf, 0)
    x8 = rng.integers(-128, 128, xshape).astype(np.int8)
    w8 = rng.integers(-128, 128, wshape).astype(np.int8)
    b8 = rng.integers(-(1 << 12), 1 << 12, L.o).astype(np.int32)
    acc8 = cols(x8).astype(np.int64) @ w8.T.astype(np.int64) + b8
    y8 = np.clip((acc8 + (1 << (SH - 1))) >> SH, 0 if L.relu else -128, 127)
    # NCHW / vector order: (o, pixels)
    return (xf, wf, bf, yf.T.reshape(-1)), (xq, wq, bq, yq.T.reshape(-1)), (x8, w8, b8, y8.T.reshape(-1))


def c_source(layers, variant, seed=0):
    """One C file: every layer's kernel for `variant` ('plain_f32', 'plain_q15', 'cmsis_q15', ...),
    its data, and model_run calling them in turn; returns (source, kernel names, expected outputs)."""
    t = _templates()
    rng = np.random.default_rng(seed)
    src = t["prelude"]
    calls, names, expect, off = "", [], [], 0
    for i, L in enumerate(layers):
        (xf, wf, bf, yf), (xq, wq, bq, yq), (x8, w8, b8, y8) = _data(L, rng)
        name = f"k{i}_{L.name}"
        kp = L.kdim + (L.kdim & 1)  # padded to an even length (cmsis q15)
        kp4 = (L.kdim + 3) // 4 * 4  # padded to a multiple of 4 (cmsis int8)
        consts = dict(NAME=name, C=L.c, H=L.h, W=L.w, O=L.o, KH=L.k, KW=L.k, OH=L.oh, OW=L.ow, K=L.kdim,
                      KP=kp, KP2=kp // 2, KP4=kp4, KW4=kp4 // 4, RELU=int(L.relu), LO=0 if L.relu else -32768,
                      LO8=0 if L.relu else -128, SH=SH, SH8=SH, NOUT=L.n_out)
        src += _fill(t[f"{variant}_{L.op}"], **consts)
        p = f"L{i}"
        if variant == "plain_f32":
            src += _arr("float", f"{p}_x", xf, False) + _arr("float", f"{p}_w", wf, True) + _arr("float", f"{p}_b", bf, True)
            calls += f"  {name}({p}_x, {p}_w, {p}_b, out + {off});\n"
            expect.append(yf)
        elif variant.endswith("int8"):
            w = w8
            if variant == "cmsis_int8":
                w = np.zeros((L.o, kp4), np.int8)
                w[:, :L.kdim] = w8
                w = w.reshape(L.o, kp4 // 4, 4)[:, :, [0, 2, 1, 3]].reshape(L.o, kp4)
            src += (_arr("int8_t", f"{p}_x", x8, False) + _arr("int8_t", f"{p}_w", w, True)
                    + _arr("int32_t", f"{p}_b", b8, True) + f"int8_t {p}_y[{L.n_out}] __attribute__((aligned(4)));\n")
            calls += (f"  {name}({p}_x, {p}_w, {p}_b, {p}_y);\n"
                      f"  for (int i = 0; i < {L.n_out}; ++i) out[{off} + i] = (float){p}_y[i];\n")
            expect.append(y8.astype(np.float64))
        else:
            w = wq
            if variant == "cmsis_q15" and kp != L.kdim:
                w = np.concatenate([wq, np.zeros((L.o, 1), np.int16)], axis=1)
            src += (_arr("int16_t", f"{p}_x", xq, False) + _arr("int16_t", f"{p}_w", w, True)
                    + _arr("int32_t", f"{p}_b", bq, True) + f"int16_t {p}_y[{L.n_out}] __attribute__((aligned(4)));\n")
            calls += (f"  {name}({p}_x, {p}_w, {p}_b, {p}_y);\n"
                      f"  for (int i = 0; i < {L.n_out}; ++i) out[{off} + i] = (float){p}_y[i];\n")
            expect.append(yq.astype(np.float64))
        names.append(name)
        off += L.n_out
    src += f"float model_input[1];\nfloat model_output[{off}];\n"
    src += ('__attribute__((section(".text.model_run"))) void model_run(const float* in, float* out) {\n'
            "  (void)in;\n  /* reference the I/O symbols the Emulator looks up, so --gc-sections keeps them */\n"
            '  __asm__ volatile("" :: "r"(model_input), "r"(model_output));\n'
            f"{calls}}}\n")
    return src, names, expect


def c_layers(layers, variant, workdir=None):
    """Compile `variant`'s kernels into one ELF, run it once, check outputs, return per-layer counts."""
    from cococ.backends.mcu.emulate import CFLAGS, GCC, LDSCRIPT
    from cococ.backends.mcu.emulator import Emulator
    src, names, expect = c_source(layers, variant)
    with tempfile.TemporaryDirectory(dir=workdir) as d:
        d = Path(d)
        (d / "k.c").write_text(src)
        (d / "k.ld").write_text(LDSCRIPT)
        r = subprocess.run([GCC, *CFLAGS, "k.c", "-T", "k.ld", "-o", "k.elf"], cwd=d, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"{GCC} failed on {variant}:\n{r.stderr[-3000:]}")
        emu = Emulator(d / "k.elf")
        res = emu.run(np.zeros(1, np.float32))
        sizes = {n: emu.symbols[n][1] for n in names}
    out, off = {}, 0
    for L, n, y in zip(layers, names, expect):
        got = res.outputs[off:off + y.size].astype(np.float64)
        off += y.size
        tol = 1e-4 * (1 + np.abs(y)) if variant == "plain_f32" else 0.0
        if not np.all(np.abs(got - y) <= tol):
            raise RuntimeError(f"{variant} {L.name}: wrong outputs (max |err| {np.max(np.abs(got - y)):.3g})")
        step = [s for s in res.steps if s.kernel == n]
        if len(step) != 1:
            raise RuntimeError(f"{variant}: the emulator saw {len(step)} calls of {n}")
        out[L.name] = {"cycles": step[0].cycles, "instructions": step[0].instructions, "text_bytes": sizes[n]}
    return out


# --------------------------------------------------------------------------- report

VARIANTS = [("cococ_f32", "cococ f32"), ("plain_f32", "plain C f32"), ("cococ_q15", "cococ q15"),
            ("plain_q15", "plain C q15"), ("cmsis_q15", "CMSIS-style q15"), ("cococ_int8", "cococ int8"),
            ("plain_int8", "plain C int8"), ("cmsis_int8", "CMSIS-style int8")]
QUANT = {"cococ_f32": None, "cococ_q15": "q15", "cococ_int8": "int8"}


def measure(net):
    title, proto, weights, layers = NETS[net]
    res, sizes = {}, {}
    for v, _ in VARIANTS:
        t0 = time.time()
        if v.startswith("cococ"):
            res[v], _, sizes[v] = cococ_layers(proto, weights, layers, QUANT[v])
        else:
            res[v] = c_layers(layers, v)
        print(f"  {net} {v}: {time.time() - t0:.0f} s", file=sys.stderr)
    return title, layers, res, sizes


def tables(results):
    head = ["net", "layer", "MACs"] + [lab for _, lab in VARIANTS]
    cyc, ins, data = [], [], []
    for net, (title, layers, res, _) in results.items():
        for L in layers:
            per = {v: res[v][L.name] for v, _ in VARIANTS}
            lname = "+".join(per["cococ_q15"]["layers"])
            cyc.append([title, lname, f"{L.macs:,}"] + [f"{per[v]['cycles'] / L.macs:.2f}" for v, _ in VARIANTS]
                       + [f"{per['cococ_q15']['cycles'] / per['cmsis_q15']['cycles']:.2f}",
                          f"{per['cococ_int8']['cycles'] / per['cmsis_int8']['cycles']:.2f}",
                          f"{per['cococ_q15']['cycles'] / per['plain_q15']['cycles']:.2f}",
                          f"{per['cococ_f32']['cycles'] / per['plain_f32']['cycles']:.2f}"])
            ins.append([title, lname, f"{L.macs:,}"] + [f"{per[v]['instructions'] / L.macs:.2f}" for v, _ in VARIANTS])
            data.append({"net": title, "layer": L.name, "macs": L.macs, **per})
    return head, cyc, ins, data


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--net", choices=list(NETS), action="append", help="default: both")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md alone")
    ap.add_argument("--int8-shapes", action="store_true",
                    help="instead: cococ's int8 kernels on the MLPerf Tiny layer shapes (m4_kernels_int8.py)")
    ap.add_argument("--baseline", type=Path, default=m4_kernels_int8.BASELINE,
                    help="with --int8-shapes: a JSON of earlier rows, shown as 'before'")
    args = ap.parse_args(argv)
    from report import markdown_table, write_section
    if args.int8_shapes:
        rows = m4_kernels_int8.measure()
        body = m4_kernels_int8.body(rows, m4_kernels_int8.baseline(args.baseline))
        print(body)
        if not args.no_write:
            write_section("m4-kernels-int8", body, {"rows": rows})
        return 0
    results = {net: measure(net) for net in (args.net or list(NETS))}
    head, cyc, ins, data = tables(results)
    t_cyc = markdown_table(head + ["cococ q15 / CMSIS q15", "cococ int8 / CMSIS int8", "cococ q15 / plain q15",
                                   "cococ f32 / plain f32"], cyc)
    t_ins = markdown_table(head, ins)
    sizes = [[title, v.split("_")[1], f"{sz[v]['weight_bytes']:,}", f"{sz[v]['flash']:,}"]
             for title, _, _, sz in results.values() for v in QUANT]
    t_size = markdown_table(["net", "cococ", "weight bytes", "flash bytes (linked ELF)"], sizes)
    body = f"""## arm-m4 kernels: cycles and instructions per MAC

`python benchmarks/m4_kernels.py`. Every conv/dense layer of LeNet-5 and LeNet-300-100, batch 1,
on the emulated Cortex-M4 (backends/mcu/emulator.py: unicorn, cycle estimate from the Cortex-M4 TRM table in
docs/mcu.md; no flash wait states). cococ f32 / q15 / int8: `cococ.build(graph, "arm-m4")`
(`quantize="q15"` / `"int8"`, calibrated on random inputs), the whole model run once, the layer's
step as `cococ run` prints it (bias, ReLU and the per-channel requantisation fused; fixed-point
convs include their im2col). Plain C: textbook nested loops, shapes as constants, bias/ReLU,
q15/int8 with a rounding shift and saturation (the floor to beat). CMSIS-style q15: two output
channels at a time, one 32-bit load of two q15 activations feeding two `__smlad` (4 MACs per two
SMLADs), two words per loop iteration, convs through a per-pixel im2col column. CMSIS-style int8
(arm_fully_connected_q7 / arm_nn_mat_mult_kernel_q7_q15_reordered): activations widened to a q15
column, two output channels at a time, four reordered int8 weights per 32-bit load widened by
SXTB16 / SXTB16 ROR 8, 4 SMLADs per two column loads and two weight loads (the peers to match;
benchmarks/m4_kernels/kernels.c.in; their requantisation is one fixed shift, cococ's a
per-channel multiplier and shift). Hand-written kernels: arm-none-eabi-gcc -O2 -mcpu=cortex-m4
-mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16, outputs checked against numpy. Ratios below 1 mean
cococ is faster.

Estimated cycles per MAC:

{t_cyc}

Executed instructions per MAC:

{t_ins}

Model size (the same builds):

{t_size}
"""
    print(body)
    if not args.no_write:
        write_section("m4-kernels", body, {"rows": data})
    return 0


if __name__ == "__main__":
    sys.exit(main())
