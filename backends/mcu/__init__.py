"""The Cortex-M4 backend: TVM-generated C kernels, an AOT executor over one static arena,
weights in flash, a q15 path with SMLAD loops, and a QEMU-ready project (see docs/mcu.md);
also the unicorn emulator with its cycle table, which runs the images the build measures
(dense vs sparse kernels) as well as the artifacts it returns."""
