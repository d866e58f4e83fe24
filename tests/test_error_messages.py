"""Every error a user can see says what is wrong in their terms (issue 13).

The collector (tests/error_messages.py) runs the real CLI entry point over every hostile input,
the hostile pickles and files of other kinds; each error line must be one bounded line starting
``filtergrid: error:`` that names no protobuf message type, no Python exception, no wire detail.
"""

from __future__ import annotations

import error_messages as collector
import pytest

from filtergrid.converters import FORMATS
from filtergrid.converters.protowire import iter_fields, part
from filtergrid.errors import CorruptFileError, UnreadableFeatureError, plain

#: ``inspect`` words the same failures as ``render`` (both open the model the same way); it runs on
#: the inputs whose failures are not the generic truncations and flips, to keep this test short.
INSPECTED = ("kind/", "pickle-", "noise/", "empty/", "text/", "folder/", "special/", "safetensors/", "npy/",
             "npz/", "keras/", "h5/", "hf/", "pickle/")


def test_every_error_line_of_the_corpus_is_in_the_users_terms(tmp_path):
    cases = collector.inputs()
    runs = list(collector.collect(cases, tmp_path / "render", ("render",)))
    inspected = [c for c in cases if c.name.startswith(INSPECTED)]
    runs += collector.collect(inspected, tmp_path / "inspect", ("inspect",))
    assert len(runs) > 1000, "the corpus shrank: most of its inputs should fail"
    bad = {f"{command} {name}": (line, collector.problems(line))
           for name, command, _, line in runs if collector.problems(line)}
    assert not bad, "\n".join(f"{k}: {v}" for k, v in list(bad.items())[:20])


@pytest.mark.parametrize("line", [
    "filtergrid: error: m.onnx, onnx: ModelProto field 3: unsupported wire type 7 at byte 3",
    "filtergrid: error: m.pt, pytorch: data.pkl is malformed (IndexError: pop from empty list)",
    "filtergrid: error: m.tflite: error: unpack_from requires a buffer of at least 4 bytes",
    "filtergrid: error: m.caffemodel: NetParameter: file ends inside a varint at byte 1",
    "filtergrid: error: internal error (<class 'KeyError'>)",
    "filtergrid: error: " + "x" * 1300,
    "Traceback (most recent call last):",
])
def test_the_checker_catches_internal_words(line):
    assert collector.problems(line)


def test_a_truncated_protobuf_says_where_the_file_ends():
    data = b"\x3a\x80\x01" + bytes(10)  # field 7 (the graph) says 128 bytes follow; 10 do
    with pytest.raises(CorruptFileError) as caught:
        list(iter_fields(data, 0, len(data), "ModelProto"))
    assert str(caught.value) == ("it ends in the middle of the model (a piece of 128 bytes at byte 3, 10 bytes left, "
                                 "in a file of 13 bytes)")


def test_protobuf_message_names_become_what_they_describe():
    assert part("NeuralNetwork.layers[3]") == "the network layer 3"
    assert part("GraphProto.initializer.name") == "the graph initializer name"
    assert part("layer 'conv.weight' innerProduct") == "layer 'conv.weight' fully connected settings"


def test_damaged_files_share_one_wording():
    error = CorruptFileError("it ends early", path="m.onnx", format="onnx")
    error.kind = next(f for f in FORMATS if f.name == "onnx").kind
    assert error._compose() == "m.onnx: this ONNX file is damaged: it ends early"
    unread = UnreadableFeatureError("blocked quantization is not supported", path="m.onnx", format="onnx")
    unread.kind = error.kind
    assert unread._compose() == "m.onnx: filtergrid cannot read this ONNX file: blocked quantization is not supported"
    assert all(f.kind and "(" not in f.kind for f in FORMATS), "every format needs a short name in converters.KINDS"


@pytest.mark.parametrize(("error", "words"), [
    (IndexError("pop from empty list"), "its instructions take more values than they made"),
    (EOFError(), "it ends early"),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "bytes at position 0 are not text (UTF-8)"),
    (KeyError("weight_map"), "it has no 'weight_map' entry"),
    (KeyError("Unable to synchronously open object (bad heap free list)"), "bad heap free list"),
    (AttributeError("module 'filtergrid.dtypes' has no attribute 'X'"), "its contents are not what filtergrid expects"),
])
def test_library_exceptions_in_plain_words(error, words):
    assert plain(error) == words


def test_the_safety_net_words_a_leaked_exception(tmp_path, monkeypatch):
    """A converter bug that leaks IndexError still ends as one line in the user's terms."""
    from filtergrid.converters import numpy as numpy_converter

    def broken(path):
        raise IndexError("pop from empty list")

    monkeypatch.setattr(numpy_converter, "open", broken)
    path = tmp_path / "w.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + bytes(100))
    line = collector.run_cli(["inspect", str(path)])
    assert line == (f"filtergrid: error: {path}: this NumPy file is damaged: its instructions take more values than "
                    "they made (filtergrid did not expect this; FILTERGRID_DEBUG=1 shows where)")
    assert not collector.problems(line)


def test_a_bug_of_ours_is_one_line_without_python_words(monkeypatch):
    """The CLI's last net (an exception outside any converter) names no class, and says how to see more."""
    from filtergrid.cli import deadline

    def broken(seconds):
        raise IndexError("pop from empty list")

    monkeypatch.setattr(deadline, "arm", broken)
    line = collector.run_cli(["inspect", "model.onnx"])
    assert line == ("filtergrid: error: filtergrid failed on something it did not expect (its instructions take more "
                    "values than they made); rerun with FILTERGRID_DEBUG=1 to see where, and report it")
