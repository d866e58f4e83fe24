"""scikit-learn pickles and joblib files: arrays rebuilt by stand-ins, nothing in the file runs."""

from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest
from conftest import FIXTURES

import filtergrid
from filtergrid.converters import detect
from filtergrid.converters import sklearn as skl
from filtergrid.errors import CorruptFileError, TensorNotFoundError, UnsafeFileError

MLP = FIXTURES / "sklearn" / "mlp_digits.joblib"


def test_role_says_the_image_shape_is_inferred_from_the_feature_count():
    bank = filtergrid.load(FIXTURES / "sklearn" / "mlp_28x28.joblib")
    assert bank.shape == (9, 28, 28, 1)
    assert "784 features drawn as a 28x28x1 image by their count only" in bank.provenance.chosen_by


def test_pipeline_finds_the_mlp_after_its_scaler():
    names = [t.name for t in filtergrid.tensors(FIXTURES / "sklearn" / "pipeline_digits.joblib")]
    assert names[:2] == ["coefs_.0", "coefs_.1"]


def test_joblib_and_pickle_of_the_same_model_agree():
    joblib_bank = filtergrid.load(MLP)
    pickle_bank = filtergrid.load(FIXTURES / "sklearn" / "mlp_digits.pkl")
    np.testing.assert_array_equal(joblib_bank.array, pickle_bank.array)


def test_unknown_name_is_tensor_not_found():
    with filtergrid.open_model(MLP) as (_, reader), pytest.raises(TensorNotFoundError, match="coefs_.0"):
        reader.read("coefs_.9")


class _Evil:
    def __reduce__(self):
        import os
        return os.system, ("echo pwned",)


def test_code_in_a_sklearn_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"sklearn.neural_network": _Evil()}, protocol=4))
    assert detect(path).name == "sklearn"
    with pytest.raises(UnsafeFileError, match="system"):
        skl.open(path)


def test_truncated_joblib_array_is_corrupt(tmp_path):
    data = MLP.read_bytes()
    path = tmp_path / "cut.joblib"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CorruptFileError):
        filtergrid.load(path)


def test_a_pickle_without_weights_says_so(tmp_path):
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"sklearn.version": "1.0", "coefs": [np.ones((4, 4))]}, protocol=4))
    with pytest.raises(CorruptFileError, match="no estimator with weights"):
        skl.open(path)


def test_features_that_are_no_image_become_a_matrix(tmp_path, monkeypatch):
    path = _estimator_file(tmp_path, monkeypatch, coef_=np.arange(30, dtype=np.float64).reshape(3, 10))
    with filtergrid.open_model(path, format="sklearn") as (_, reader):
        (info,) = reader.tensors()
    assert info.layout == "OI" and "10 features are no square image" in info.role
    assert filtergrid.load(path, format="sklearn").kind == "matrix"


def test_object_arrays_are_refused(tmp_path, monkeypatch):
    path = _estimator_file(tmp_path, monkeypatch, coef_=np.array([[1, "x"]], dtype=object))
    with pytest.raises(UnsafeFileError, match="dtype"):
        skl.open(path)


class Linear:
    """Pickles like an estimator: a class named by module and a state dict with coef_."""


def _estimator_file(tmp_path, monkeypatch, **state):
    module = types.ModuleType("fake_estimators")
    module.Linear = Linear
    monkeypatch.setattr(Linear, "__module__", module.__name__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    estimator = Linear()
    estimator.__dict__.update(state)
    path = tmp_path / "estimator.pkl"
    path.write_bytes(pickle.dumps(estimator, protocol=4))
    return path
