"""Downscaling methods: one module per family behind a registry."""

from __future__ import annotations

from .base import Method
from .pipeline import downscale_array
from .registry import get_method, list_methods, register_method

__all__ = ["Method", "downscale_array", "get_method", "list_methods", "register_method"]
