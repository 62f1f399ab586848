"""Break-even sparsity of the sparse matrix-matrix (conv) kernels: Scalpel fig. 9 (MM) and fig. 14.

arm-m4 (fig. 9, MM curves): random 100x100 Q15 W times a 100xN Q15 input matrix (N = 100 by
default: Scalpel's "all matrices have the size of 100 x 100"), dense (2x4 tiles of SMLAD) vs
plain CSR (elements removed at random) vs SIMD-group width 2 (aligned pairs removed at random);
kernels from backends/kernels/mm.py through TVM's C codegen, arm-none-eabi-gcc -O2, run once
in the emulator of backends/mcu; cycles are its Cortex-M4 table estimate for the kernel alone.
x86 (fig. 14): f32 W 128x1200 times X 1200x729 (a conv: 1200 = C*kh*kw, 729 = 27x27 positions),
one thread: numpy dense (BLAS), cococ dense, scipy CSR, cococ CSR, cococ SIMD-group (TVM LLVM,
8 f32 lanes along the output positions; groups of 8 along the reduction axis). Every point times
the dense kernels again and compares with their median over all points (the machine is shared),
each time the median of `repeat` calls, wall time and the thread's CPU time. Break-even = where
a sparse kernel's time first crosses dense (linear interpolation). The int8 conv kernels of arm-m4
have their own table: benchmarks/sparse_breakeven_mm_int8.py.

    python benchmarks/sparse_breakeven_mm.py [--m4-only | --x86-only] [--n 100] [--repeat 20]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks.*` imports when run as a script

import numpy as np  # noqa: E402

from benchmarks.sparse_breakeven import _pct, breakeven, random_pruned
from cococ.backends.kernels.choice import save_table
from cococ.ir.core import Param
from cococ.ir.formats import compress

SCALPEL = {"m4 csr": 0.73, "m4 simd_group": 0.56, "x86 simd_group": 0.79}
SWEEP = [i / 20 for i in range(20)]  # 0 .. 95% in 5% steps


def _wrap32(a: np.ndarray) -> np.ndarray:
    """int64 -> int32 wrapping like the M4's 32-bit accumulator."""
    return ((a + 2 ** 31) % 2 ** 32 - 2 ** 31).astype(np.int32)


def bench_m4(rows=100, cols=100, n=100, seed=0):
    from cococ.backends.mcu.emulate import run_mm_on_m4
    rng = np.random.default_rng(seed)
    x = rng.integers(-8192, 8192, (cols, n)).astype(np.int16)
    w0 = random_pruned(rows, cols, 0, 1, np.int16, rng)
    r0 = run_mm_on_m4(Param.from_array(w0), x)
    assert np.array_equal(r0.y, _wrap32(w0.astype(np.int64) @ x.astype(np.int64))), "dense MM kernel wrong"
    dense = r0.cycles
    table = []
    for s in SWEEP:
        out = {}
        for fmt, width in (("csr", 1), ("simd_group", 2)):
            w = random_pruned(rows, cols, s, width, np.int16, rng)
            r = run_mm_on_m4(compress(w, fmt, width=width), x)
            assert np.array_equal(r.y, _wrap32(w.astype(np.int64) @ x.astype(np.int64))), \
                f"{fmt} MM kernel wrong at sparsity {s}"
            out[fmt] = r.cycles
        table.append([round(100 * s), dense, out["csr"], out["simd_group"], out["csr"] / dense,
                      out["simd_group"] / dense])
    be = {f: breakeven(SWEEP, [r[i] for r in table]) for f, i in (("csr", 4), ("simd_group", 5))}
    return table, be


def _times(f, repeat):
    """(wall, thread CPU) medians in ms over `repeat` calls, after one warm-up call."""
    f()
    wall, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.thread_time()
        f()
        cpu.append(time.thread_time() - c)
        wall.append(time.perf_counter() - t)
    return 1e3 * float(np.median(wall)), 1e3 * float(np.median(cpu))


