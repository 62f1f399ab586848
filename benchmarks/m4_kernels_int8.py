"""arm-m4 int8 kernels per layer shape: cococ's conv2d / depthwise / dense int8 kernels on the shapes
of the MLPerf Tiny models (IC ResNet-8, KWS DS-CNN, VWW MobileNetV1, AD autoencoder), estimated
cycles per MAC.

Each shape's kernel is built exactly as a `--quantize int8` build builds it
(`backends/mcu/i8kernels.py`, depthwise `backends/mcu/i8depthwise.py`: TVM C codegen of cococ's TIR),
compiled with the backend's flags
into a one-kernel image (`backends/mcu/emulate.emulate_image`) with random int8 input (SRAM),
random reordered int8 weights, int32 bias, per-channel multiplier and shift (flash), run once on
the emulated Cortex-M4 (unicorn + the cycle table of docs/mcu.md; no flash wait states), and its
int8 outputs checked bit for bit against numpy (int32 accumulation, SMULL-high-word rounding
requantisation, saturation). The counts do not depend on the values. Part of
`benchmarks/m4_kernels.py` (`--int8-shapes`), which writes the table to docs/performance.md.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# the same shapes measured with the kernels before the two-position conv (commit 332c597)
BASELINE = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "m4-kernels-int8-baseline.json"
# the depthwise shapes with the kernel of commit b0d4535 (two outputs of a row at a time, weights
# and requantisation constants read per output pair); "wrong": its outputs differed from numpy
# (an output width of 3 stored the pair's first output as the third: TVM's CSE)
DEPTHWISE_BEFORE = {"depthwise 3x3 64ch, 25x5, pad 1": "3.70", "depthwise 3x3 8ch, 48x48, pad 1": "3.24",
                    "depthwise 3x3 16ch, 48x48, stride 2, pad 1": "4.32", "depthwise 3x3 32ch, 24x24, pad 1": "3.22",
                    "depthwise 3x3 128ch, 6x6, pad 1": "3.71", "depthwise 3x3 256ch, 3x3, pad 1": "wrong"}


@dataclass(frozen=True)
class Shape:
    net: str
    what: str
    x: tuple             # conv: (1, C, H, W); dense: (1, K)
    o: int
    kernel: tuple = ()   # conv: (kh, kw)
    stride: tuple = (1, 1)
    pad: tuple = (0, 0, 0, 0)   # top, left, bottom, right
    relu: bool = True
    depthwise: bool = False     # o == channels, one kh x kw filter per channel

    @property
    def conv(self) -> bool:
        return bool(self.kernel)

    @property
    def y(self) -> tuple:
        if not self.conv:
            return (self.x[0], self.o)
        (_, _, h, w), (kh, kw), (sh, sw), (t, l, b, r) = self.x, self.kernel, self.stride, self.pad
        return (1, self.o, (h + t + b - kh) // sh + 1, (w + l + r - kw) // sw + 1)

    @property
    def k(self) -> int:
        if self.depthwise:
            return self.kernel[0] * self.kernel[1]
        return self.x[1] * self.kernel[0] * self.kernel[1] if self.conv else self.x[1]

    @property
    def macs(self) -> int:
        return int(np.prod(self.y)) * self.k

    @property
    def attrs(self) -> dict:
        return {"kernel": list(self.kernel), "stride": list(self.stride), "dilation": [1, 1], "pad": list(self.pad)}


SHAPES = [
    Shape("IC ResNet-8", "conv 3x3 3->16, 32x32, pad 1 (first layer)", (1, 3, 32, 32), 16, (3, 3), pad=(1, 1, 1, 1)),
    Shape("IC ResNet-8", "conv 3x3 16->16, 32x32, pad 1", (1, 16, 32, 32), 16, (3, 3), pad=(1, 1, 1, 1)),
    Shape("IC ResNet-8", "conv 3x3 16->32, 32x32, stride 2, pad 1", (1, 16, 32, 32), 32, (3, 3), (2, 2),
          (0, 0, 1, 1)),
    Shape("IC ResNet-8", "conv 1x1 16->32, 32x32, stride 2 (shortcut)", (1, 16, 32, 32), 32, (1, 1), (2, 2),
          relu=False),
    Shape("IC ResNet-8", "conv 3x3 32->32, 16x16, pad 1", (1, 32, 16, 16), 32, (3, 3), pad=(1, 1, 1, 1)),
    Shape("IC ResNet-8", "conv 3x3 64->64, 8x8, pad 1", (1, 64, 8, 8), 64, (3, 3), pad=(1, 1, 1, 1)),
    Shape("KWS DS-CNN", "conv 10x4 1->64, 49x10, stride 2, pad 'same' (first layer)", (1, 1, 49, 10), 64, (10, 4),
          (2, 2), (4, 1, 5, 1)),
    Shape("KWS DS-CNN", "conv 1x1 64->64, 25x5 (pointwise)", (1, 64, 25, 5), 64, (1, 1)),
    Shape("VWW MobileNetV1 0.25", "conv 1x1 32->64, 24x24 (pointwise)", (1, 32, 24, 24), 64, (1, 1)),
    Shape("VWW MobileNetV1 0.25", "conv 1x1 128->128, 6x6 (pointwise)", (1, 128, 6, 6), 128, (1, 1)),
    Shape("KWS DS-CNN", "depthwise 3x3 64ch, 25x5, pad 1", (1, 64, 25, 5), 64, (3, 3), pad=(1, 1, 1, 1),
          depthwise=True),
    Shape("VWW MobileNetV1 0.25", "depthwise 3x3 8ch, 48x48, pad 1", (1, 8, 48, 48), 8, (3, 3), pad=(1, 1, 1, 1),
          depthwise=True),
    Shape("VWW MobileNetV1 0.25", "depthwise 3x3 16ch, 48x48, stride 2, pad 1", (1, 16, 48, 48), 16, (3, 3),
          (2, 2), (1, 1, 1, 1), depthwise=True),
    Shape("VWW MobileNetV1 0.25", "depthwise 3x3 32ch, 24x24, pad 1", (1, 32, 24, 24), 32, (3, 3),
          pad=(1, 1, 1, 1), depthwise=True),
    Shape("VWW MobileNetV1 0.25", "depthwise 3x3 128ch, 6x6, pad 1", (1, 128, 6, 6), 128, (3, 3),
          pad=(1, 1, 1, 1), depthwise=True),
    Shape("VWW MobileNetV1 0.25", "depthwise 3x3 256ch, 3x3, pad 1", (1, 256, 3, 3), 256, (3, 3),
          pad=(1, 1, 1, 1), depthwise=True),
    Shape("AD autoencoder", "dense 640->128", (1, 640), 128),
    Shape("AD autoencoder", "dense 128->8", (1, 128), 8),
]


def _c_array(ctype: str, name: str, a: np.ndarray, const: bool) -> str:
    vals = ",".join(str(int(v)) for v in a.reshape(-1))
    return f"{'const ' if const else ''}{ctype} {name}[{max(a.size, 1)}] __attribute__((aligned(4))) = {{{vals}}};\n"


def reference(s: Shape, x, wq, b, m, sh) -> np.ndarray:
    """int8 outputs by definition: acc = b + sum x w (int64), y = floor((acc m / 2^32 rounded down
    + 2^(sh-1)) / 2^sh) saturated ([0, 127] with ReLU), NCHW / [n, o]."""
    if s.conv:
        (_, c, h, w), (kh, kw), (st, sw), (t, l, bo, r) = s.x, s.kernel, s.stride, s.pad
        xp = np.zeros((c, h + t + bo, w + l + r), np.int64)
        xp[:, t:t + h, l:l + w] = x[0]
        _, _, oh, ow = s.y
        if s.depthwise:   # (positions, channels): each channel's window against its own filter
            acc = np.stack([(xp[:, i * st:i * st + kh, j * sw:j * sw + kw].reshape(c, -1) * wq).sum(1)
                            for i in range(oh) for j in range(ow)]) + b
        else:
            cols = np.stack([xp[:, i * st:i * st + kh, j * sw:j * sw + kw].reshape(-1)
                             for i in range(oh) for j in range(ow)])          # (positions, k)
            acc = cols @ wq.T.astype(np.int64) + b                             # (positions, o)
    else:
        acc = x.astype(np.int64) @ wq.T.astype(np.int64) + b
    hi = (acc * m.astype(np.int64)) >> 32
    y = np.clip((hi + (1 << (sh.astype(np.int64) - 1))) >> sh, 0 if s.relu else -128, 127)
    return (y.T.reshape(s.y) if s.conv else y).astype(np.int64)


def run_shape(s: Shape, seed: int = 0) -> dict:
    """Build, emulate and check one shape's kernel: {cycles, instructions, cycles_per_mac, ...}."""
    from cococ.backends.mcu.codegen import generate_c
    from cococ.backends.mcu.emulate import emulate_image
    from cococ.backends.mcu.i8kernels import PRELUDE, conv2d_int8, dense_int8, reorder_weights
    from cococ.backends.mcu.i8depthwise import depthwise, depthwise_weights, plane_geometry
    rng = np.random.default_rng(seed)
    name = "k0_int8"
    if s.depthwise:
        kern = depthwise(name, s.x, s.y, s.attrs, 0 if s.relu else -128, 127, True, "int8")
    else:
        kern = (conv2d_int8(name, s.x, s.o, s.y, s.attrs, s.relu, True) if s.conv
                else dense_int8(name, s.x[0], s.k, s.o, s.relu, True))
    generate_c([kern])
    x = rng.integers(-128, 128, s.x).astype(np.int8)
    wq = rng.integers(-128, 128, (s.o, s.k)).astype(np.int64)
    if s.depthwise:   # the layout qlower.py stores: int16 words of tap pairs per kernel row
        wbuf, wtype = depthwise_weights(wq.reshape(s.o, 1, *s.kernel)), "int16_t"
        col_len = plane_geometry(s.x, s.attrs)[1]
    else:
        wbuf, wtype = reorder_weights(wq), "int8_t"
        col_len = kern.meta.get("col_len", (s.k + 3) // 4 * 4)
    b = rng.integers(-(1 << 14), 1 << 14, s.o).astype(np.int32)
    m = rng.integers(1 << 30, (1 << 31) - 1, s.o).astype(np.int32)
    # outputs mostly inside [-128, 127]: acc ~ 128 * 74 * sqrt(k), scaled by m / 2^32 ~ 0.37, to ~40
    sh = np.full(s.o, max(1, int(np.log2(128 * 74 * np.sqrt(s.k) * 0.37 / 40))), np.int32)
    want = reference(s, x, wq, b, m, sh)
    n_out = int(np.prod(s.y))
    src = "#include <stdint.h>\n#include <arm_acle.h>\n" + kern.meta.get("prelude", PRELUDE) + kern.source
    src += (_c_array("int8_t", "a_x", x, False) + _c_array(wtype, "a_w", wbuf, True)
            + _c_array("int32_t", "a_b", b, True) + _c_array("int32_t", "a_m", m, True)
            + _c_array("int32_t", "a_sh", sh, True)
            + f"int16_t a_col[{col_len}] __attribute__((aligned(4)));\n"
            + f"int8_t a_y[{n_out}] __attribute__((aligned(4)));\n"
            + f"float model_input[1];\nfloat model_output[{n_out}];\n"
            + '__attribute__((section(".text.model_run"))) void model_run(const float* in, float* out) {\n'
            + f"  (void)in;\n  {name}(a_x, a_w, a_b, a_m, a_sh, a_col, a_y);\n"
            + f"  for (int i = 0; i < {n_out}; ++i) out[i] = (float)a_y[i];\n}}\n")
    t0 = time.time()
    # the build's -fno-strict-aliasing (backends/mcu/emit.py): the kernels read the int16 column as words
    emu, res = emulate_image(src, f"int8 kernel {s.what}", libs=("-fno-strict-aliasing",))
    got = res.outputs.astype(np.int64).reshape(s.y)
    if not np.array_equal(got, want):
        bad = int(np.sum(got != want))
        raise RuntimeError(f"{s.net} {s.what}: {bad} of {want.size} outputs differ from numpy")
    if want.size >= 64 and not (np.abs(want).max() > 16 and (np.abs(want) < 127).mean() > 0.5):
        raise RuntimeError(f"{s.net} {s.what}: outputs do not use the int8 range (test data too small/large)")
    step = [st for st in res.steps if st.kernel == name]
    return {"net": s.net, "shape": s.what, "macs": s.macs, "cycles": step[0].cycles,
            "instructions": step[0].instructions, "cycles_per_mac": step[0].cycles / s.macs,
            "text_bytes": emu.symbols[name][1], "col_bytes": 2 * col_len, "emulate_s": round(time.time() - t0, 1)}


def measure(shapes=SHAPES) -> list[dict]:
    return [run_shape(s) for s in shapes]


def baseline(path: Path | None) -> dict:
    """{shape: cycles/MAC} of an earlier run's rows (the JSON this script writes), or {}."""
    if path is None or not Path(path).exists():
        return {}
    rows = {r["shape"]: f"{r['cycles_per_mac']:.2f}" for r in json.loads(Path(path).read_text())["rows"]}
    return {**DEPTHWISE_BEFORE, **rows}


def body(rows: list[dict], before: dict | None = None) -> str:
    """The performance.md section: one row per shape (and the numbers before, when given)."""
    from report import markdown_table
    head = ["net", "layer shape", "MACs", "est. cycles", "cycles/MAC", "instr./MAC", "code bytes", "column bytes"]
    if before:
        head.insert(5, "cycles/MAC before")
    out = []
    for r in rows:
        row = [r["net"], r["shape"], f"{r['macs']:,}", f"{r['cycles']:,}", f"{r['cycles_per_mac']:.2f}",
               f"{r['instructions'] / r['macs']:.2f}", f"{r['text_bytes']:,}", f"{r['col_bytes']:,}"]
        if before:
            row.insert(5, before.get(r["shape"], "-"))
        out.append(row)
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    cpus = sorted(os.sched_getaffinity(0))
    macs = sum(r["macs"] for r in rows)
    total = f"{sum(r['cycles'] for r in rows) / macs:.2f}"
    if before:
        was = {r["shape"]: r["macs"] * float(before[r["shape"]]) for r in rows
               if before.get(r["shape"], "-").replace(".", "").isdigit()}
        total += f" (before: {sum(was.values()) / sum(r['macs'] for r in rows if r['shape'] in was):.2f})"
    return f"""## arm-m4 int8 kernels per layer shape (MLPerf Tiny shapes)

`python benchmarks/m4_kernels.py --int8-shapes` (benchmarks/m4_kernels_int8.py). cococ's int8
conv2d / depthwise / dense kernel for one layer of each shape, built as `--quantize int8` builds it, run once
on the emulated Cortex-M4 (unicorn + the TRM cycle table of docs/mcu.md, **0 flash wait states**:
these are emulated estimates, not board measurements); outputs checked bit for bit against a numpy
model of the integer arithmetic. Fused ReLU and the per-channel requantisation included, and
convs include their im2col, depthwise convs their padded int16 plane; batch 1; NCHW. The MLPerf
Tiny anchors (real NUCLEO-L4R5ZI boards,
whole models, flash wait states and bus included): ST X-CUBE-AI 1.42-2.39 cycles/MAC, Plumerai
1.58-2.16, microTVM + CMSIS-NN 3.74-4.83 (issue 14). Emulation is deterministic, so the host's
load (here {load}, CPU affinity {cpus}) does not change the counts. "before": the same shapes with
the kernels of commit 332c597 (one position per column, 2 channels x 1 position; {BASELINE.name});
for the depthwise rows the kernel of commit b0d4535 (two outputs of a row at a time; "wrong": its
outputs for an output width of 3 differed from numpy). Depthwise now (backends/mcu/i8depthwise.py): per
channel the weights, bias and requantisation constants read once; four outputs of a row at a time,
the three kernel rows of a 3x3 quad in one asm block (7 loads back to back + 8 SMLAD/SMLATB per
row); requantisation by SMMLA + ASR + USAT/SSAT. "column bytes": the im2col column, or the
depthwise plane.
All shapes together (MAC-weighted over the rows, not a whole network): {total} cycles/MAC.

{markdown_table(head, out)}
"""
