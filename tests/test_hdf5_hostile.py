"""Hostile HDF5 / Keras files (issue 12), generated here with h5py and zipfile (a few MB at most).

Each runs through ``filtergrid convert`` as a user would, under a 2 GiB address-space limit: it must
end in exit 0 with the right tensor, or exit 2 with one ``filtergrid: error:`` line, within 30 s.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import resource
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
MEMORY_LIMIT = 2 * 1024**3
SECONDS = 30
KERNEL = np.arange(3 * 3 * 3 * 4, dtype="<f4").reshape(3, 3, 3, 4) / 100  # HWIO: 4 filters of 3x3x3
CANONICAL = KERNEL.transpose(3, 0, 1, 2)


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def convert(path: Path, out: Path) -> tuple[subprocess.CompletedProcess, float]:
    """``filtergrid convert`` in a fresh process under the limits; its result and wall time."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "filtergrid", "convert", str(path), "-o", str(out), "-q"],
                            capture_output=True, text=True, timeout=SECONDS, check=False, preexec_fn=_limited, env=env)
    seconds = time.monotonic() - start
    print(f"{path.name}: exit {result.returncode} in {seconds:.1f} s {result.stderr.strip()}")
    assert seconds < SECONDS
    assert "Traceback" not in result.stderr
    return result, seconds