def bench_x86(rows=128, cols=1200, n=729, repeat=20, lanes=8, seed=0):
    import scipy.sparse
    from threadpoolctl import threadpool_limits

    from cococ.backends.kernels.x86 import mm_x86
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((cols, n)).astype(np.float32)

    def prepared(p):
        run = mm_x86(p, n, lanes)
        assert np.allclose(run(x), p.dense() @ x, rtol=1e-4, atol=1e-3), f"{p.format} MM kernel wrong"
        f, consts, xt, y = run.prepared
        return lambda: f(*consts, xt, y)

    w0 = random_pruned(rows, cols, 0, 1, np.float32, rng)
    dense_tvm = prepared(Param.from_array(w0))
    times = []  # per sparsity: (wall, cpu) of numpy dense, cococ dense, scipy csr, cococ csr, simd_group
    with threadpool_limits(1):
        for s in SWEEP:
            we = random_pruned(rows, cols, s, 1, np.float32, rng)
            sc = scipy.sparse.csr_matrix(we)
            wg = random_pruned(rows, cols, s, lanes, np.float32, rng)
            times.append([_times(lambda: w0 @ x, repeat), _times(dense_tvm, repeat), _times(lambda: sc @ x, repeat),
                          _times(prepared(compress(we, "csr")), repeat),
                          _times(prepared(compress(wg, "simd_group", width=lanes)), repeat)])
    tables, be = {}, {}
    for k, tag in ((0, ""), (1, " (CPU time)")):
        t = np.array([[v[k] for v in row] for row in times])
        # the dense kernels do not depend on the sparsity: their median over all points is a
        # steadier reference than the one sample taken next to each sparse point
        ref_np, ref_dense = float(np.median(t[:, 0])), float(np.median(t[:, 1]))
        tables[k] = [[round(100 * s), *map(float, r), float(r[4] / ref_np), float(r[4] / ref_dense)] for s, r in zip(SWEEP, t)]
        for name, i in (("scipy csr", 2), ("cococ csr", 3), ("cococ simd_group", 4)):
            be[f"{name} vs numpy{tag}"] = breakeven(SWEEP, list(t[:, i] / ref_np))
        be[f"cococ simd_group vs cococ dense{tag}"] = breakeven(SWEEP, list(t[:, 4] / ref_dense))
    table, cpu = tables[0], tables[1]
    return table, cpu, be


