"""Static and dynamic analysis of compiled libraries: llvm-mca models of micro-kernel loops,
the core table, measured instruction-mix peaks, and whole-model instruction counts under QEMU."""
