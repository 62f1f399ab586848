"""The int8 / q15 depthwise conv kernel of the M4 (qlower.py lowers a grouped conv with one filter
per channel to it; fixed.depthwise_fits says which ones).

Per channel the input plane is widened into an int16 scratch plane with the padding already in
place (zeroed once per call, so the MAC loops never test bounds; int8 rows eight elements per asm
step, COCOC_WIDEN8), the channel's weight words, bias and requantisation constants are read once,
then four outputs of a row at a time (SMLAD on pairs of taps: a word of the plane against a word
of two int16 weights; an odd kernel width pairs its last tap with a zero weight), a pair, then
single outputs. A 3x3 quad is one asm block (COCOC_DW3X3X4_S1 / _S2: per kernel row seven loads
back to back and eight SMLAD/SMLATB); other kernels run the same scheme from TIR. The
requantisation is qkernels.requant's: its fast form as SMMLA (high word of acc * M plus the
rounding constant) + ASR + SSAT/USAT, the same integers.

Layout: NCHW like every other M4 kernel. Channels-last would let SMLAD pair adjacent channels,
but SMLAD sums its two products, so channel pairs need SMLABB/SMLATT (one MAC each) where tap
pairs in a row give two per instruction; the quad's cost is its loads, MACs and requantisation
(about 68 cycles for 36 MACs), not the layout (docs/mcu.md, "The integer path").
"""
from __future__ import annotations

import numpy as np
from tvm.script import tirx as T

from cococ.backends.kernels.im2col import Geometry
from cococ.backends.mcu.codegen import Kernel
from cococ.backends.mcu.fixed import LIMITS
from cococ.backends.mcu.qkernels import requant

