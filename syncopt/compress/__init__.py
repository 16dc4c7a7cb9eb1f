"""Compression stages: knowledge distillation, structured pruning, INT8 quantization."""
