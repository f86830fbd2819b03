"""Sequence operators shared by every model: one selective scan, several backends."""

from .selective_scan import available_backends, resolve_backend, selective_scan

__all__ = ["selective_scan", "available_backends", "resolve_backend"]
