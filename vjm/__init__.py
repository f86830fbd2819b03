"""vjm: video-first self-supervised representation learning with state-space models."""

__version__ = "0.1.0"
