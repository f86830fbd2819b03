"""Encoders, their building blocks, and the registry that builds them by name."""

from . import videomamba, vit  # noqa: F401  (register the named sizes)
from .blocks import MambaBlock, MambaMLPBlock
from .cluster_decoder import ClusterDecoder
from .mamba import MambaMixer, expand_uni_state_dict
from .patch_embed import PatchEmbed3D
from .pos_embed import sincos_3d
from .predictor import Predictor
from .factory import build_encoder
from .exported import load_exported, save_exported
from .registry import build, list_models, model_arguments, register_model
from .videomamba import VideoMamba
from .vit import VisionTransformer

__all__ = [
    "build", "build_encoder", "load_exported", "save_exported", "list_models", "model_arguments", "register_model",
    "VideoMamba", "VisionTransformer", "MambaMixer", "MambaBlock", "MambaMLPBlock", "ClusterDecoder", "Predictor",
    "PatchEmbed3D", "sincos_3d", "expand_uni_state_dict",
]
