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
from .sr import (
    DBPN,
    EDSR,
    RDN,
    SR_MODELS,
    SRCNN,
    DenseUNet,
    LapSRN,
    SRDenseNet,
    SRModel,
    SRModelName,
    build_sr_model,
)

__all__ = [
    "DBPN",
    "EDSR",
    "GENERATORS",
    "RDN",
    "SRCNN",
    "SR_MODELS",
    "DecoderGenerator",
    "DenseUNet",
    "GeneratorName",
    "LapSRN",
    "MemberConv2d",
    "MemberLatentToMap",
    "MemberNorm",
    "SRDenseNet",
    "SRModel",
    "SRModelName",
    "StudyGenerator",
    "build_generator",
    "build_sr_model",
    "count_parameters",
]
