"Every notebook in nbs/ runs from top to bottom without an error, in a temporary folder, on this test run's Python"
from pathlib import Path
import pytest
import nbformat
from nbclient import NotebookClient
from conftest import kernel_spec

NBS = sorted((Path(__file__).parent.parent/'nbs').glob('*.ipynb'))

@pytest.fixture(scope='module')
def kernel(tmp_path_factory):
    "A kernel spec for this interpreter, found first on JUPYTER_PATH: a user's own 'python3' kernel cannot stand in"
    yield from kernel_spec(tmp_path_factory, 'fastinterp-tests')

def test_the_notebooks_are_there():
    assert [p.name for p in NBS] == ['01_logits_vs_probabilities.ipynb', '02_interpreting_a_classifier.ipynb',
                                     '03_tta_and_calibration.ipynb', '04_cleaning_and_abstaining.ipynb',
                                     '05_segmentation_and_tables.ipynb']

@pytest.mark.parametrize('path', NBS, ids=[p.stem for p in NBS])
def test_notebook_runs(path, kernel, tmp_path):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name=kernel, resources={'metadata': {'path': str(tmp_path)}}).execute()  # raises on an error
    assert list(tmp_path.iterdir()) == []  # the notebooks write into the system's temporary folder, nothing beside them

@pytest.mark.parametrize('path', NBS, ids=[p.stem for p in NBS])
def test_notebook_is_saved_with_its_outputs(path):
    "A reader on GitHub sees what the text describes: every code cell run once, in order, without an error; every plot drawn"
    code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == 'code']
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    assert not [o for c in code for o in c.outputs if o.output_type == 'error']
    for c in code:
        if '.plot_' in c.source: assert any('image/png' in o.get('data', {}) for o in c.outputs), c.source
