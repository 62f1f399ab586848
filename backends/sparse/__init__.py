"""cococ's sparse kernels (TIR, built by TVM) for the csr and simd_group Param formats.

tir.py holds the loop nests, build.py picks one by the param's format and compiles it
(x86: LLVM, f32; arm-m4: C, q15 with SMLAD), m4.py runs the C kernels on an emulated
Cortex-M4 and estimates cycles (benchmarks/sparse_breakeven.py). tir_mm.py and
build_mm.py are the same for matrix-matrix (conv through im2col; benchmarks/
sparse_breakeven_mm.py).
"""
