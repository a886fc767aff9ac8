"""Sphinx configuration of kwapi's documentation (``make docs`` builds it into build/docs)."""

from __future__ import annotations

import sys
from pathlib import Path

# The version comes from the source tree, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import kwapi

project = "kwapi"
author = "kwapi contributors"
copyright = "kwapi contributors"
version = release = kwapi.__version__

root_doc = "index"
source_suffix = {".rst": "restructuredtext"}
# Literal blocks are shell sessions, configuration files and bus dumps, not Python.
highlight_language = "none"
# Warn about every reference whose target does not exist (``make docs`` makes warnings errors).
nitpicky = True

html_theme = "alabaster"
html_title = f"kwapi {version}"
html_show_sourcelink = False
