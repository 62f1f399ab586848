"""Running Cortex-M4 builds: device accuracy on a data set (qeval) and the QEMU cross-check; the emulator itself is backends/mcu's."""
