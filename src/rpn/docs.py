"""Where the documentation is, for the command line's ``--help``.

The guide is the README; the reference is ``docs/``: ``cli.md`` (every
command and option), ``settings.md`` (every setting), ``formats.md`` (the
files), ``tuning.md``. An installed package carries them: the wheel
installs them as data files under ``<prefix>/share/doc/rpn/`` (``prefix``
the environment's, ``sys.prefix``), and a source checkout (an editable
install, ``make``) has them beside ``src/``. ``make docs`` builds them,
with an API reference from the docstrings, into a site under
``build/docs/html/``. :func:`docs_folder` finds them; :func:`epilog` is the
line every ``--help`` ends with.
"""
import os
import sys

__all__ = ["docs_folder", "epilog", "DOC_FILES"]

#: The reference pages, in ``docs/``.
DOC_FILES = ("cli.md", "settings.md", "formats.md", "tuning.md", "chapter.md")
_INSTALLED = os.path.join("share", "doc", "rpn")


def docs_folder(prefixes=None, *, source=True):
    """The folder holding ``cli.md`` and the other pages, or ``None``: the
    source checkout's ``docs/`` when the package runs from one (and
    ``source``), else ``share/doc/rpn`` under the first of ``prefixes``
    (default ``sys.prefix`` and ``sys.base_prefix``) that has it."""
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.path.join(here, "..", "..", "docs")] if source else []
    candidates += [os.path.join(p, _INSTALLED)
                   for p in (prefixes or (sys.prefix, sys.base_prefix))]
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, "cli.md")):
            return os.path.normpath(folder)
    return None


def epilog(page="cli.md"):
    """The line ``--help`` ends with: where ``page`` (every option) and the
    other pages are on this machine."""
    folder = docs_folder()
    if folder is None:
        return (f"Documentation: docs/{page} (every option), docs/settings.md and "
                "docs/formats.md of rpn's source distribution (not found here).")
    return (f"Documentation: {os.path.join(folder, page)} (every option); beside it "
            "settings.md (every setting of --set) and formats.md (the files).")
