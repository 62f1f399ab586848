"""Running Cortex-M4 builds: the unicorn emulator with a cycle table, and the QEMU cross-check."""
