"""Sequence operators shared by every model: one selective scan and Mamba's causal convolution,
each with a torch reference and Triton kernels (and mamba_ssm's kernels for the scan)."""

from .causal_conv import causal_conv1d_silu
from .selective_scan import available_backends, resolve_backend, selective_scan

__all__ = ["selective_scan", "causal_conv1d_silu", "available_backends", "resolve_backend"]