READ_Q15X2 = """/* Unaligned word access for the depthwise conv's int16 plane (the M4's LDR/STR take any address;
   CMSIS arm_nn_read_q15x2 / arm_nn_read_q7x4 / arm_nn_write_q15x2), and the halfword packs (PKHBT, PKHTB). */
__attribute__((always_inline)) static inline int32_t cococ_read_q15x2(const int16_t* p) {
  int32_t v;
  __builtin_memcpy(&v, p, 4);
  return v;
}
__attribute__((always_inline)) static inline int32_t cococ_read_q7x4(const int8_t* p) {
  int32_t v;
  __builtin_memcpy(&v, p, 4);
  return v;
}
__attribute__((always_inline)) static inline int32_t cococ_write_q15x2(int16_t* p, int32_t v) {
  __builtin_memcpy(p, &v, 4);
  return 0;
}
__attribute__((always_inline)) static inline int32_t cococ_sxtb16_odd(int32_t v) {  /* bytes 1, 3: SXTB16 ROR #8 */
  int32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
  return r;
}
__attribute__((always_inline)) static inline int32_t cococ_pack_lo(int32_t a, int32_t b) {  /* (a.lo, b.lo) */
  int32_t r;
  __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
  return r;
}
__attribute__((always_inline)) static inline int32_t cococ_pack_hi(int32_t a, int32_t b) {  /* (b.hi, a.hi) */
  int32_t r;
  __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(a), "r"(b));
  return r;
}
/* Four outputs of a 3x3 depthwise conv (its quads): per kernel row r the weight words (w0, w1),
   (w2, 0) at byte 8 r of w and the plane words from byte offset 0, off1, off2 of p (literal
   immediates: one base register each), seven loads back to back (the M4 pipelines them:
   8 cycles), then 8 MACs into acc[0..3] (the first row's onto `bias`: no moves to start the four
   sums; 14 registers). In asm, the three rows in one statement, because GCC
   interleaves the loads with the MACs (an LDR that does not follow another costs 2), spills, and
   reloads the base registers between rows. Stride 1 (S1): aligned words at 0, 4, 8 (outputs 0,
   2, and the odd last tap of 1, 3 as their top halves: SMLATB), unaligned at 2, 6 (outputs 1, 3).
   Stride 2 (S2): aligned words at 0 .. 16, output q SMLADs words q and q + 1. */
#define COCOC_DW3X3X4_S1(acc, bias, p, off1, off2, w) do { \
  int32_t a0_, a1_, a2_, b0_, b1_, w0_, w1_; \
  __asm__("ldr %[w0], [%[pw], #0]\\n\\tldr %[w1], [%[pw], #4]\\n\\t" \
          "ldr %[a0], [%[pp], #0]\\n\\tldr %[a1], [%[pp], #4]\\n\\tldr %[a2], [%[pp], #8]\\n\\t" \
          "ldr %[b0], [%[pp], #2]\\n\\tldr %[b1], [%[pp], #6]\\n\\t" \
          "smlad %[c0], %[a0], %[w0], %[b]\\n\\tsmlad %[c0], %[a1], %[w1], %[c0]\\n\\t" \
          "smlad %[c1], %[b0], %[w0], %[b]\\n\\tsmlatb %[c1], %[a1], %[w1], %[c1]\\n\\t" \
          "smlad %[c2], %[a1], %[w0], %[b]\\n\\tsmlad %[c2], %[a2], %[w1], %[c2]\\n\\t" \
          "smlad %[c3], %[b1], %[w0], %[b]\\n\\tsmlatb %[c3], %[a2], %[w1], %[c3]\\n\\t" \
          "ldr %[w0], [%[pw], #8]\\n\\tldr %[w1], [%[pw], #12]\\n\\t" \
          "ldr %[a0], [%[pp], #%c[o1]+0]\\n\\tldr %[a1], [%[pp], #%c[o1]+4]\\n\\tldr %[a2], [%[pp], #%c[o1]+8]\\n\\t" \
          "ldr %[b0], [%[pp], #%c[o1]+2]\\n\\tldr %[b1], [%[pp], #%c[o1]+6]\\n\\t" \
          "smlad %[c0], %[a0], %[w0], %[c0]\\n\\tsmlad %[c0], %[a1], %[w1], %[c0]\\n\\t" \
          "smlad %[c1], %[b0], %[w0], %[c1]\\n\\tsmlatb %[c1], %[a1], %[w1], %[c1]\\n\\t" \
          "smlad %[c2], %[a1], %[w0], %[c2]\\n\\tsmlad %[c2], %[a2], %[w1], %[c2]\\n\\t" \
          "smlad %[c3], %[b1], %[w0], %[c3]\\n\\tsmlatb %[c3], %[a2], %[w1], %[c3]\\n\\t" \
          "ldr %[w0], [%[pw], #16]\\n\\tldr %[w1], [%[pw], #20]\\n\\t" \
          "ldr %[a0], [%[pp], #%c[o2]+0]\\n\\tldr %[a1], [%[pp], #%c[o2]+4]\\n\\tldr %[a2], [%[pp], #%c[o2]+8]\\n\\t" \
          "ldr %[b0], [%[pp], #%c[o2]+2]\\n\\tldr %[b1], [%[pp], #%c[o2]+6]\\n\\t" \
          "smlad %[c0], %[a0], %[w0], %[c0]\\n\\tsmlad %[c0], %[a1], %[w1], %[c0]\\n\\t" \
          "smlad %[c1], %[b0], %[w0], %[c1]\\n\\tsmlatb %[c1], %[a1], %[w1], %[c1]\\n\\t" \
          "smlad %[c2], %[a1], %[w0], %[c2]\\n\\tsmlad %[c2], %[a2], %[w1], %[c2]\\n\\t" \
          "smlad %[c3], %[b1], %[w0], %[c3]\\n\\tsmlatb %[c3], %[a2], %[w1], %[c3]" \
          : [c0] "=&r"((acc)[0]), [c1] "=&r"((acc)[1]), [c2] "=&r"((acc)[2]), [c3] "=&r"((acc)[3]), \
            [a0] "=&r"(a0_), [a1] "=&r"(a1_), [a2] "=&r"(a2_), [b0] "=&r"(b0_), [b1] "=&r"(b1_), \
            [w0] "=&r"(w0_), [w1] "=&r"(w1_) \
          : [b] "r"(bias), [pp] "r"(p), [pw] "r"(w), [o1] "i"(off1), [o2] "i"(off2) \
          : "memory"); } while (0)
#define COCOC_DW3X3X4_S2(acc, bias, p, off1, off2, w) do { \
  int32_t a0_, a1_, a2_, b0_, b1_, w0_, w1_; \
  __asm__("ldr %[w0], [%[pw], #0]\\n\\tldr %[w1], [%[pw], #4]\\n\\t" \
          "ldr %[a0], [%[pp], #0]\\n\\tldr %[a1], [%[pp], #4]\\n\\tldr %[a2], [%[pp], #8]\\n\\t" \
          "ldr %[b0], [%[pp], #12]\\n\\tldr %[b1], [%[pp], #16]\\n\\t" \
          "smlad %[c0], %[a0], %[w0], %[b]\\n\\tsmlad %[c0], %[a1], %[w1], %[c0]\\n\\t" \
          "smlad %[c1], %[a1], %[w0], %[b]\\n\\tsmlad %[c1], %[a2], %[w1], %[c1]\\n\\t" \
          "smlad %[c2], %[a2], %[w0], %[b]\\n\\tsmlad %[c2], %[b0], %[w1], %[c2]\\n\\t" \
          "smlad %[c3], %[b0], %[w0], %[b]\\n\\tsmlad %[c3], %[b1], %[w1], %[c3]\\n\\t" \
          "ldr %[w0], [%[pw], #8]\\n\\tldr %[w1], [%[pw], #12]\\n\\t" \
          "ldr %[a0], [%[pp], #%c[o1]+0]\\n\\tldr %[a1], [%[pp], #%c[o1]+4]\\n\\tldr %[a2], [%[pp], #%c[o1]+8]\\n\\t" \
          "ldr %[b0], [%[pp], #%c[o1]+12]\\n\\tldr %[b1], [%[pp], #%c[o1]+16]\\n\\t" \
          "smlad %[c0], %[a0], %[w0], %[c0]\\n\\tsmlad %[c0], %[a1], %[w1], %[c0]\\n\\t" \
          "smlad %[c1], %[a1], %[w0], %[c1]\\n\\tsmlad %[c1], %[a2], %[w1], %[c1]\\n\\t" \
          "smlad %[c2], %[a2], %[w0], %[c2]\\n\\tsmlad %[c2], %[b0], %[w1], %[c2]\\n\\t" \
          "smlad %[c3], %[b0], %[w0], %[c3]\\n\\tsmlad %[c3], %[b1], %[w1], %[c3]\\n\\t" \
          "ldr %[w0], [%[pw], #16]\\n\\tldr %[w1], [%[pw], #20]\\n\\t" \
          "ldr %[a0], [%[pp], #%c[o2]+0]\\n\\tldr %[a1], [%[pp], #%c[o2]+4]\\n\\tldr %[a2], [%[pp], #%c[o2]+8]\\n\\t" \
          "ldr %[b0], [%[pp], #%c[o2]+12]\\n\\tldr %[b1], [%[pp], #%c[o2]+16]\\n\\t" \
          "smlad %[c0], %[a0], %[w0], %[c0]\\n\\tsmlad %[c0], %[a1], %[w1], %[c0]\\n\\t" \
          "smlad %[c1], %[a1], %[w0], %[c1]\\n\\tsmlad %[c1], %[a2], %[w1], %[c1]\\n\\t" \
          "smlad %[c2], %[a2], %[w0], %[c2]\\n\\tsmlad %[c2], %[b0], %[w1], %[c2]\\n\\t" \
          "smlad %[c3], %[b0], %[w0], %[c3]\\n\\tsmlad %[c3], %[b1], %[w1], %[c3]" \
          : [c0] "=&r"((acc)[0]), [c1] "=&r"((acc)[1]), [c2] "=&r"((acc)[2]), [c3] "=&r"((acc)[3]), \
            [a0] "=&r"(a0_), [a1] "=&r"(a1_), [a2] "=&r"(a2_), [b0] "=&r"(b0_), [b1] "=&r"(b1_), \
            [w0] "=&r"(w0_), [w1] "=&r"(w1_) \
          : [b] "r"(bias), [pp] "r"(p), [pw] "r"(w), [o1] "i"(off1), [o2] "i"(off2) \
          : "memory"); } while (0)
/* Eight int8 at s widened into the int16 plane at d (any alignment): two loads, SXTB16 /
   SXTB16 ROR 8 / PKHBT / PKHTB per word, four stores back to back (volatile: its
   only effect is the stores). */
#define COCOC_WIDEN8(d, s) do { \
  int32_t x0_, x1_, t0_, t1_, t2_; \
  __asm__ volatile("ldr %[x0], [%[ps]]\\n\\tldr %[x1], [%[ps], #4]\\n\\t" \
          "sxtb16 %[t0], %[x0]\\n\\tsxtb16 %[x0], %[x0], ror #8\\n\\t" \
          "sxtb16 %[t1], %[x1]\\n\\tsxtb16 %[x1], %[x1], ror #8\\n\\t" \
          "pkhbt %[t2], %[t0], %[x0], lsl #16\\n\\tpkhtb %[x0], %[x0], %[t0], asr #16\\n\\t" \
          "pkhbt %[t0], %[t1], %[x1], lsl #16\\n\\tpkhtb %[x1], %[x1], %[t1], asr #16\\n\\t" \
          "str %[t2], [%[pd]]\\n\\tstr %[x0], [%[pd], #4]\\n\\tstr %[t0], [%[pd], #8]\\n\\tstr %[x1], [%[pd], #12]" \
          : [x0] "=&r"(x0_), [x1] "=&r"(x1_), [t0] "=&r"(t0_), [t1] "=&r"(t1_), [t2] "=&r"(t2_) \
          : [pd] "r"(d), [ps] "r"(s) : "memory"); } while (0)
__attribute__((always_inline)) static inline int32_t cococ_smmla(int32_t a, int32_t b, int32_t c) {
  /* c + the high word of a * b: one SMMLA (the requantisation's SMULL high word + rounding add) */
  int32_t r;
  __asm__("smmla %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(c));
  return r;
}
"""


