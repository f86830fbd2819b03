"""The Mamba token mixer with one, two or four scan directions.

Parameters and initialisation follow mamba_ssm's `Mamba` (d_state 16, d_conv 4, expand 2,
dt_rank = ceil(d / 16), dt in [1e-3, 1e-1] through an inverse-softplus bias, A_log = log(1..N),
D = 1). Each scan direction owns its conv1d, x_proj, dt_proj, A_log and D (VideoMamba / Vim
"v2"); the in and out projections are shared.

    uni   one causal scan in raster order (ARM pre-training)
    bi    forward + backward in raster order (VideoMamba, Vim)
    quad  forward + backward over rows and over columns (ARM fine-tuning, VMamba)

A backward direction runs as an anti-causal convolution plus a reversed scan, so no flipped
copies of the activations are made in the mixer.

Layout: inside the mixer the activations live as (E, batch x L) matrices, the layout in which
the in, x, dt and out projections produce and consume them with no transposed copies, and which
the convolution and the scan read in place (time contiguous), and in which the gradients come
back (vjm/ops/channel_major.py). The modules see them as (batch, E, L) views.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from vjm.ops import scan_direction
from vjm.ops.channel_major import in_projection, out_projection

SCAN_DIRECTIONS = {
    "uni": (("rows", False),),
    "bi": (("rows", False), ("rows", True)),
    "quad": (("rows", False), ("rows", True), ("cols", False), ("cols", True)),
}


def no_weight_decay(param: nn.Parameter) -> nn.Parameter:
    """Tag a parameter that the optimiser must not decay (mamba_ssm's convention)."""
    param._no_weight_decay = True
    return param


class ScanDirection(nn.Module):
    """The per-direction parameters of a Mamba mixer and the scan over one ordering."""

    def __init__(self, d_inner: int, d_state: int, d_conv: int, dt_rank: int, reverse: bool,
                 dt_min: float, dt_max: float, dt_init_floor: float):
        super().__init__()
        self.reverse, self.d_state, self.dt_rank = reverse, d_state, dt_rank
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)

        nn.init.uniform_(self.dt_proj.weight, -(dt_rank**-0.5), dt_rank**-0.5)
        dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():  # bias = softplus^-1(dt)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True  # model-level init must keep this

        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
        self.A_log = no_weight_decay(nn.Parameter(torch.log(A)))
        self.D = no_weight_decay(nn.Parameter(torch.ones(d_inner)))

    def forward(self, x: torch.Tensor, z: torch.Tensor, backend: str) -> torch.Tensor:
        """x, z: (B, d_inner, L) in this direction's ordering -> y: (B, d_inner, L); `backend` is
        vjm.ops.scan_direction's (the Triton one is a single autograd node, in x's layout)."""
        # The SSM parameters in fp32 whatever the module's dtype (no-ops for fp32 parameters).
        A_log, D, dt_bias = self.A_log.float(), self.D.float(), self.dt_proj.bias.float()
        return scan_direction(x, z, self.conv1d.weight.squeeze(1), self.conv1d.bias, self.x_proj.weight,
                              self.dt_proj.weight, A_log, D, dt_bias, self.reverse, self.dt_rank, backend)


class MambaMixer(nn.Module):
    """Mamba over a token sequence (B, L, D) -> (B, L, D) with `scan` in uni, bi or quad."""

    def __init__(self, dim: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | str = "auto", scan: str = "bi", merge: str = "mean",
                 dt_min: float = 1e-3, dt_max: float = 1e-1, dt_init_floor: float = 1e-4,
                 bias: bool = False, scan_backend: str = "auto"):
        super().__init__()
        if scan not in SCAN_DIRECTIONS:
            raise ValueError(f"MambaMixer: scan must be one of {sorted(SCAN_DIRECTIONS)}, got {scan!r}")
        if merge not in ("mean", "sum"):
            raise ValueError(f"MambaMixer: merge must be 'mean' or 'sum', got {merge!r}")
        self.scan, self.merge, self.scan_backend = scan, merge, scan_backend
        d_inner = expand * dim
        dt_rank = math.ceil(dim / 16) if dt_rank == "auto" else int(dt_rank)
        self.in_proj = nn.Linear(dim, 2 * d_inner, bias=bias)
        self.directions = nn.ModuleList(
            ScanDirection(d_inner, d_state, d_conv, dt_rank, reverse, dt_min, dt_max, dt_init_floor)
            for _, reverse in SCAN_DIRECTIONS[scan]
        )
        self.out_proj = nn.Linear(d_inner, dim, bias=bias)
        self.out_proj.weight._is_residual_out = True  # rescaled by depth at model init

    def forward(self, tokens: torch.Tensor, col_order: torch.Tensor | None = None) -> torch.Tensor:
        """tokens: (B, L, D) in raster order. col_order: (B, L) positions of the tokens in
        column-major order, needed by the quad scan only."""
        x, z = in_projection(tokens, self.in_proj.weight, self.in_proj.bias)  # each (B, E, L), time contiguous
        outputs = []
        for direction, (ordering, _) in zip(self.directions, SCAN_DIRECTIONS[self.scan]):
            if ordering == "rows":
                outputs.append(direction(x, z, self.scan_backend))
                continue
            if col_order is None:
                raise ValueError("MambaMixer: the quad scan needs col_order (the column-major token order)")
            index = col_order.unsqueeze(1).expand(-1, x.shape[1], -1)
            y_cols = direction(x.gather(2, index), z.gather(2, index), self.scan_backend)
            outputs.append(torch.empty_like(y_cols).scatter_(2, index, y_cols))
        y = outputs[0]
        for more in outputs[1:]:
            y = y + more
        # The mean of the directions, folded into the (small) projection weight.
        scale = 1 / len(outputs) if self.merge == "mean" else 1
        return out_projection(y, self.out_proj.weight, self.out_proj.bias, scale)


def expand_uni_state_dict(uni_state: dict[str, torch.Tensor], scan: str) -> dict[str, torch.Tensor]:
    """Initialise a bi/quad model from a uni (1-scan) checkpoint, as ARM does for fine-tuning:
    every direction of a mixer starts from the single pre-trained direction."""
    num = len(SCAN_DIRECTIONS[scan])
    expanded = {}
    for key, value in uni_state.items():
        if ".directions.0." in key:
            for k in range(num):
                expanded[key.replace(".directions.0.", f".directions.{k}.")] = value.clone()
        elif ".directions." in key:
            raise ValueError(f"expand_uni_state_dict: {key!r} is not from a uni (1-scan) model")
        else:
            expanded[key] = value
    return expanded
