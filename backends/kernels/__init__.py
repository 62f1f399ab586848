"""cococ's kernel library, shared by every target: the ops' computes and the compressed formats.

One place for what does not depend on the target folder that runs it:
  compute.py the driver of the ops' TVM rules (ir/ops/): LowerCtx (what a target tells a rule:
             weight packing, implicit padding) and the calls of each op's tvm / tvm-params rule,
             the one TE compute per op that x86, cuda and arm-m4 all schedule;
  mv.py      the matrix-vector loops (FC, batch 1), one generator per format (dense, csr,
             simd_group) for f32 (x86 through LLVM) and q15 (arm-m4 through C, SMLAD);
  mm.py      the matrix-matrix loops (conv through im2col), the same three formats;
  layer.py   the sparse FC and conv layer steps of the C executor: a format's loop with the
             layer's epilogue (a T.macro: the q15 requantisation, or bias and ReLU) fused in;
  im2col.py  the one im2col: the TVMScript macros that copy conv windows into a column buffer,
             for the x86 conv (whole matrix), the M4 sparse conv (blocks of positions) and the
             M4 dense q15 / int8 convs (one position);
  layout.py  the arrays as the kernels read them (Q15 pairs as words, padding, index dtypes);
  x86.py     build a kernel with TVM's LLVM backend and call it from numpy (tests, benchmarks);
  choice.py  dense or sparse for one layer: eligibility, the measured break-even tables
             (package data in data/, written by benchmarks/sparse_breakeven*.py), the estimate,
             and the cost model Scalpel prunes against (runtime/compress/cost.py).
The target folders (backends/tvm, backends/mcu) import this package; it imports none of them.
"""
