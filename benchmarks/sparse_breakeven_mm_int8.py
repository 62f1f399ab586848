"""Break-even sparsity of the int8 sparse conv kernels on arm-m4 (fig. 9 matrix-matrix, int8).

What a `--quantize int8` build chooses between for a compressed conv layer (backends/mcu/sparse.py):
the dense int8 conv step (i8kernels.conv2d_int8: im2col of two positions widened to q15,
SXTB16 + SMLAD, 2x2 blocks, requantisation to int8) against the sparse conv step
(sparse_kernels.conv_int8: im2col of PB = 4 positions into the scratch column, then csr (MLA per
stored weight) or simd_group width 2 / width 4 (SXTB16 once per group, SMLADs per position), the
same requantisation) — im2col included in both, as the build pays it. Each point is a real 3x3
conv of the MLPerf Tiny IC ResNet-8 (pad 1, stride 1, ReLU fused, int8 in and out) with a random
int8 weight pruned at random to the sparsity (csr: elements; simd_group: aligned groups), the
executor's steps emulated side by side in one image (backends/mcu/emulate.emulate, the call the
build's per-layer comparison makes); estimated Cortex-M4 cycles, deterministic. The first shape
is the table cococ ships (backends/kernels/data/sparse-breakeven-mm-int8-m4.json: the pruning
cost model and the no-gcc fallback read it for int8 conv layers); the others say how far the
ratio moves with the layer's shape.

    python benchmarks/sparse_breakeven_mm_int8.py [--shapes 16x32,32x16,64x8] [--sweep 0,50,...]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks.*` imports when run as a script

import numpy as np  # noqa: E402

from benchmarks.sparse_breakeven import _load, _pct, random_pruned  # noqa: E402
from cococ.backends.kernels.choice import crossing as breakeven, save_table  # noqa: E402
from cococ.ir.formats import compress  # noqa: E402

SWEEP = (0, 10, 20, 30, 40, 50, 60, 70, 80, 85, 90, 95, 97)   # sparsity %
KERNELS = (("csr", 1), ("simd_group", 2), ("simd_group", 4))
ATTRS = {"kernel": (3, 3), "stride": (1, 1), "dilation": (1, 1), "pad": (1, 1, 1, 1), "groups": 1}


def _steps(c: int, hw: int, s: float, rng, dense: bool):
    """Executor steps of one conv c -> c channels at hw x hw: the dense int8 conv (if `dense`)
    and the three sparse ones at sparsity `s`, with their arguments as backends/mcu/sparse.py
    passes them (values reordered by values_int8, simd_group JA' halved)."""
    from cococ.backends.kernels.layer import PB
    from cococ.backends.kernels.layout import TVM_DTYPE
    from cococ.backends.mcu import sparse_kernels as S
    from cococ.backends.mcu.i8kernels import conv2d_int8, reorder_weights
    from cococ.backends.mcu.lower import Tensor, Weight
    xs = ys = (1, c, hw, hw)
    cols = c * 9
    x, y = Tensor("x", "int8", xs), Tensor("y", "int8", ys)
    epi = [Weight("b", rng.integers(-1000, 1000, c).astype(np.int32)), Weight("m", np.full(c, 1 << 30, np.int32)),
           Weight("sh", np.full(c, 2, np.int32))]  # fast requantisation (shift - 32 = 2)
    steps = []
    if dense:
        k0 = conv2d_int8("k0_dense", xs, c, ys, ATTRS, True, True)
        w0 = reorder_weights(random_pruned(c, cols, 0, 1, np.int8, rng))
        steps.append((k0, [x, Weight("w", w0)] + epi + [Tensor("col0", "int16", (k0.meta["col_len"],)), y]))
    for i, (fmt, width) in enumerate(KERNELS):
        p = compress(random_pruned(c, cols, s, width, np.int8, rng).astype(np.float32), fmt, width=width)
        a = p.arrays
        vals = S.values_int8(fmt, width, a["values"].astype(np.int8))
        idx = a["indices"] >> 1 if fmt == "simd_group" else a["indices"]  # as sparse._arrays
        k = S.conv_int8(f"k{i + 1}_{fmt}{width}", fmt, xs, c, ys, ATTRS, cols, a["indices"].size, width,
                        TVM_DTYPE[a["indices"].dtype], True, True)
        arrs = [Weight(f"{fmt}{width}_{name}", v if v.size else np.zeros(1, v.dtype))
                for name, v in (("values", vals), ("indptr", a["indptr"]), ("indices", idx))]
        steps.append((k, [x] + arrs + epi + [Tensor(f"col{i + 1}", "int16", (PB * S.int8_ld(cols),)), y]))
    return steps


def bench_conv(c: int = 16, hw: int = 32, sweep=SWEEP, seed: int = 0, say=print):
    """(rows, break-evens): rows [sparsity%, dense, csr, w2, w4, csr/dense, w2/dense, w4/dense]
    (the int8 matrix-vector table's columns), the dense step emulated once (its cycles do not
    depend on the sparsity), the sparse ones in one image per sparsity."""
    from cococ.backends.mcu.emulate import emulate
    rng = np.random.default_rng(seed)
    rows, dense = [], None
    for pct in sweep:
        t = time.time()
        cyc = emulate(_steps(c, hw, pct / 100, rng, dense is None))
        if dense is None:
            dense, cyc = cyc[0], cyc[1:]
        rows.append([pct, dense, *cyc, *(v / dense for v in cyc)])
        say(f"  {c}x{hw}x{hw} {pct}%: dense {dense:,}, csr {cyc[0]:,}, w2 {cyc[1]:,}, w4 {cyc[2]:,} "
            f"({time.time() - t:.0f} s)")
    sp = [r[0] / 100 for r in rows]
    be = {f: breakeven(sp, [r[i] for r in rows]) for f, i in (("csr", 5), ("simd_group w2", 6), ("simd_group w4", 7))}
    return rows, be


def _plot(path, curves_by_shape, mm_q15):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = ("-", "--", ":")
    for (label, rows), ls in zip(curves_by_shape, styles):
        sp = [r[0] for r in rows]
        for name, i, mk in (("csr", 5, "o"), ("w2", 6, "s"), ("w4", 7, "^")):
            ax.plot(sp, [r[i] for r in rows], mk + ls, ms=3, label=f"int8 {name} {label}")
    if mm_q15:
        ax.plot([r[0] for r in mm_q15], [r[5] for r in mm_q15], "k-.", label="q15 MM simd_group (100³)")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xlabel("sparsity (%)")
    ax.set_ylabel("cycles / dense int8 conv cycles")
    ax.set_title("Cortex-M4 int8 sparse conv vs dense int8 conv (3x3, ReLU, im2col included)", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(data: dict, note: str) -> str:
    """docs/performance.md's section from the measured `data` (main's JSON)."""
    from benchmarks.report import markdown_table
    shapes = list(data["shapes"].values())
    rows, be = data["rows"], data["breakeven"]
    c, k, npos = data["shape"]
    macs, top = c * k * npos, rows[-1][0]

    def line(s):
        (cc, kk, n), r, b = s["shape"], s["rows"], s["breakeven"]
        m = cc * kk * n
        return (f"| {cc} -> {cc} at {int(n ** 0.5)}x{int(n ** 0.5)} | {m:,} | {r[0][1]:,} | {r[0][1] / m:.2f} | "
                f"{_pct(b['csr'])} | {_pct(b['simd_group w2'])} | {_pct(b['simd_group w4'])} | "
                + " | ".join(f"{x[7]:.2f}" for x in r if x[0] in (60, 80, 90, 97)) + " |")
    summary = ("| conv (3x3, C -> C) | MACs | dense cycles | cycles/MAC | CSR break-even | w2 break-even | "
               "w4 break-even | w4/dense 60% | 80% | 90% | 97% |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
               + "\n".join(line(s) for s in shapes))
    head = ["sparsity %", "dense cycles", "csr cycles", "simd_group w2 cycles", "simd_group w4 cycles",
            "csr / dense", "w2 / dense", "w4 / dense"]
    return ("## Sparse break-even on arm-m4, int8 conv (matrix-matrix, beside the q15 one above)\n\n"
            "`benchmarks/sparse_breakeven_mm_int8.py`: what a `--quantize int8` build compares for a "
            "compressed conv layer, on the 3x3 convs of the MLPerf Tiny IC ResNet-8 (pad 1, stride 1, C -> C "
            "channels, ReLU fused, int8 in and out), random int8 weights pruned at random (csr: elements; "
            "simd_group: aligned groups). Dense = the executor's `i8kernels.conv2d_int8` (im2col of two "
            "positions widened to q15, SXTB16 + SMLAD in 2x2 blocks), sparse = `sparse_kernels.conv_int8` "
            "(im2col of four positions, then csr: MLA per stored weight; simd_group w2 / w4: SXTB16 once per "
            "group, SMLADs for the four positions); im2col and requantisation included in both, as the build "
            "pays them. Estimated Cortex-M4 cycles, emulated (deterministic; the dense step once per shape, "
            "the three sparse ones in one image per sparsity).\n\n"
            + summary
            + "\n\nThe break-even falls with the output channels: the sparse conv widens each position's "
              "window (im2col) once and shares it among the C rows, and at 16 channels that im2col is a large "
              f"fixed cost (at {top}% sparsity the 16-channel sparse conv still takes "
              f"{rows[-1][7]:.0%} of dense). So cococ ships all three shapes "
              "(`backends/kernels/data/sparse-breakeven-mm-int8-m4.json`) and an int8 conv layer reads the one "
              "nearest its output channels (`choice.by_channels`): the pruning cost model (Scalpel, `--prune "
              "auto`) and a build without arm-none-eabi-gcc; a build with it measures the layer itself. q15's "
              "matrix-matrix table (section above, SIMD-group 46%) is not used for int8.\n\n"
              f"**{c} -> {c} channels at {int(npos ** 0.5)}x{int(npos ** 0.5)}** ({macs:,} MACs; the table's "
              "default, stack0 of ResNet-8):\n\n"
            + markdown_table(head, rows)
            + f"\n\nBreak-even: CSR {_pct(be['csr'])}, SIMD-group width 2 {_pct(be['simd_group w2'])}, width 4 "
              f"{_pct(be['simd_group w4'])} (\"never\" would mean: not below {top}%). Plot (every shape, with "
              "q15's matrix-matrix SIMD-group curve): "
              "[sparse-breakeven-mm-int8-m4.png](benchmarks/sparse-breakeven-mm-int8-m4.png). " + note + "\n")


def main(argv=None):
    import json

    from benchmarks.report import ROOT, write_section
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="16x32,32x16,64x8",
                    help="CxHW of the 3x3 convs (C -> C channels, HW x HW positions); the first is the table's default")
    ap.add_argument("--sweep", default=",".join(map(str, SWEEP)), help="sparsities in percent")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite the docs section and plot from docs/benchmarks/sparse-breakeven-mm-int8-m4.json")
    a = ap.parse_args(argv)
    out = ROOT / "docs" / "benchmarks"
    saved = out / "sparse-breakeven-mm-int8-m4.json"
    if a.render_only:
        data = json.loads(saved.read_text())
    else:
        sweep = [int(v) for v in a.sweep.split(",")]
        shapes = [tuple(int(v) for v in s.split("x")) for s in a.shapes.split(",")]
        t0, load0 = time.time(), _load()
        results = [((c, hw), *bench_conv(c, hw, sweep)) for c, hw in shapes]
        (c, hw), rows, be = results[0]
        data = {"shape": [c, c * 9, hw * hw], "rows": rows, "breakeven": be,
                "shapes": {f"{cc}x{h}": {"shape": [cc, cc * 9, h * h], "rows": r, "breakeven": b}
                           for (cc, h), r, b in results},
                "note": f"Run took {time.time() - t0:.0f} s; load average at the start {load0}."}
    body = render(data, data.get("note", ""))
    write_section("sparse-breakeven-mm-int8-m4", body, data)
    save_table("sparse-breakeven-mm-int8-m4", data)  # the copy cococ ships and reads (backends/kernels/data)
    mm = out / "sparse-breakeven-mm-m4.json"
    mm_q15 = json.loads(mm.read_text())["rows"] if mm.exists() else None
    _plot(out / "sparse-breakeven-mm-int8-m4.png",
          [(f"{s['shape'][0]}ch {int(s['shape'][2] ** 0.5)}²", s["rows"]) for s in data["shapes"].values()], mm_q15)
    print(body)


if __name__ == "__main__":
    main()