def assert_refused(result: subprocess.CompletedProcess, *needles: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("filtergrid: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def assert_kernel(result: subprocess.CompletedProcess, out: Path) -> None:
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(out), CANONICAL)


def keras3_config() -> dict:
    layers = [{"class_name": "Conv2D", "config": {"name": "conv2d"}},
              {"class_name": "Dense", "config": {"name": "dense"}}]
    return {"class_name": "Sequential", "config": {"name": "net", "layers": layers}}


def test_hard_link_dag_is_walked_once_per_group(tmp_path):
    """63 levels of groups, each linked twice from the one above: 2^63 paths to one ``vars`` group."""
    path = tmp_path / "dag.weights.h5"
    with h5py.File(path, "w") as f:
        levels = [f.create_group("layers")] + [f.create_group(f"g{i}") for i in range(63)]
        for upper, lower in itertools.pairwise(levels):
            upper["a"] = lower
            upper["b"] = lower
        levels[-1].create_group("conv2d").create_group("vars")["0"] = KERNEL
    result, _ = convert(path, tmp_path / "out.npy")
    assert_kernel(result, tmp_path / "out.npy")


def test_soft_link_cross_product_is_refused(tmp_path):
    """4000 layer names that are soft links to one group listing 4000 weights: 16 million weights."""
    path = tmp_path / "cross.h5"
    names = [f"layer{i}" for i in range(4000)]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array(names, dtype="S")
        hub = f.create_group("hub")
        hub.attrs["weight_names"] = np.array([f"w{i}" for i in range(4000)], dtype="S")
        hub["kernel"] = KERNEL
        for i in range(4000):
            hub[f"w{i}"] = h5py.SoftLink("/hub/kernel")
        for name in names:
            f[name] = h5py.SoftLink("/hub")
    result, _ = convert(path, tmp_path / "out.npy")
    assert_refused(result, "same HDF5 group")


def test_soft_link_paths_of_soft_links_are_bounded(tmp_path):
    """A weight path of 4000 soft links, each to a path of 4000 soft links: 16 million hops."""
    path = tmp_path / "chains.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array(["conv"], dtype="S")
        conv = f.create_group("conv")
        conv.attrs["weight_names"] = np.array(["/".join(["y"] * 4000) + "/kernel"], dtype="S")
        conv["x"] = h5py.SoftLink("/conv")
        conv["y"] = h5py.SoftLink("/".join(["x"] * 4000))
        conv["kernel"] = KERNEL
    result, _ = convert(path, tmp_path / "out.npy")
    assert_refused(result, "MAX_NESTING")


def zeros_deflated(size: int) -> bytes:
    """A zlib stream of ``size`` zero bytes, built from one fully flushed block repeated (fast, ~1000:1)."""
    block = 1 << 24
    assert size % block == 0
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = compressor.compress(bytes(block)) + compressor.flush(zlib.Z_FULL_FLUSH)
    adler = (size % 65521) << 16 | 1  # adler32 of zeros: a = 1, b = size
    return b"\x78\xda" + piece * (size // block) + b"\x03\x00" + struct.pack(">I", adler)


def test_zeros_deflated_is_valid():
    assert zlib.decompress(zeros_deflated(1 << 25)) == bytes(1 << 25)


def test_small_kernel_in_a_huge_gzip_chunk_is_refused(tmp_path):
    """A 144-byte kernel whose one chunk inflates to 3.6 GB: libhdf5 would allocate it all."""
    path = tmp_path / "chunk.h5"
    chunk = (3, 3, 1, 100 << 20)  # 9 x 100 Mi float32 = 3.8 GB
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array(["conv"], dtype="S")
        conv = f.create_group("conv")
        conv.attrs["weight_names"] = np.array(["kernel"], dtype="S")
        ds = conv.create_dataset("kernel", shape=(3, 3, 1, 4), maxshape=(None,) * 4, chunks=chunk,
                                 dtype="<f4", compression="gzip")
        ds.id.write_direct_chunk((0, 0, 0, 0), zeros_deflated(math.prod(chunk) * 4))
    result, _ = convert(path, tmp_path / "out.npy")
    assert_refused(result, "chunks of 3,774,873,600 bytes")


def keras3_weights(path: Path, dense: int = 0) -> Path:
    """A Keras 3 ``model.weights.h5``: the conv kernel, and a dense kernel of ``dense`` zero floats
    written before it (so reading the conv means going past it and back to the metadata)."""
    with h5py.File(path, "w") as f:
        layers = f.create_group("layers")
        dense_vars = layers.create_group("dense").create_group("vars")
        if dense:
            ds = dense_vars.create_dataset("0", shape=(dense // 1024, 1024), dtype="<f4")
            for row in range(0, dense // 1024, 16384):
                ds[row:row + 16384] = 0
        layers.create_group("conv2d").create_group("vars")["0"] = KERNEL
    return path


def keras_archive(path: Path, config: bytes, weights: Path, compression: int) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        with z.open(zipfile.ZipInfo("config.json"), "w") as member:
            member.write(config)
        z.write(weights, "model.weights.h5", compress_type=compression, compresslevel=1)
    return path


def test_config_json_bomb_is_refused_by_its_limit(tmp_path):
    """config.json that inflates to 200 MB of blanks inside valid JSON."""
    path = tmp_path / "bomb.keras"
    weights = keras3_weights(tmp_path / "model.weights.h5")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("config.json", "w", force_zip64=True) as member:
            member.write(b'{"class_name": "Sequential", "config": {"layers": []}')
            for _ in range(200):
                member.write(b" " * (1 << 20))
            member.write(b"}")
        z.write(weights, "model.weights.h5")
    assert path.stat().st_size < 2 << 20
    result, _ = convert(path, tmp_path / "out.npy")
    assert_refused(result, "MAX_CONFIG_BYTES")


def test_config_json_understated_in_the_directory_is_cut_at_its_limit(tmp_path):
    """The same bomb whose central directory claims 60 bytes: inflating stops at the limit anyway."""
    path = tmp_path / "liar.keras"
    weights = keras3_weights(tmp_path / "model.weights.h5")
    text = b'{"class_name": "Sequential", "config": {"layers": []}' + b" " * (200 << 20) + b"}"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", text, compresslevel=1)
        z.write(weights, "model.weights.h5")
    data = bytearray(path.read_bytes())
    directory = data.rfind(b"PK\x01\x02", 0, data.rfind(b"PK\x01\x02"))  # config.json's entry
    struct.pack_into("<I", data, directory + 24, 60)  # its uncompressed size
    path.write_bytes(bytes(data))
    result, _ = convert(path, tmp_path / "out.npy")
    assert_refused(result)


def test_deflated_400mb_weights_member_is_inflated_once(tmp_path):
    """A valid .keras whose weights member (400 MB, mostly a dense kernel) is deflated: zipfile would
    re-inflate it from the start on every backwards seek of libhdf5."""
    weights = keras3_weights(tmp_path / "model.weights.h5", dense=100 << 20)
    path = keras_archive(tmp_path / "deflated.keras", json.dumps(keras3_config()).encode(), weights,
                         zipfile.ZIP_DEFLATED)
    weights.unlink()
    assert path.stat().st_size < 4 << 20
    result, _ = convert(path, tmp_path / "out.npy")
    assert_kernel(result, tmp_path / "out.npy")


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_small_keras_archive_reads_the_first_kernel(tmp_path, compression):
    weights = keras3_weights(tmp_path / "model.weights.h5")
    path = keras_archive(tmp_path / "small.keras", json.dumps(keras3_config()).encode(), weights, compression)
    result, _ = convert(path, tmp_path / "out.npy")
    assert_kernel(result, tmp_path / "out.npy")


def test_a_stored_weights_member_is_read_through_a_window_of_exactly_its_bytes(tmp_path):
    """libhdf5 reads a stored member through ``MemberWindow``: its reads, seeks and end are the
    member's, never the archive's neighbouring bytes."""
    from filtergrid.converters.keras_zip import open_weights

    weights = keras3_weights(tmp_path / "model.weights.h5")
    path = keras_archive(tmp_path / "small.keras", json.dumps(keras3_config()).encode(), weights,
                         zipfile.ZIP_STORED)
    member = weights.read_bytes()
    with zipfile.ZipFile(path) as archive, open_weights(path, archive, archive.getinfo("model.weights.h5")) as f:
        assert f.read() == member and f.read(10) == b""
        assert f.seek(-8, os.SEEK_END) == len(member) - 8 and f.read() == member[-8:]
        f.seek(5)
        assert f.read(3) == member[5:8] and f.tell() == 8
        f.seek(len(member) + 100)
        assert f.read(4) == b""
        with pytest.raises(ValueError, match="negative"):
            f.seek(-1)


def test_variable_length_type_with_reserved_bits_is_refused_before_libhdf5_reads_it(tmp_path):
    """Found by fuzzing: one byte of a Keras file's ``weight_names`` datatype set to a reserved
    variable-length kind segfaulted libhdf5 as it read the attribute; the heap guard refuses it."""
    data = (ROOT / "fixtures/keras/conv12.h5").read_bytes()
    vlen_string = b"weight_names\x00\x00\x00\x00\x19\x01"  # name padded to 8, VLEN v1, string
    assert vlen_string in data
    bad = tmp_path / "reserved.h5"
    bad.write_bytes(data.replace(vlen_string, vlen_string[:-1] + b"\x1b"))
    result, _ = convert(bad, tmp_path / "out.npy")
    assert_refused(result, "damaged", "reserved")