def _plot(path, panels, ylabel):
    """One PNG, a panel per (title, {label: (xs, ys, style)}); the line at 1 is break-even."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels):
        for label, (xs, ys, style) in curves.items():
            ax.plot(xs, ys, style, label=label)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xlabel("sparsity (%)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    from benchmarks.report import ROOT, markdown_table, write_section
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m4-only", action="store_true")
    ap.add_argument("--x86-only", action="store_true")
    ap.add_argument("--n", type=int, default=100, help="columns of the M4 input matrix")
    ap.add_argument("--repeat", type=int, default=20)
    a = ap.parse_args(argv)
    out = ROOT / "docs" / "benchmarks"
    out.mkdir(exist_ok=True)
    if not a.x86_only:
        table, be = bench_m4(n=a.n)
        body = (f"## Sparse break-even on arm-m4 (Scalpel fig. 9, matrix-matrix 100x100 · 100x{a.n})\n\n"
                f"`benchmarks/sparse_breakeven_mm.py`: random 100x100 Q15 weight times a 100x{a.n} Q15 input "
                "matrix (the im2col matrix of a conv, passed transposed: backends/kernels/mm.py); estimated "
                "Cortex-M4 cycles of the kernel (TVM-generated C, arm-none-eabi-gcc -O2, emulated). Dense runs "
                "2x4 tiles (two weight rows x four positions, SMLAD on word pairs); CSR (elements removed at "
                "random) and SIMD-group width 2 (aligned pairs removed at random) run one row x four positions. "
                "Every run's output equals numpy's (int32).\n\n"
                + markdown_table(["sparsity %", "dense cycles", "csr cycles", "simd_group cycles",
                                  "csr / dense", "simd_group / dense"], table)
                + f"\n\nBreak-even: CSR {_pct(be['csr'])} (Scalpel: 73%), SIMD-group {_pct(be['simd_group'])} "
                  "(Scalpel: 56%). Plot (with the matrix-vector curves): "
                  "[sparse-breakeven-mm-m4.png](benchmarks/sparse-breakeven-mm-m4.png).\n")
        data = {"shape": [100, 100, a.n], "rows": table, "breakeven": be}
        write_section("sparse-breakeven-mm-m4", body, data)
        save_table("sparse-breakeven-mm-m4", data)  # the copy cococ ships and reads (backends/kernels/data)
        sp = [r[0] for r in table]
        curves = {"MM CSR": (sp, [r[4] for r in table], "o-"), "MM SIMD-group": (sp, [r[5] for r in table], "s-")}
        mv = out / "sparse-breakeven-m4.json"
        if mv.exists():
            rows = json.loads(mv.read_text())["rows"]
            curves["MV CSR"] = ([r[0] for r in rows], [r[4] for r in rows], "o--")
            curves["MV SIMD-group"] = ([r[0] for r in rows], [r[5] for r in rows], "s--")
        _plot(out / "sparse-breakeven-mm-m4.png", [(f"Cortex-M4 q15, 100x100 weight (MM: x 100x{a.n})", curves)],
              "cycles / dense cycles")
        print(body)
    if not a.m4_only:
        table, cpu, be = bench_x86(repeat=a.repeat)
        heads = ["sparsity %", "numpy dense", "cococ dense", "scipy csr", "cococ csr", "cococ simd_group",
                 "simd_group / numpy", "simd_group / cococ dense"]
        line = lambda tag: ", ".join(f"{k.replace(' (CPU time)', '')} {_pct(v)}" for k, v in be.items()  # noqa: E731
                                     if ("CPU" in k) == bool(tag))
        body = ("## Sparse break-even on x86 (Scalpel fig. 14, matrix-matrix 128x1200 · 1200x729, f32)\n\n"
                f"`benchmarks/sparse_breakeven_mm.py`: time (ms) per call, median of {a.repeat} calls, one thread "
                "(numpy's BLAS limited to one thread, AVX-512 here); cococ kernels: backends/kernels/mm.py, "
                "8 f32 lanes (AVX2) along the 729 output positions, SIMD-group groups of 8 along the reduction "
                "axis; CSR has random elements removed, SIMD-group random aligned groups. Both dense kernels are "
                "timed again next to every sparse point; the ratios and break-evens use their median over all "
                "points (dense time does not depend on the sparsity, and one sample on this shared 2-core "
                "machine is noisy). Wall time first, then the thread's CPU time (time.thread_time: leaves out "
                "the time other jobs held the core; the steadier of the two here).\n\nWall time:\n\n"
                + markdown_table(heads, table) + "\n\nBreak-even (wall): " + line("")
                + ".\n\nThread CPU time:\n\n" + markdown_table(heads, cpu)
                + "\n\nBreak-even (CPU time): " + line("cpu")
                + ".\n\nScalpel (MKL on an i7-6700): sparse MM, plain or SIMD-group, needs at least 79%. Plot: "
                  "[sparse-breakeven-mm-x86.png](benchmarks/sparse-breakeven-mm-x86.png).\n")
        data = {"shape": [128, 1200, 729], "rows": table, "cpu_rows": cpu, "breakeven": be}
        write_section("sparse-breakeven-mm-x86", body, data)
        save_table("sparse-breakeven-mm-x86", data)
        panels = []
        for title, t in (("wall time", table), ("thread CPU time", cpu)):
            ref = float(np.median([r[1] for r in t]))
            sp = [r[0] for r in t]
            panels.append((f"x86 f32, 128x1200 · 1200x729, one thread: {title}",
                           {name: (sp, [r[i] / ref for r in t], st) for name, i, st in
                            (("cococ dense", 2, "k--"), ("scipy CSR", 3, "^-"), ("cococ CSR", 4, "o-"),
                             ("cococ SIMD-group", 5, "s-"))}))
        _plot(out / "sparse-breakeven-mm-x86.png", panels, "time / numpy dense time (median)")
        print(body)


if __name__ == "__main__":
    main()
