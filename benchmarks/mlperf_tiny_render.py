"""The tables and text of benchmarks/mlperf_tiny.py's docs/performance.md section (`mlperf-tiny`).

Rendering only: the rows are mlperf_tiny.py's measurements (plain dicts, also its --json);
the constants here (the board's wait states, the 512 KiB / 128 KiB part, the MLPerf Tiny
anchors) are the ones both the measurement and the tables use.
"""
from __future__ import annotations

from mlperf_tiny_models import MODELS
from report import markdown_table

BOARD_WS = 5            # NUCLEO-L4R5ZI: STM32L4R5 at 120 MHz, range 1 boost: 5 flash wait states (RM0432 §3.3.3)
FLASH, SRAM = 512 * 1024, 128 * 1024
# MLPerf Tiny inference results, NUCLEO-L4R5ZI @120 MHz, int8: cycles/MAC = latency x 120 MHz / MACs (issue 14)
ANCHORS = {
    "TFLite Micro + CMSIS-NN (v0.5 reference)": (6.76, 8.22, 9.62, 4.57),
    "microTVM + CMSIS-NN (v1.0)": (3.74, 4.51, 4.83, 3.91),
    "Plumerai (v1.1)": (1.61, 2.16, 1.58, 1.84),
    "ST X-CUBE-AI 9.0 (v1.2)": (1.58, 1.95, 1.42, 2.39),
}


def kib(n: int) -> str:
    return f"{n / 1024:.1f}"


def io8_sram(r: dict | None) -> str:
    if not r or "error" in r:
        return (r or {}).get("error", "not run")[:80]
    m = r["memory"]
    return f"{kib(r['sram'])} ({kib(m['model']['sram'])} / {kib(m['harness']['sram'])})"


def io8_fits(r: dict | None) -> str:
    if not r or "error" in r:
        return "-"
    return ("yes" if r["fits"] else "**no**") + f" (outputs within {r['max_diff_steps']:.2f} steps of float I/O's)"


def checked_cells(r: dict) -> list[str]:
    """max err / range and top-1 agreement: on random-normal inputs, or for the trained IC on the
    test images its calibration is for."""
    d = r.get("data") or r
    what = f"{d['images']} {d['data']} test images" if "data" in r else str(r["samples"])
    return [f"{d['max_rel_err']:.3f}", f"{100 * d['top1']:.0f}% of {what}"]


def _flips(d: dict) -> str:
    return ", ".join(f"{v:.2f}" for v in sorted(d["flip_margins_steps"])) or "-"


def margin_table(ok: list[dict]) -> str:
    """Why top-1 agreement is what it is: onnxruntime's own top-1 - top-2 gap in steps of the int8
    output, the agreement of the float-output build and of the int8-I/O build (whose output is
    int8: it cannot order two classes closer than one step), and for the trained IC the
    accuracies on real test images."""
    rows = []
    for r in ok:
        if r["model"] == "AD" or "margin_steps_median" not in r:
            continue
        i8 = (r.get("io8") or {}).get("agreement")
        i8_cells = [f"{100 * i8['top1']:.0f}%", _flips(i8), i8["ties"]] if i8 else ["-", "-", "-"]
        calib = " (calibrated on the images: these inputs saturate)" if "data" in r else ""
        rows.append([r["model"], r["opset"], f"random normal x {r['samples']}{calib}",
                     f"{r['margin_steps_median']:.2f}", f"{100 * r['top1']:.0f}%", _flips(r), r["ties"], *i8_cells,
                     "-", "-"])
        if "random_calibration" in r:
            c = r["random_calibration"]
            rows.append([r["model"], r["opset"], f"random normal x {r['samples']} (calibrated on random normal)",
                         f"{c['margin_steps_median']:.2f}", f"{100 * c['top1']:.0f}%", _flips(c), c["ties"],
                         "-", "-", "-", "-", "-"])
        if "data" in r:
            d = r["data"]
            rows.append([r["model"], r["opset"], f"{d['data']} test images 0-{d['images'] - 1}",
                         f"{d['margin_steps_median']:.1f}", f"{100 * d['top1']:.0f}%", _flips(d), d["ties"],
                         "-", "-", "-", f"{100 * d['ort_accuracy']:.0f}%", f"{100 * d['int8_accuracy']:.0f}%"])
    return ("Top-1 agreement with onnxruntime and the float model's own margin (onnxruntime's top-1 minus top-2 "
            "output, in steps of the int8 output: the output value's calibrated scale). The float-I/O build "
            "(`cococ build`'s default) ends in float: its last dense dequantises its int32 sums and the softmax "
            "after it runs in float32, so its output is not rounded to that step; the int8-I/O build "
            "(`--target-opt io=int8`) returns the int8 output, which cannot order two classes closer than one "
            "step, and a device output tied at its maximum gives the first class.\n\n"
            + markdown_table(["model", "opset", "inputs", "median top-1 - top-2 (int8 steps)",
                              "top-1 agreement, float I/O", "margins of the disagreements (steps), float I/O",
                              "outputs tied at the max, float I/O", "top-1 agreement, int8 I/O",
                              "margins of the disagreements (steps), int8 I/O", "outputs tied at the max, int8 I/O",
                              "top-1 accuracy, onnxruntime f32", "top-1 accuracy, int8 on the emulated M4"], rows))


