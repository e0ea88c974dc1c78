"""The chapter's notebook runs from top to bottom on the package, and is
stored executed with outputs that come from the code in its cells."""
import base64
import importlib.util
import os

import nbformat
from nbclient import NotebookClient

NOTEBOOK = os.path.join(os.path.dirname(__file__), "..", "notebooks", "rpn.ipynb")
_SPEC = importlib.util.spec_from_file_location(
    "execute_notebook", os.path.join(os.path.dirname(NOTEBOOK), "execute.py"))
execute_notebook = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(execute_notebook)
NOTEBOOK_PARAMETERS = """
batch_size, size, num_epochs = 8, 64, 1
backbone_lr = output_lr = 0.1
voc_dir = '/nonexistent/VOC2012'
num_train, num_val = 16, 8
"""


def test_notebook_executes_with_small_parameters(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    nb.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(NOTEBOOK_PARAMETERS))
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = "".join(str(o.get("text", "")) for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []))
    assert "using the synthetic set" in outputs
    assert "positive:" in outputs and "train class err" in outputs
    assert "pooled features: (" in outputs
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors


def test_the_notebook_is_stored_executed_from_the_code_in_its_cells():
    """Every code cell ran, and ran the source it holds now: a cell edited
    after the notebook was executed fails here (run notebooks/execute.py)."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    stale = execute_notebook.stale_cells(nb)
    assert not stale, f"cells {stale} changed since the stored run: python notebooks/execute.py"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))   # in order
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(str(o.get("text", "")) for o in outputs)
    assert "using the synthetic set" in text and "train class err" in text
    assert "pooled features: (" in text
    assert nb.metadata["rpn"]["executed"]["seconds"] > 0


def test_the_stored_pictures_are_small_pngs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    pictures = [o.data for c in nb.cells if c.cell_type == "code" for o in c.outputs
                if "data" in o and any(k.startswith("image/") for k in o.data)]
    assert len(pictures) >= 3          # anchors, the training curves, the proposals
    for data in pictures:
        assert "image/svg+xml" not in data
        assert base64.b64decode(data["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(NOTEBOOK) < 1_000_000


def test_the_first_cell_says_the_settings_of_the_stored_run():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    first = nb.cells[0].source
    assert "stored **executed**" in first and "few minutes" in first
    assert "4 epochs over 480 images" in first and "256 x 256" in first
    parameters = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])][0]
    assert "batch_size, size, num_epochs = 32, 256, 4" in parameters.source
    assert "num_train, num_val = 480, 128" in parameters.source


def test_an_edited_cell_is_found_stale():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    assert execute_notebook.stale_cells(nb) == []
    nb.cells[code[2]].source += "\nprint('new')"
    del nb.cells[code[4]].metadata["rpn"]
    assert execute_notebook.stale_cells(nb) == [code[2], code[4]]
    assert execute_notebook.cell_hash(["a\n", "b"]) == execute_notebook.cell_hash("a\nb")
