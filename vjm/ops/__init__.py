"""Sequence operators of the Mamba mixer, each a dispatcher over a torch reference (the
definition) and faster backends, all chosen by one rule (backends.py):

    selective_scan      scan.py        torch, triton, mamba_ssm
    causal_conv1d_silu  conv.py        torch, triton
    scan_direction      direction.py   torch, triton (fused), mamba_ssm (its scan in the torch composition)

File names follow <op>.py (the dispatcher), <op>_torch.py (the reference), <op>_triton.py (the
launcher and autograd node), <op>_triton_kernels.py (the @triton.jit code), <op>_mamba_ssm.py.
"""

from .backends import resolve_backend, usable_backends
from .conv import CONV_BACKENDS, causal_conv1d_silu
from .direction import DIRECTION_BACKENDS, scan_direction
from .scan import SCAN_BACKENDS, selective_scan

__all__ = [
    "selective_scan", "causal_conv1d_silu", "scan_direction",
    "SCAN_BACKENDS", "CONV_BACKENDS", "DIRECTION_BACKENDS", "resolve_backend", "usable_backends",
]