def tables(rows: list[dict], quick: bool) -> str:
    ok = [r for r in rows if "error" not in r]
    head = ["model", "opset", "MACs", "cycles (0 WS)", "cyc/MAC (0 WS)", f"cycles ({BOARD_WS} WS)",
            f"cyc/MAC ({BOARD_WS} WS)", "flash KiB (model / harness / libs)",
            "SRAM KiB, int8 I/O (MLPerf; model / harness)", "fits 512K/128K, int8 I/O (MLPerf)",
            "SRAM KiB, float I/O (model / harness / libs)", "SRAM lower bound KiB, float I/O",
            "fits 512K/128K, float I/O", "float-step warnings", "max err / range", "top-1 vs ORT",
            "QEMU = emulator"]
    body = []
    for r in ok:
        m = r["memory"]
        body.append([r["model"], r["opset"], f"{r['macs']:,}", f"{r['cycles']:,}", f"{r['cycles'] / r['macs']:.2f}",
                     f"{r['cycles_board']:,}", f"{r['cycles_board'] / r['macs']:.2f}",
                     f"{kib(r['flash'])} ({kib(m['model']['flash'])} / {kib(m['harness']['flash'])} / "
                     f"{kib(m['libraries']['flash'])})",
                     io8_sram(r.get("io8")), io8_fits(r.get("io8")),
                     f"{kib(r['sram'])} ({kib(m['model']['sram'])} / {kib(m['harness']['sram'])} / "
                     f"{kib(m['libraries']['sram'])})",
                     kib(r["sram_lower_bound"]), "yes" if r["fits"] else "**no**", len(r["warnings"]),
                     *checked_cells(r), r.get("qemu_same", "not run")])
    out = [markdown_table(head, body)]
    out.append(margin_table(ok))
    errors = [f"- {r['model']} opset {r['opset']}: {r['error'].splitlines()[0][:300]}" for r in rows if "error" in r]
    if errors:
        out.append("Not measured:\n" + "\n".join(errors))
    kinds: dict[str, dict[str, list[int]]] = {}
    for r in ok:
        if r["opset"] == 17:
            for k, (macs, cyc) in r["kinds"].items():
                kinds.setdefault(k, {})[r["model"]] = [macs, cyc]
    names = [n for n in MODELS if any(r["model"] == n for r in ok)]
    krows = []
    for k, per in sorted(kinds.items(), key=lambda kv: -sum(c for _, c in kv[1].values())):
        cells = []
        for n in names:
            if n not in per:
                cells.append("")
                continue
            macs, cyc = per[n]
            total = next(r["cycles"] for r in ok if r["model"] == n and r["opset"] == 17)
            cells.append((f"{cyc / macs:.2f} c/MAC, " if macs else "") + f"{100 * cyc / total:.0f}% of cycles")
        krows.append([k] + cells)
    out.append("Per kernel kind (opset 17 builds, 0 wait states): cycles/MAC and share of the model's cycles\n\n"
               + markdown_table(["kernel kind"] + names, krows))
    if not quick:
        ours = {n: next((r for r in ok if r["model"] == n and r["opset"] == 17), None) for n in MODELS}
        arows = [[eng, *[f"{v:.2f}" for v in vals]] for eng, vals in ANCHORS.items()]
        for ws, key in ((0, "cycles"), (BOARD_WS, "cycles_board")):
            arows.append([f"**cococ int8, emulated estimate, {ws} wait states**",
                          *[f"{ours[n][key] / ours[n]['macs']:.2f}" if ours[n] else "-" for n in MODELS]])
        out.append("Side by side with the MLPerf Tiny results (cycles/MAC; theirs: measured on NUCLEO-L4R5ZI "
                   "boards, Cortex-M4 @120 MHz, latency x 120 MHz / MACs; ours: the emulator's estimate, no "
                   "bus contention, and the wait-state model of docs/mcu.md)\n\n"
                   + markdown_table(["engine", *MODELS], arows))
    warn = sorted({w for r in ok for w in r["warnings"]})
    if warn:
        out.append("Build warnings (steps still in float, kept-dense layers):\n"
                   + "\n".join(f"- {w[:300]}" for w in warn))
    return "\n\n".join(out)