def plane_geometry(x_shape, attrs) -> tuple[int, int]:
    """(row length, elements) of a depthwise conv's padded int16 plane: rows of even length (so a
    pair of outputs reads aligned words), plus a tail a pair's last word may read into."""
    _, _, h, wd = x_shape
    t, l, b, r = attrs["pad"]
    pw = (wd + l + r + 1) // 2 * 2
    return pw, (h + t + b) * pw + 4


def depthwise(name, x_shape, y_shape, attrs, lo: int, hi: int, fast: bool, dtype: str) -> Kernel:
    """Depthwise conv on `dtype` (int8 or int16) tensors: per channel the padded int16 plane, the
    channel's weight words (w[2k], w[2k+1]), bias and requantisation constants read once into
    locals, then four outputs of a row at a time (stride 1 or 2), then a pair, then single ones.
    Per kernel row a quad loads the plane words its windows cover once: at stride 2 the aligned
    words, output q SMLADs words q .. q + kwp - 1; at stride 1 the aligned words serve outputs 0
    and 2, outputs 1 and 3 load their own (unaligned) words, and an odd last tap is the top half
    of an aligned word (SMLATB). 3x3, stride 1: 5 loads and 8 MACs instructions per row for 4
    outputs (was 3 and 6 for 2). Requantised by SMMLA (the rounding constant added to the high
    word: the same integers as qkernels.requant's fast form), clamped by SSAT/USAT when the
    bounds allow. Each section (quads, pair, single) has its own accumulator buffer: TVM's CSE
    would otherwise take a one-iteration section's `requant(acc[0])` for the next one's (it
    treats buffer loads as pure: an output width of 3 stored the pair's first output twice)."""
    n, c, h, wd = x_shape
    oh, ow = y_shape[2], y_shape[3]
    g = Geometry.of(x_shape, y_shape, attrs)
    t, l = attrs["pad"][:2]
    kwp = (g.kw + 1) // 2                      # weight words of a kernel row (zero after an odd width)
    odd = g.kw % 2 == 1
    strided = g.sw in (1, 2)
    nq = ow // 4 if strided else 0             # quads of a row
    paired = strided and ow - 4 * nq >= 2
    j1 = 4 * nq + (2 if paired else 0)         # first single output
    own = kwp - g.kw % 2                       # stride 1: words an odd output loads itself
    qa = kwp + 1 if g.sw == 1 else kwp + 3     # aligned plane words a quad loads per row
    na = (kwp + own if g.sw == 1 else kwp + 1) if paired else 1   # plane words a pair loads per row
    pw, size = plane_geometry(x_shape, attrs)
    # a 3x3 quad: COCOC_DW3X3X4_S1 / _S2 (READ_Q15X2), while its offsets are LDR immediates (imm12)
    asm = (g.kh, g.kw) == (3, 3) and 2 * g.dh * pw * 2 + 16 < 4096
    zero = T.int16(0)
    xs, ys = tuple(x_shape), tuple(y_shape)
    bits = {"int8": 8, "int16": 16}[dtype]
    qlo, qhi = LIMITS[dtype]

    def clamp(v):
        if (lo, hi) == (qlo, qhi):
            return T.call_pure_extern("int32", "__ssat", v, bits)
        if lo == 0 and hi == qhi:
            return T.call_pure_extern("int32", "__usat", v, bits - 1)
        return T.max(T.min(v, hi), lo)

    @T.macro
    def store(y, at, a, m, sh, ch, cst):
        """y[at] = the requantised, clamped accumulator `a` (cst: bias, M, shift, 2^(shift-1))."""
        if fast:
            y[at] = T.Cast(dtype, clamp(T.shift_right(T.call_pure_extern("int32", "cococ_smmla", a, cst[1], cst[3]),
                                                      cst[2])))
        else:
            requant(y, at, a, m, sh, ch, lo, hi, dtype, False)

    @T.macro
    def load(r, plane, e, at):
        """r[e] = the plane word at element `at` (two int16, any halfword address)."""
        r[e] = T.call_pure_extern("int32", "cococ_read_q15x2", T.address_of(plane[at]))

    @T.macro
    def widen4(r, plane, at, v):
        """plane[at .. at + 4] = the four int8 of the word v, as int16: SXTB16 gives (x0, x2),
        SXTB16 of v ROR 8 (x1, x3); PKHBT / PKHTB make (x0, x1), (x2, x3)."""
        r[0] = T.call_pure_extern("int32", "__sxtb16", v)
        r[1] = T.call_pure_extern("int32", "cococ_sxtb16_odd", v)
        T.evaluate(T.call_extern("int32", "cococ_write_q15x2", T.address_of(plane[at]),
                                 T.call_pure_extern("int32", "cococ_pack_lo", r[0], r[1])))
        T.evaluate(T.call_extern("int32", "cococ_write_q15x2", T.address_of(plane[at + 2]),
                                 T.call_pure_extern("int32", "cococ_pack_hi", r[1], r[0])))

    @T.prim_func(s_tir=True)
    def f(x: T.Buffer(xs, dtype), w: T.Buffer((c * g.kh * kwp * 2,), "int16"),
          bq: T.Buffer((c,), "int32"), m: T.Buffer((c,), "int32"), sh: T.Buffer((c,), "int32"),
          plane: T.Buffer((size,), "int16"), y: T.Buffer(ys, dtype)):
        T.func_attr({"tirx.noalias": True})
        WW = T.decl_buffer((c * g.kh * kwp,), "int32", data=w.data)
        wr = T.sblock_alloc_buffer((g.kh * kwp,), "int32")
        cst = T.sblock_alloc_buffer((4,), "int32")
        accq = T.sblock_alloc_buffer((4,), "int32")
        accp = T.sblock_alloc_buffer((2,), "int32")
        accs = T.sblock_alloc_buffer((1,), "int32")
        r = T.sblock_alloc_buffer((max(2, qa + 2 * own, g.kh * na),), "int32")
        for p in range(size):
            plane[p] = zero
        for nn, ch in T.grid(n, c):
            for iy in range(h):
                if dtype == "int8":  # eight at a time (COCOC_WIDEN8), then four, then one
                    for q in T.unroll(wd // 8) if wd <= 64 else range(wd // 8):
                        T.evaluate(T.call_extern("void", "COCOC_WIDEN8", T.address_of(plane[(iy + t) * pw + q * 8 + l]),
                                                 T.address_of(x[nn, ch, iy, q * 8])))
                    if wd % 8 >= 4:
                        widen4(r, plane, (iy + t) * pw + wd // 8 * 8 + l,
                               T.call_pure_extern("int32", "cococ_read_q7x4", T.address_of(x[nn, ch, iy, wd // 8 * 8])))
                for ix in T.unroll(wd // 4 * 4, wd) if dtype == "int8" else T.serial(wd):  # int8: at most 3
                    plane[(iy + t) * pw + ix + l] = T.Cast("int16", x[nn, ch, iy, ix])
            for e in T.unroll(g.kh * kwp):
                wr[e] = WW[ch * g.kh * kwp + e]
            cst[0] = bq[ch]
            cst[1] = m[ch]
            cst[2] = sh[ch]
            cst[3] = T.shift_left(1, sh[ch] - 1)
            for i in range(oh):
                for j4 in range(nq):
                    for q in T.unroll(0 if asm else 4):
                        accq[q] = cst[0]
                    if asm:
                        T.evaluate(T.call_extern("void", f"COCOC_DW3X3X4_S{g.sw}", T.address_of(accq[0]), cst[0],
                                                 T.address_of(plane[i * g.sh * pw + j4 * (4 * g.sw)]),
                                                 g.dh * pw * 2, 2 * g.dh * pw * 2, T.address_of(WW[ch * 3 * kwp])))
                    for ky in T.unroll(0 if asm else g.kh):
                        for e in T.unroll(qa):  # the aligned words, back to back (the M4 pipelines loads)
                            load(r, plane, e, (i * g.sh + ky * g.dh) * pw + j4 * (4 * g.sw) + e * 2)
                        if g.sw == 1:
                            for k in T.unroll(own):  # outputs 1 and 3: their own words
                                load(r, plane, qa + k, (i * g.sh + ky * g.dh) * pw + j4 * 4 + 1 + k * 2)
                                load(r, plane, qa + own + k, (i * g.sh + ky * g.dh) * pw + j4 * 4 + 3 + k * 2)
                        for q in T.unroll(4):
                            if g.sw == 2:
                                for k in T.unroll(kwp):
                                    accq[q] = T.call_pure_extern("int32", "__smlad", r[q + k], wr[ky * kwp + k],
                                                                 accq[q])
                            elif q % 2 == 0:
                                for k in T.unroll(kwp):
                                    accq[q] = T.call_pure_extern("int32", "__smlad", r[q // 2 + k], wr[ky * kwp + k],
                                                                 accq[q])
                            else:
                                for k in T.unroll(own):
                                    accq[q] = T.call_pure_extern("int32", "__smlad", r[qa + own * (q // 2) + k],
                                                                 wr[ky * kwp + k], accq[q])
                                if odd:
                                    accq[q] = T.call_pure_extern("int32", "__smlatb", r[q // 2 + kwp - 1],
                                                                 wr[ky * kwp + kwp - 1], accq[q])
                    for q in T.unroll(4):
                        store(y, (nn, ch, i, j4 * 4 + q), accq[q], m, sh, ch, cst)
                if paired:
                    accp[0] = cst[0]
                    accp[1] = cst[0]
                    for ky in T.unroll(g.kh):  # all loads first: back to back, the M4 pipelines them
                        for k in T.unroll(na - own if g.sw == 1 else na):  # output j's words (+ one at stride 2)
                            load(r, plane, ky * na + k, (i * g.sh + ky * g.dh) * pw + nq * (4 * g.sw) + k * 2)
                        if g.sw == 1:
                            for k in T.unroll(own):  # output j + 1's own words
                                load(r, plane, ky * na + kwp + k, (i * g.sh + ky * g.dh) * pw + nq * 4 + k * 2 + 1)
                    for ky in T.unroll(g.kh):
                        for k in T.unroll(kwp):
                            accp[0] = T.call_pure_extern("int32", "__smlad", r[ky * na + k], wr[ky * kwp + k], accp[0])
                        if g.sw == 2:
                            for k in T.unroll(kwp):
                                accp[1] = T.call_pure_extern("int32", "__smlad", r[ky * na + k + 1], wr[ky * kwp + k],
                                                             accp[1])
                        else:
                            for k in T.unroll(own):
                                accp[1] = T.call_pure_extern("int32", "__smlad", r[ky * na + kwp + k],
                                                             wr[ky * kwp + k], accp[1])
                            if odd:
                                accp[1] = T.call_pure_extern("int32", "__smlatb", r[ky * na + kwp - 1],
                                                             wr[ky * kwp + kwp - 1], accp[1])
                    store(y, (nn, ch, i, nq * 4), accp[0], m, sh, ch, cst)
                    store(y, (nn, ch, i, nq * 4 + 1), accp[1], m, sh, ch, cst)
                for j in range(j1, ow):
                    accs[0] = cst[0]
                    for ky in T.unroll(g.kh):
                        for k in T.unroll(kwp):
                            accs[0] = T.call_pure_extern("int32", "__smlad", T.call_pure_extern(
                                "int32", "cococ_read_q15x2",
                                T.address_of(plane[(i * g.sh + ky * g.dh) * pw + j * g.sw + k * 2])),
                                wr[ky * kwp + k], accs[0])
                    store(y, (nn, ch, i, j), accs[0], m, sh, ch, cst)
    args = [("x", dtype, False), ("w", "int16", False), ("bq", "int32", False), ("m", "int32", False),
            ("sh", "int32", False), ("plane", "int16", True), ("y", dtype, True)]
    return Kernel(name, f, args, origin="tvm-tir", includes=("<arm_acle.h>",),
                  meta={"doc": f"{dtype} depthwise conv2d {list(x_shape)}->{list(y_shape)} k{g.kh}x{g.kw} "
                        f"s{g.sh}x{g.sw} (padded int16 plane; SMLAD on tap pairs"
                        f"{', four outputs at a time' if nq else ''}{', a pair' if paired else ''}), "
                        f"clamp [{lo}, {hi}]", "prelude": READ_Q15X2})


def depthwise_weights(wq: np.ndarray) -> np.ndarray:
    """[c, 1, kh, kw] integer weights -> [c, kh, 2 * ceil(kw / 2)] int16: per kernel row the words
    (w[2k], w[2k+1]) `depthwise` reads, a zero after an odd width."""
    c, _, kh, kw = wq.shape
    out = np.zeros((c, kh, (kw + 1) // 2 * 2), np.int16)
    out[:, :, :kw] = wq[:, 0]
    return out.reshape(-1)


__all__ = ["READ_Q15X2", "depthwise", "depthwise_weights", "plane_geometry"]
