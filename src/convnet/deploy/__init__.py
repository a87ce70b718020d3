"""Deployment: the inference fast path (optimize, fold_batchnorm), int8 post-training
quantisation (quantize_int8), export (deploy.export) and benchmarks (deploy.bench)."""
from .optimize import OptimizedModel, bf16_supported, fold_batchnorm, optimize, remaining_batchnorms, resolve_dtype
from .quantize import int8_modules, quantize_int8

__all__ = ["OptimizedModel", "bf16_supported", "fold_batchnorm", "int8_modules", "optimize", "quantize_int8",
           "remaining_batchnorms", "resolve_dtype"]
