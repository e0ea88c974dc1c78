"""Sphinx configuration of rpn's documentation site (``make docs``).

The source folder is the repository's root, so that the README, ``docs/``
and the notebook are read where they are and their links between each
other work as on GitHub; ``include_patterns`` takes only those and this
folder's pages. The API reference is generated from the docstrings
(autosummary over every module of ``rpn``; NumPy-style sections through
napoleon). Sphinx rather than MkDocs: autodoc, autosummary and napoleon read
the package's NumPy-style docstrings and are kept with Sphinx itself, where
MkDocs needs a third-party plugin (mkdocstrings) for an API reference.
Built with warnings as errors:
``sphinx-build -W -c docs/site . build/docs/html``.
"""
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "src"))

import rpn  # noqa: E402  (the version, and autodoc imports it anyway)

project = "rpn"
author = "rpn's authors"
copyright = "rpn's authors, MIT licence"
release = version = rpn.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_nb",
]

root_doc = "docs/site/index"
include_patterns = ["README.md", "docs/*.md", "docs/site/**", "notebooks/rpn.ipynb",
                    "benchmarks/README.md", "benchmarks/results/quality.md"]
exclude_patterns = ["docs/site/conf.py", "**/.ipynb_checkpoints"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# the notebook is stored executed (make notebook): show its outputs, run nothing
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

autosummary_generate = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
napoleon_numpy_docstring = True
napoleon_google_docstring = False

html_theme = "furo"
html_title = f"rpn {release}"
html_static_path = []

# the docstrings cite the Faster R-CNN paper as the d2l book does
# (:cite:`Ren.He.Girshick.ea.2015`): shown as the key, in brackets
from docutils import nodes  # noqa: E402


def _cite(name, rawtext, text, lineno, inliner, options=None, content=None):
    return [nodes.inline(rawtext, f"[{text}]", classes=["citation"])], []


def setup(app):
    app.add_role("cite", _cite)
