"""CPU schedules for the integer kernels and their FP32 twins."""
