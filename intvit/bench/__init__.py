"""Benchmarks as a library: kernel, GEMM and low-rank benches, peer runtimes, bench records and
the latency report. Scripts under ``benchmarks/`` and ``intvit bench`` drive them."""
