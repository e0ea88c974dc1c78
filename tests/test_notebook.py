"""The chapter's notebook runs from top to bottom on the package."""
import os

import nbformat
from nbclient import NotebookClient

NOTEBOOK = os.path.join(os.path.dirname(__file__), "..", "notebooks", "rpn.ipynb")
SMALL = """
batch_size, size, num_epochs = 8, 64, 1
backbone_lr = output_lr = 0.1
voc_dir = '/nonexistent/VOC2012'
num_train, num_val = 16, 8
"""


def test_notebook_executes_with_small_parameters(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    nb.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(SMALL))
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
