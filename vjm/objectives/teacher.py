"""A frozen teacher from a vjm checkpoint, and how its tokens meet a student's (MFD).

    teacher, info = load_teacher("runs/mae_tiny/latest.pt", which=None)   # frozen, eval mode
    record = TeacherRecord(info.fingerprint, info.checkpoint)   # what the student's checkpoints keep: 16 bytes
    tokens = match_grid(teacher_tokens, teacher_grid, student_grid)

The teacher is any encoder of any vjm checkpoint (V-JEPA's target encoder, an MAE or supervised
encoder) or an exported one, read with weights_only loading (vjm.eval.frozen). Its weights are
never written into the student's checkpoints: a student checkpoint holds only the teacher's path
(in its config) and a fingerprint of its weights, and a resume whose teacher file no longer holds
those weights is refused.

Widths may differ: the student's head projects to the teacher's width. Token grids may differ only
when the config says how to match them (``grid_match: pool``: the teacher's grid is a whole
multiple of the student's in every dimension, and its tokens are averaged over each student token's
extent, e.g. a patch-8 teacher for a patch-16 student).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from vjm.config import ConfigError, ModelConfig

if TYPE_CHECKING:
    from vjm.eval.frozen import EncoderInfo

GRID_MATCHES = ("same", "pool")
FINGERPRINT_CHARS = 16  # vjm.eval.features.encoder_fingerprint: 16 hex digits


def load_teacher(checkpoint: str | os.PathLike, which: str | None) -> tuple[nn.Module, EncoderInfo]:
    """The frozen encoder ``which`` of ``checkpoint`` (None = its objective's default) and what it is."""
    from vjm.eval.frozen import load_frozen_encoder  # vjm.eval imports the objectives

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(
            f"'objective.teacher.checkpoint' = {str(checkpoint)!r}: no such file. MFD distils a trained vjm encoder: "
            "train one first (e.g. python -m launch.local --fname configs/mae_tiny.yaml --devices cpu) and point the "
            "key at its checkpoint (runs/mae_tiny/latest.pt)")
    return load_frozen_encoder(path, which)


class TeacherRecord(nn.Module):
    """The teacher's fingerprint as a buffer, so that it travels in the student's checkpoints (16 bytes,
    not the teacher's weights) and a resume with another teacher is refused when it is loaded."""

    def __init__(self, fingerprint: str, checkpoint: str):
        super().__init__()
        if len(fingerprint) != FINGERPRINT_CHARS:
            raise ValueError(f"a teacher fingerprint has {FINGERPRINT_CHARS} hex digits, got {fingerprint!r}")
        self.checkpoint = checkpoint
        self.register_buffer("fingerprint", torch.tensor(list(fingerprint.encode()), dtype=torch.uint8))

    @staticmethod
    def text(fingerprint: torch.Tensor) -> str:
        return bytes(fingerprint.cpu().tolist()).decode(errors="replace")

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        saved = state_dict.get(prefix + "fingerprint")
        if saved is not None and not torch.equal(saved.cpu(), self.fingerprint.cpu()):
            raise ValueError(
                f"the teacher changed: this run was trained with a teacher whose weights have fingerprint "
                f"{self.text(saved)}, but 'objective.teacher.checkpoint' ({self.checkpoint}) now holds weights of "
                f"fingerprint {self.text(self.fingerprint)}. Put back the teacher file the run started with, or "
                "start a new run folder (run.folder) to train a student of this teacher")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


def grid_problem(teacher_grid: tuple[int, int, int], student_grid: tuple[int, int, int], match: str) -> str | None:
    """Why the teacher's tokens cannot be matched to the student's under ``match``, or None."""
    if teacher_grid == student_grid:
        return None
    if match == "same":
        return (f"the teacher's token grid (T', H', W') = {teacher_grid} differs from the student's {student_grid}; "
                "set 'objective.grid_match: pool' to average the teacher's tokens over each student token (its grid "
                "must be a whole multiple of the student's), or give the student the teacher's patch and tubelet "
                "sizes ('model.patch_size', 'model.tubelet_size')")
    if any(t % s for t, s in zip(teacher_grid, student_grid)):
        return (f"'objective.grid_match' = 'pool' averages the teacher's tokens over each student token, but the "
                f"teacher's grid {teacher_grid} is not a whole multiple of the student's {student_grid} in every "
                "dimension; use a teacher with a finer or equal patch and tubelet that divide the student's")
    return None


def match_grid(tokens: torch.Tensor, teacher_grid: tuple[int, int, int],
               student_grid: tuple[int, int, int]) -> torch.Tensor:
    """Teacher tokens (B, T*H*W, D) on its grid -> (B, student tokens, D) in raster order: unchanged on
    equal grids, else the mean over each student token's block of teacher tokens."""
    if teacher_grid == student_grid:
        return tokens
    batch, _, width = tokens.shape
    volume = tokens.transpose(1, 2).reshape(batch, width, *teacher_grid)
    kernel = tuple(t // s for t, s in zip(teacher_grid, student_grid))
    return F.avg_pool3d(volume.float(), kernel).flatten(2).transpose(1, 2).to(tokens.dtype)


def saved_model_section(checkpoint: str | os.PathLike) -> dict | None:
    """The model section a teacher file was trained with, read without its weights (the config's
    check of the token grids); None when the file is missing or unreadable: building the objective
    then says why."""
    from vjm.models.exported import exported_metadata, is_exported
    from vjm.train.checkpoint import load_checkpoint

    path = Path(checkpoint)
    if not path.is_file():
        return None
    try:
        if is_exported(path):
            return json.loads(exported_metadata(path)["model"])
        model = load_checkpoint(path, mmap=True)["config"]["model"]
        return model if isinstance(model, dict) else None
    except (ValueError, KeyError, TypeError, OSError):  # json's errors are ValueErrors
        return None


def config_grid_problem(model: dict, frames: int, crop_size: int, student_grid: tuple[int, int, int],
                        match: str) -> str | None:
    """grid_problem for the teacher a saved model section describes, on clips of the config's size."""
    from vjm.masks import token_grid

    defaults = ModelConfig()
    try:
        teacher_grid = token_grid(frames, crop_size, model.get("patch_size", defaults.patch_size),
                                  model.get("tubelet_size", defaults.tubelet_size))
    except ValueError:
        return None  # clips the teacher cannot embed: building the objective says so
    return grid_problem(teacher_grid, student_grid, match)


def check_grids(teacher: nn.Module, clip_shape: tuple[int, ...], student_grid: tuple[int, int, int],
                match: str) -> tuple[int, int, int]:
    """The teacher's token grid of clips of ``clip_shape``; a ConfigError when it cannot meet the student's."""
    teacher_grid = tuple(teacher.patch_embed.grid(clip_shape))
    problem = grid_problem(teacher_grid, student_grid, match)
    if problem is not None:
        raise ConfigError(f"objective 'mfd': {problem}")
    return teacher_grid
