"""Deployment: target presets, export, the RPC harness and benchmarks."""
