"""Network definitions (torch modules only: no training loops, no xarray)."""

from __future__ import annotations

from .generators import (
    GENERATORS,
    DecoderGenerator,
    GeneratorName,
    MemberConv2d,
    MemberLatentToMap,
    MemberNorm,
    StudyGenerator,
    build_generator,
    count_parameters,
)

__all__ = [
    "GENERATORS",
    "DecoderGenerator",
    "GeneratorName",
    "MemberConv2d",
    "MemberLatentToMap",
    "MemberNorm",
    "StudyGenerator",
    "build_generator",
    "count_parameters",
]
