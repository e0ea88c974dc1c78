"""Execute ``notebooks/rpn.ipynb`` and store it with its outputs, as learners
read it on GitHub: ``python notebooks/execute.py`` (``make notebook``).

The notebook runs as written (its parameters cell holds settings that take
a few minutes on a CPU, and its first cell says so), in its own folder, on
the package importable from this environment. Each code cell's metadata
then records the SHA-256 of the source it ran (``rpn.source_sha256``), and
the notebook's metadata what ran it (``rpn.executed``: versions, seconds).
:func:`stale_cells` lists the code cells whose source no longer matches
what ran: ``tests/test_notebook.py`` fails on any, so that stored outputs
never come from code that is no longer there (edit a cell, execute again).

Figures are stored as PNG at :data:`DPI` dots an inch (d2l draws SVG, which
is several times larger): the kernel starts with d2l's SVG switch pointed
at PNG. That changes how figures are stored, not what the code does.
``--check`` only reports stale cells (exit 1 when there are some).
"""
import argparse
import hashlib
import os
import platform
import sys
import time

__all__ = ["NOTEBOOK", "DPI", "cell_hash", "stale_cells", "execute", "main"]

NOTEBOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rpn.ipynb")
#: Dots an inch of the stored figures.
DPI = 72

# run in the kernel before the notebook: PNG figures at DPI (d2l asks for SVG)
_STARTUP = [
    "import matplotlib_inline.backend_inline as _backend",
    "_backend.set_matplotlib_formats('png')",
    f"import matplotlib as _mpl; _mpl.rcParams['figure.dpi'] = {DPI}",
    "from d2l import mxnet as _d2l",
    "_d2l.use_svg_display = lambda: _backend.set_matplotlib_formats('png')",
]


def cell_hash(source):
    """The SHA-256 of a cell's source (a string, or nbformat's list of lines)."""
    text = source if isinstance(source, str) else "".join(source)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stale_cells(nb):
    """Indices of the code cells whose source differs from the source their
    stored outputs came from (or that record none)."""
    return [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            and cell.metadata.get("rpn", {}).get("source_sha256") != cell_hash(cell.source)]


def execute(path=NOTEBOOK, *, timeout=1800):
    """Execute the notebook at ``path`` in its folder and write it back with
    its outputs and the source hashes. Returns the seconds it took."""
    import mxnet
    import nbformat
    from nbclient import NotebookClient
    import rpn
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", record_timing=False,
        resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}},
        extra_arguments=[f"--IPKernelApp.exec_lines={_STARTUP!r}"])
    tic = time.time()
    client.execute()
    seconds = round(time.time() - tic)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.metadata["rpn"] = {"source_sha256": cell_hash(cell.source)}
    nb.metadata["rpn"] = {"executed": {
        "seconds": seconds, "rpn": getattr(rpn, "__version__", "?"),
        "mxnet": mxnet.__version__, "python": platform.python_version(),
        "machine": f"{os.cpu_count()} CPU cores"}}
    nbformat.write(nb, path)
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="only list the code cells whose source changed since they ran")
    parser.add_argument("path", nargs="?", default=NOTEBOOK)
    args = parser.parse_args(argv)
    if args.check:
        import nbformat
        stale = stale_cells(nbformat.read(args.path, as_version=4))
        for i in stale:
            print(f"{args.path}: cell {i} changed since it ran: execute the notebook again "
                  "(python notebooks/execute.py)", file=sys.stderr)
        return 1 if stale else 0
    seconds = execute(args.path)
    print(f"{args.path}: executed in {seconds} s, outputs stored")
    return 0


if __name__ == "__main__":
    sys.exit(main())
