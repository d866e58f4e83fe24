"""Darknet .cfg + .weights: offsets followed through the cfg, pairs that do not belong together."""

from __future__ import annotations

import shutil

import pytest
from conftest import FIXTURES

import filtergrid
from filtergrid.errors import CorruptFileError, UnknownFormatError

BN = FIXTURES / "darknet" / "tiny_bn"


def _copy(tmp_path, stem: str = "net"):
    for suffix in (".cfg", ".weights"):
        shutil.copy(BN.with_suffix(suffix), tmp_path / f"{stem}{suffix}")
    return tmp_path / f"{stem}.cfg", tmp_path / f"{stem}.weights"


def test_the_weights_file_is_the_model_and_its_cfg_points_there():
    bank = filtergrid.load(BN.with_suffix(".weights"))
    assert bank.provenance.format == "darknet" and bank.provenance.tensor == "0.weights"
    with pytest.raises(UnknownFormatError, match="part of the model 'tiny_bn.weights': open that file"):
        filtergrid.load(BN.with_suffix(".cfg"))
    assert filtergrid.load(BN.with_suffix(".cfg"), format="darknet").provenance.tensor == "0.weights"


def test_batch_norm_parameters_sit_between_biases_and_weights():
    names = [t.name for t in filtergrid.tensors(BN.with_suffix(".weights"))]
    assert names[:5] == ["0.biases", "0.scales", "0.rolling_mean", "0.rolling_variance", "0.weights"]


def test_weights_without_their_cfg_are_not_guessed(tmp_path):
    shutil.copy(BN.with_suffix(".weights"), tmp_path / "alone.weights")
    with pytest.raises(UnknownFormatError, match="suffix says darknet"):
        filtergrid.load(tmp_path / "alone.weights")


def test_cfg_and_weights_of_different_nets_are_refused(tmp_path):
    cfg, weights = _copy(tmp_path)
    cfg.write_text(cfg.read_text().replace("filters=4", "filters=5"))
    with pytest.raises(CorruptFileError, match="do not belong together"):
        filtergrid.load(weights)


def test_listing_stops_where_the_cfg_cannot_be_followed(tmp_path):
    cfg, weights = _copy(tmp_path)
    cfg.write_text(cfg.read_text().replace("[maxpool]", "[route]\nlayers=-1\n\n[maxpool]"))
    names = [t.name for t in filtergrid.tensors(weights)]
    assert names[-1] == "0.weights"
    assert filtergrid.load(weights).provenance.tensor == "0.weights"


def test_a_huge_filter_count_is_refused_before_reading(tmp_path):
    cfg, weights = _copy(tmp_path)
    cfg.write_text(cfg.read_text().replace("filters=8", "filters=99999999", 1))
    with pytest.raises(CorruptFileError, match="out of range"):
        filtergrid.load(weights)
