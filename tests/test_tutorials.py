"""The tutorial notebooks of the four practicals (docs/tutorials/) run from top to bottom.

Each notebook starts its practical, walks through the parts with attnlab's blocks, runs the
checker on the skeleton (every part fails), on the reference solutions (every part passes)
and on a planted mistake (its hint), and ends with a short training run. The notebooks
assert those exit statuses themselves, so a cell that fails fails the test. They are kept
without outputs in the repository; together they take about three minutes on 2 cores.
"""

import json
import re
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).parent.parent / "docs" / "tutorials"
PRACTICALS = ("encoder", "attention", "decoder", "llama")
# the mistake each notebook plants, and the words of the checker's hint for it
HINTS = {
    "encoder": "not scaled",
    "attention": "wrong axis",
    "decoder": "off by one",
    "llama": "heads are tiled",
}


def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


@pytest.mark.parametrize("name", PRACTICALS)
def test_a_tutorial_is_stored_without_outputs(name):
    notebook = json.loads((TUTORIALS / f"{name}.ipynb").read_text())
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code and all(not c["outputs"] and c["execution_count"] is None for c in code)


@pytest.mark.slow
@pytest.mark.parametrize("name", PRACTICALS)
def test_a_tutorial_runs_to_the_checker_and_a_training_run(name, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("MPLBACKEND", "Agg")  # the kernel inherits the environment
    notebook = nbformat.read(TUTORIALS / f"{name}.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # raises CellExecutionError if a cell (or one of its asserts) fails
    cells = [c for c in notebook.cells if c.cell_type == "code"]
    text = "\n".join(_stdout(c) for c in cells)
    passed = re.findall(r"(\d+) of (\d+) parts pass", text)
    assert ("0", passed[0][1]) == passed[0]  # the skeleton: nothing written yet
    assert passed[1][0] == passed[1][1] != "0"  # the reference solutions pass every part
    assert int(passed[2][0]) < int(passed[2][1])  # the planted mistake is caught...
    assert re.search(rf"✗ .*{HINTS[name]}", text)  # ...and named
    assert any("image/png" in o.get("data", {}) for c in cells for o in c.outputs)
