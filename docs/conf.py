"""Sphinx configuration of the xsr documentation.

Build (as CI does): ``python -m sphinx -W --keep-going -q -b html docs docs/_build/html``.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# document the checkout this file belongs to, installed or not
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

project = "xsr"
author = "xsr developers"
copyright = "2026, xsr developers"
try:
    release = version("xsr")
except PackageNotFoundError:  # pragma: no cover - docs built from a bare source tree
    release = "0.0.0+unknown"
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# MyST: $...$ and $$...$$ maths, ::: fences
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# numpydoc-style docstrings through napoleon
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_ivar = True  # "Attributes" as fields, not duplicate attribute entries
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the docstrings give the types, with shapes

html_theme = "alabaster"
html_title = f"xsr {release}"
html_theme_options = {
    "description": "Exactly conservative super-resolution for xarray grids",
    "fixed_sidebar": True,
}
