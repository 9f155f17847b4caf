"""Post-training quantization: observers, the config, the integer model and its reference."""
