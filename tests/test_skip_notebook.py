"""labkit.runtime.skip_rest_of_notebook: a chapter whose prerequisite is missing ends cleanly."""
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from labkit.runtime import skip_rest_of_notebook


def test_later_cells_do_not_run(tmp_path):
    nb = new_notebook(cells=[
        new_code_cell("from labkit.runtime import skip_rest_of_notebook\nran = []\n"
                      "skip_rest_of_notebook('the model is not built: run make real-model')"),
        new_code_cell("raise RuntimeError('must not run')"),
        new_code_cell("print('nor this')"),
    ])
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    assert nb.cells[0].outputs[0]["text"].startswith("the model is not built")
    assert nb.cells[1].outputs == [] and nb.cells[2].outputs == []


def test_outside_ipython_it_raises():
    with pytest.raises(RuntimeError, match="not built"):
        skip_rest_of_notebook("not built")
