"""Models from a user's file: loading, the errors that name the file, rebuilding from stored text."""

import pickle

import numpy as np
import pytest

from models import ModelError, ModelSource, OdeModel, get_model, simulate
from models.user import load_model_file, load_source, resolve_model_file

# A two-compartment model (depot A -> central X), as a user would write it in a file of their own.
MODEL_FILE = '''
from models import LogNormal, Observable, OdeModel, Parameter, State


def rhs(s, p, u, m):
    return {"A": -p.ka * s.A, "X": p.ka * s.A - p.ke * s.X}


TWO = OdeModel(
    name="two_compartments", title="depot and central compartment",
    equations="dA/dt = -ka A; dX/dt = ka A - ke X; A(0) = dose0, X(0) = 0",
    states=(State("A", "pg/mL", "depot"), State("X", "pg/mL", "central")),
    parameters=(Parameter("ka", "1/h", "absorption", LogNormal(1.0, 0.3)),
                Parameter("ke", "1/h", "elimination", LogNormal(0.3, 0.3)),
                Parameter("dose0", "pg/mL", "depot at 0 h", LogNormal(100.0, 0.3))),
    inputs=(), observables=(Observable("tracer", "X", "pg/mL"),),
    rhs=rhs, initial=lambda p, u, m: {"A": p.dose0, "X": 0.0},
)
NOT_A_MODEL = 3
'''


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "two.py"
    path.write_text(MODEL_FILE)
    return path


def test_a_model_file_loads_with_its_source_and_solves_exactly(model_file):
    model = get_model(f"{model_file}:TWO")
    assert isinstance(model, OdeModel) and model.name == "two_compartments"
    assert model.source == ModelSource(str(model_file.resolve()), "TWO", MODEL_FILE)
    assert get_model(f"{model_file}:TWO") is model  # loaded once per text: compiled once
    ka, ke, a0 = 1.2, 0.25, 80.0
    times = np.array([0.0, 0.5, 1.0, 2.0, 6.0])
    frame = simulate(model, {"ka": ka, "ke": ke, "dose0": a0}, times=times, rtol=1e-10, atol=1e-10)
    exact = a0 * ka / (ka - ke) * (np.exp(-ke * times) - np.exp(-ka * times))
    np.testing.assert_allclose(frame["X"], exact, rtol=1e-7, atol=1e-9)


def test_the_stored_text_rebuilds_the_model_without_the_file(model_file):
    source = load_model_file(f"{model_file}:TWO").source
    model_file.unlink()
    rebuilt = load_source(source)
    assert rebuilt.name == "two_compartments" and rebuilt.source == source
    # Pickled (for Dask workers) as its source: functions of a module run from text cannot be.
    copy = pickle.loads(pickle.dumps(rebuilt))
    assert copy.source == source
    assert copy.evaluate_rhs(np.array([2.0, 1.0]), np.array([0.5, 0.1, 1.0]))[0] == -1.0


def test_a_file_saved_by_a_windows_editor_loads_the_same_model(tmp_path, model_file):
    """A byte-order mark and CRLF line ends (as Notepad writes) change nothing but the file."""
    windows = tmp_path / "windows.py"
    windows.write_bytes(b"\xef\xbb\xbf" + MODEL_FILE.replace("\n", "\r\n").encode())
    model = load_model_file(f"{windows}:TWO")
    assert model.source.text == MODEL_FILE
    state, theta = np.array([2.0, 1.0]), np.array([0.5, 0.1, 1.0])
    expected = load_model_file(f"{model_file}:TWO").evaluate_rhs(state, theta)
    np.testing.assert_array_equal(model.evaluate_rhs(state, theta), expected)


def test_a_relative_model_file_is_relative_to_the_given_folder(tmp_path, model_file):
    assert resolve_model_file("two.py:TWO", tmp_path) == f"{model_file.resolve()}:TWO"
    assert resolve_model_file("gc_receptor", tmp_path) == "gc_receptor"


@pytest.mark.parametrize(
    ("text", "spec", "message"),
    [
        (None, "missing.py:TWO", r"missing.py: no such model file"),
        ("def rhs(s, p\n", "{file}:TWO", r"two.py: the model file failed to run: SyntaxError: "),
        ("raise RuntimeError('no data here')\n", "{file}:TWO",
         r"two.py: the model file failed to run: RuntimeError: no data here"),
        (MODEL_FILE, "{file}:THREE", r"two.py: defines no 'THREE' \(OdeModels it defines: \['TWO'\]\)"),
        (MODEL_FILE, "{file}:NOT_A_MODEL", r"two.py: NOT_A_MODEL is a int, not a models.OdeModel"),
        (MODEL_FILE.replace('"X": 0.0}', '"Y": 0.0}'), "{file}:TWO",
         r"two.py: the model file failed to run: ModelError: model two_compartments: initial must return"),
        (MODEL_FILE, "{file}", r"two.py: expected path/to/file.py:NAME"),
        ("import helper_of_mine\n", "{file}:TWO",
         r"ModuleNotFoundError: No module named 'helper_of_mine' \(results store only the model's one file"),
    ],
)
def test_a_file_without_a_valid_model_is_a_model_error_naming_it(tmp_path, text, spec, message):
    file = tmp_path / "two.py"
    if text is not None:
        file.write_text(text)
    with pytest.raises(ModelError, match=message):
        get_model(spec.format(file=file))


def test_a_model_file_may_import_a_module_beside_it(tmp_path):
    (tmp_path / "rates_of_mine.py").write_text("KA = 1.0\n")
    (tmp_path / "two.py").write_text("from rates_of_mine import KA\n" + MODEL_FILE)
    assert get_model(f"{tmp_path / 'two.py'}:TWO").name == "two_compartments"
