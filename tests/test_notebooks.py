"""The notebooks run top to bottom on small settings (ATLAS_JAX_NOTEBOOK_SMALL=1), and are stored without outputs."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_four_notebooks_stored_without_outputs():
    assert [p.stem for p in NOTEBOOKS] == ["01_chinchilla_replication", "02_plan_multilingual", "03_benchmark_speed",
                                            "04_design_campaigns"]
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip the outputs"


def run_notebook(path, monkeypatch):
    monkeypatch.setenv("ATLAS_JAX_NOTEBOOK_SMALL", "1")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name}: no figure rendered"


# The notebooks run last (conftest.LAST) and take about 70 s together: two classes, which pytest-xdist
# (--dist loadscope) hands to two workers, so that neither waits for the other at the end.
class TestNotebooksOdd:
    @pytest.mark.parametrize("path", NOTEBOOKS[0::2], ids=lambda p: p.stem)
    def test_notebook_runs(self, path, monkeypatch):
        run_notebook(path, monkeypatch)


class TestNotebooksEven:
    @pytest.mark.parametrize("path", NOTEBOOKS[1::2], ids=lambda p: p.stem)
    def test_notebook_runs(self, path, monkeypatch):
        run_notebook(path, monkeypatch)
