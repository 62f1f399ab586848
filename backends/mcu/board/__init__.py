"""Board support for QEMU's mps2-an386 (Cortex-M4): startup, main, linker script, Makefile templates."""
