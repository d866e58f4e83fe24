"""The shared rules that decide which tensors can be a first layer (converters/base.py)."""

import pytest

from filtergrid.converters.base import is_weight, listing_by_name, natural_key
from filtergrid.layout import CHANNELS_FIRST


@pytest.mark.parametrize("name,shape,expected", [
    ("conv1.weight", (8, 3, 3, 3), True),
    ("lstm.weight_ih_l0", (1024, 40), True),
    ("conv1.bias", (8,), False),
    ("bn1.weight", (8, 8), False),
    ("embeddings.cls_token", (1, 1, 768), False),
    ("vit.embeddings.position_embeddings", (1, 197, 768), False),
    ("pos_embed", (1, 50, 64), False),
    ("model.0/kernel:0", (3, 3, 3, 16), True),
    ("layer.beta", (4, 4), False),
    ("tiny", (1, 1), False),
    ("lin.model.1.weight", (1, 64, 1, 1), True),
])
def test_is_weight(name, shape, expected):
    assert is_weight(name, shape) is expected


def test_natural_order():
    names = ["layers.10.weight", "layers.2.weight", "W10", "W2", "W1"]
    assert sorted(names, key=natural_key) == ["W1", "W2", "W10", "layers.2.weight", "layers.10.weight"]


def test_name_ordered_stores_prefer_tensors_named_like_layer_weights():
    infos = listing_by_name([("stft_basis", (16, 1, 8), "float32"), ("lstm.weight_hh_l0", (64, 16), "float32"),
                             ("lstm.weight_ih_l0", (64, 40), "float32")], CHANNELS_FIRST, "why")
    candidates = [i.name for i in infos if i.candidate]
    assert candidates == ["lstm.weight_ih_l0"]


def test_position_embeddings_are_not_the_input_layer_but_token_embeddings_are():
    infos = listing_by_name([("embeddings.position_embeddings.weight", (512, 16), "float32"),
                             ("embeddings.word_embeddings.weight", (200, 16), "float32")], CHANNELS_FIRST, "why")
    first = next(i for i in infos if i.candidate)
    assert first.name == "embeddings.word_embeddings.weight" and first.layout == "matrix"