def intro(when: str, seconds: float, jobs: int, load: tuple[float, float], aff: list[int], checked: str) -> str:
    """The section's heading and what was run, how, and what each column means."""
    return (f"## MLPerf Tiny on the emulated Cortex-M4 (`benchmarks/mlperf_tiny.py`)\n\n"
            f"Run {when}; {seconds:.0f} s ({jobs} models at a time, each in its own process); "
            f"load average {load[0]:.2f} before, {load[1]:.2f} after; CPU affinity {aff}. The four reference "
            "models (benchmarks/mlperf_tiny_models.py: the published architectures with BatchNorm, random "
            "weights), exported by torch.onnx at opset 13 and 17, built `--target=arm-m4 --quantize int8` "
            f"(random-normal calibration), run on the emulator. Cycles are **emulated estimates** (docs/mcu.md), "
            f"deterministic (the load does not change them); {BOARD_WS} WS = the board's flash wait states under "
            "the ART-accelerator model (`--target-opt flash-ws=5`). Flash/SRAM: the linked ELF, split into "
            "model (kernels, executor, weights, arena) / board harness (start-up, main.c, I/O buffers, stack) / "
            "C libraries and padding. **int8 I/O** is the MLPerf Tiny configuration: the reference submissions "
            "run TFLite int8 models, whose input and output tensors are int8, so the harness hands the model int8 "
            "data; here the same model built `--target-opt io=int8` (int8 input and output in the arena, no float "
            "I/O buffers; how far its int8 outputs lie from the float-I/O build's on 3 inputs, in output steps). "
            "**float I/O** is what `cococ build` makes by default (a float input and output buffer in the harness; "
            "the input quantized to int16 for the first conv, the last dense layer dequantises its int32 sums and "
            "a softmax after it runs in float32, docs/mcu.md; both I/O kinds: the average pool hands the dense its "
            "int16 window sums, backends/mcu/i8wide.py): "
            "VWW's 96x96x3 float input is 108 KiB by itself, so no float-I/O build of VWW can fit 128 KiB of SRAM. "
            "SRAM lower bound: the same image with the arena at the most bytes live at "
            "one step. A model that does not fit was rebuilt with 2 MiB / 1 MiB to measure it. Errors: max over "
            f"random-normal inputs ({checked}) of max |int8 ELF - onnxruntime f32| / max |onnxruntime| (the "
            "int8 bound of docs/mcu.md is 15% of the range, against the interpreter on the quantized graph); "
            "top-1: argmax agreement of the float-I/O build (meaningless for the AD autoencoder's reconstruction; "
            "with random weights the classifiers' outputs are near ties: see the margin table, which also gives "
            "the int8-I/O build's agreement). IC-FMNIST: the IC network with "
            "weights trained on Fashion-MNIST (28x28 images padded to 32x32, grey repeated to 3 channels; "
            "examples/ic_resnet8/ic_resnet8_fmnist.onnx from benchmarks/resnet8_codesign.py), calibrated on 64 "
            "training images instead of random-normal inputs, checked on random-normal inputs and on the first "
            "test images. QEMU: the ELF on `qemu-system-arm -M mps2-an386`, its outputs bit for bit "
            "against the emulator's on the same (generated) input.")
