"""A hostile-input corpus generated from every framework-made fixture (no binary junk is committed).

Seeds are the files listed in ``fixtures/*/manifest.json`` (more land over time and are picked up
automatically) plus a few files made right now by real writers that need no framework (``np.save``,
``np.savez``, ``safetensors.numpy``). From each seed: truncations at many cut points and copies
with byte flips at seeded positions. Independent of the seeds: random bytes behind each format's
magic prefix, empty files, a text file, a folder named like a model, a FIFO, device paths, links.

Run ``python tests/hostile_corpus.py OUTDIR`` to write the whole corpus into a folder (for
``filtergrid audit`` or a manual look); tests use :func:`cases` and write each case on demand.
"""

from __future__ import annotations

import faulthandler
import io
import json
import os
import random
import signal
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import filtergrid

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

#: Absolute cut points (bytes kept) and fractions of the size: header fields, first blocks, middle.
CUTS = (0, 1, 7, 8, 9, 16, 64, 512)
CUT_FRACTIONS = (0.1, 0.5, 0.9)

#: Byte-flip variants: (label, number of flips, region) with region "head" (first 512 bytes),
#: "tail" (last 512: zip central directories live there) or "any".
FLIPS = (("flip1-head", 1, "head"), ("flip8-head", 8, "head"), ("flip8-tail", 8, "tail"),
         ("flip32-any", 32, "any"))

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

#: What each format's files start with, for random-byte files that pass a sniffer's first look.
MAGICS: dict[str, tuple[bytes, str]] = {
    "safetensors": (struct.pack("<Q", 256) + b'{"w": {"dtype": "F32", ', ".safetensors"),
    "npy": (b"\x93NUMPY\x01\x00", ".npy"),
    "npz": (b"PK\x03\x04", ".npz"),
    "keras": (b"PK\x03\x04", ".keras"),
    "hdf5": (HDF5_MAGIC, ".h5"),
    "onnx": (b"\x08\x07\x12\x07pytorch", ".onnx"),
    "pytorch": (b"PK\x03\x04", ".pt"),
    "pickle": (b"\x80\x02", ".pth"),
    "gguf": (b"GGUF\x03\x00\x00\x00", ".gguf"),
    "tflite": (b"\x1c\x00\x00\x00TFL3", ".tflite"),
}


@dataclass(frozen=True)
class Seed:
    """A valid model file to mutate: where it came from, its suffix, its bytes."""

    name: str
    suffix: str
    data: bytes


@dataclass(frozen=True)
class Case:
    """One hostile input: ``make(folder)`` creates it inside ``folder`` and returns the path to open."""

    name: str
    make: Callable[[Path], Path]


class Hang(Exception):
    """A load ran past its time bound (deliberately not a FiltergridError)."""


def load_bounded(path: Path, seconds: int = 10):
    """``filtergrid.load(path)`` that fails instead of stalling a test run.

    SIGALRM stops Python code after ``seconds``; native code that never returns to Python (a
    libhdf5 loop) cannot see it, so faulthandler's C watchdog ends the process after 6x as long,
    printing where it was stuck, rather than hanging CI.
    """
    def expired(signum, frame):
        raise Hang(f"{path} took over {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    faulthandler.dump_traceback_later(6 * seconds, exit=True)
    try:
        return filtergrid.load(path)
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def safety_net_fired(error: BaseException) -> bool:
    """True when ``api._guarded`` had to wrap a raw exception a converter leaked (it raised ``error``).

    The net keeps the one-line contract, but a converter is expected to raise typed errors itself.
    """
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_name == "_guarded" and error.__context__ is not None


def _manifest_paths(fixtures: Path) -> list[Path]:
    paths: dict[str, Path] = {}
    for manifest in sorted(fixtures.glob("*/manifest.json")):
        for entry in json.loads(manifest.read_text()):
            paths.setdefault(entry["file"], fixtures / entry["file"])
    return list(paths.values())


def manifest_files(fixtures: Path = FIXTURES) -> list[Path]:
    """Every model file named in ``fixtures/*/manifest.json``, each once."""
    return [p for p in _manifest_paths(fixtures) if p.is_file()]


def manifest_folders(fixtures: Path = FIXTURES) -> list[Path]:
    """Every model folder (a Hugging Face ``save_pretrained`` output) named in a manifest."""
    return [p for p in _manifest_paths(fixtures) if p.is_dir()]


def _bytes_of(write: Callable[[io.BytesIO], object]) -> bytes:
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getvalue()


def writer_seeds() -> list[Seed]:
    """Small valid files made now by writers that need no framework (they always exist)."""
    from safetensors.numpy import save as safetensors_save

    rng = np.random.default_rng(0)
    conv = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    dense = rng.standard_normal((64, 5)).astype(np.float16)
    return [
        Seed("writer/np.save.npy", ".npy", _bytes_of(lambda f: np.save(f, conv))),
        Seed("writer/np.save-fortran.npy", ".npy", _bytes_of(lambda f: np.save(f, np.asfortranarray(dense)))),
        Seed("writer/np.savez.npz", ".npz", _bytes_of(lambda f: np.savez(f, W1=dense, b1=dense[0]))),
        Seed("writer/np.savez_compressed.npz", ".npz",
             _bytes_of(lambda f: np.savez_compressed(f, conv1=conv, fc=dense))),
        Seed("writer/safetensors.safetensors", ".safetensors",
             safetensors_save({"conv1.weight": conv, "fc.weight": dense, "fc.q": (conv * 10).astype(np.int8)},
                              metadata={"format": "np"})),
    ]


def seeds(fixtures: Path = FIXTURES) -> list[Seed]:
    """Framework-made fixtures first, then the writer-made seeds."""
    made = [Seed(str(p.relative_to(fixtures)), "".join(p.suffixes[-1:]) or ".bin", p.read_bytes())
            for p in manifest_files(fixtures)]
    return made + writer_seeds()


def truncations(data: bytes) -> dict[str, bytes]:
    """``data`` cut at each point of CUTS and CUT_FRACTIONS, and one byte short; cuts past the end skipped."""
    size = len(data)
    points = {f"cut{c}": c for c in CUTS}
    points.update({f"cut{int(f * 100)}pct": int(size * f) for f in CUT_FRACTIONS})
    points["cut-1"] = size - 1
    return {label: data[:at] for label, at in points.items() if 0 <= at < size}


def flipped(data: bytes, count: int, region: str, seed: str) -> bytes:
    """``data`` with ``count`` bytes XORed with random non-zero values at positions seeded by ``seed``."""
    if not data:
        return data
    rng = random.Random(seed)
    lo, hi = {"head": (0, min(len(data), 512)), "tail": (max(0, len(data) - 512), len(data)),
              "any": (0, len(data))}[region]
    out = bytearray(data)
    for _ in range(count):
        at = rng.randrange(lo, hi)
        out[at] ^= rng.randrange(1, 256)
    return bytes(out)


def noise(magic: bytes, size: int, seed: str) -> bytes:
    """``magic`` followed by random bytes, ``size`` bytes in all."""
    rng = random.Random(seed)
    return magic + bytes(rng.randrange(256) for _ in range(max(0, size - len(magic))))


def _file(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data)
        return path
    return make


def seed_cases(seed: Seed) -> Iterator[Case]:
    """Truncated and byte-flipped copies of one seed, under the seed's own suffix."""
    filename = f"model{seed.suffix}"
    for label, data in truncations(seed.data).items():
        yield Case(f"{seed.name}:{label}", _file(filename, data))
    for label, count, region in FLIPS:
        yield Case(f"{seed.name}:{label}", _file(filename, flipped(seed.data, count, region, f"{seed.name}:{label}")))


#: Mutations applied to each file of a model folder, one file at a time (the rest stay intact).
FOLDER_MUTATIONS = ("cut0", "cut50pct", "cut-1", "flip8-head")


def _folder_copy(source: Path, replace: dict[str, bytes]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        target = folder / source.name
        target.mkdir()
        for file in sorted(source.iterdir()):
            if file.is_file():
                (target / file.name).write_bytes(replace.get(file.name, file.read_bytes()))
        return target
    return make


def folder_cases(source: Path, fixtures: Path = FIXTURES) -> Iterator[Case]:
    """A model folder with one of its files (config, index or a shard) truncated or flipped."""
    name = str(source.relative_to(fixtures))
    for file in sorted(p for p in source.iterdir() if p.is_file()):
        data = file.read_bytes()
        variants = {**truncations(data), "flip8-head": flipped(data, 8, "head", f"{name}/{file.name}")}
        for label in FOLDER_MUTATIONS:
            if label in variants:
                yield Case(f"{name}/{file.name}:{label}", _folder_copy(source, {file.name: variants[label]}))


def _folder_named(name: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        (folder / name).mkdir()
        return folder / name
    return make


def _fifo(folder: Path) -> Path:
    path = folder / "model.npy"
    os.mkfifo(path)
    return path


def _symlink_loop(folder: Path) -> Path:
    (folder / "a.safetensors").symlink_to(folder / "b.safetensors")
    (folder / "b.safetensors").symlink_to(folder / "a.safetensors")
    return folder / "a.safetensors"


def _dangling_symlink(folder: Path) -> Path:
    (folder / "model.onnx").symlink_to(folder / "gone.onnx")
    return folder / "model.onnx"


def _existing(path: str) -> Callable[[Path], Path]:
    return lambda folder: Path(path)


def odd_cases() -> Iterator[Case]:
    """Inputs that are no model at all: noise behind magic bytes, empty, text, folders, special files."""
    for label, (magic, suffix) in MAGICS.items():
        for size in (len(magic) + 1, 64, 4096):
            yield Case(f"noise/{label}-{size}", _file(f"model{suffix}", noise(magic, size, f"{label}:{size}")))
    suffixes = sorted({s for _, s in MAGICS.values()} | {".bin", ".npz", ".hdf5", ".keras"})
    for suffix in suffixes:
        yield Case(f"empty/{suffix}", _file(f"model{suffix}", b""))
    yield Case("text/readme.safetensors", _file("model.safetensors", b"This is not a model, just text.\n" * 4))
    yield Case("text/readme.txt", _file("notes.txt", b"hello\n"))
    yield Case("text/json.safetensors", _file("model.safetensors", struct.pack("<Q", 2) + b"[]"))
    for suffix in (".onnx", ".npz", ".safetensors", ".h5", ".keras"):
        yield Case(f"folder/model{suffix}", _folder_named(f"model{suffix}"))
    yield Case("special/fifo.npy", _fifo)
    for device in ("/dev/null", "/dev/zero", "/dev/urandom"):
        if os.path.exists(device):
            yield Case(f"special{device}", _existing(device))
    yield Case("special/symlink-loop", _symlink_loop)
    yield Case("special/dangling-symlink", _dangling_symlink)
    yield Case("special/missing", lambda folder: folder / "no-such-model.safetensors")


# --- Crafted attacks. Where a real writer can make the attack (np.savez of an object array, h5py's
# external storage and links), it does; the rest are headers no writer would produce.

#: Name of the file a pickle payload would create if anything ever ran it.
CANARY = "CANARY-payload-ran"


class Payload:
    """Pickles to "run os.system('touch CANARY')"; np.savez writes it into an object array."""

    def __init__(self, canary: Path):
        self.canary = canary

    def __reduce__(self):
        return (os.system, (f"touch {self.canary}",))


def _safetensors(header: object, data: bytes = b"", raw: bytes | None = None) -> bytes:
    text = raw if raw is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def _npy_header(shape: tuple[int, ...], descr: object = "<f4") -> bytes:
    """A .npy header written by NumPy's own header writer (for a shape whose data will be absent)."""
    return _bytes_of(lambda f: np.lib.format.write_array_header_1_0(
        f, {"descr": descr, "fortran_order": False, "shape": shape}))


def _zip(members: dict[str, bytes]) -> bytes:
    import zipfile

    def write(f):
        with zipfile.ZipFile(f, "w") as z:
            for name, data in members.items():
                z.writestr(zipfile.ZipInfo(name), data)  # ZipInfo keeps the name exactly as given
    return _bytes_of(write)


def _payload_npz(folder: Path) -> Path:
    path = folder / "weights.npz"
    np.savez(path, W1=np.zeros((4, 4), np.float32), evil=np.array([Payload(folder / CANARY)], dtype=object))
    return path


def _keras2_h5(path: Path, make_kernel: Callable, **file_kwargs) -> Path:
    """An HDF5 file laid out like Keras 2 weights whose one kernel ``make_kernel(group)`` creates."""
    import h5py

    with h5py.File(path, "w", **file_kwargs) as f:
        f.attrs["layer_names"] = np.array([b"conv"])
        group = f.create_group("conv")
        group.attrs["weight_names"] = np.array([b"kernel:0"])
        make_kernel(group)
    return path


def _outside_secret(folder: Path) -> tuple[Path, Path]:
    """(secret file next to the model's folder, the model's own folder)."""
    secret = folder / "secret.bin"
    np.arange(108, dtype="<f4").tofile(secret)
    (folder / "model").mkdir()
    return secret, folder / "model"


def _h5_external_storage(folder: Path) -> Path:
    secret, model = _outside_secret(folder)
    return _keras2_h5(model / "ext.h5", lambda g: g.create_dataset(
        "kernel:0", shape=(3, 3, 3, 4), dtype="<f4", external=[(str(secret), 0, 432)]))


def _h5_external_link(folder: Path) -> Path:
    import h5py

    secret, model = _outside_secret(folder)
    with h5py.File(folder / "other.h5", "w") as other:
        other["k"] = np.fromfile(secret, "<f4").reshape(3, 3, 3, 4)

    def link(group) -> None:
        group["kernel:0"] = h5py.ExternalLink(str(folder / "other.h5"), "/k")
    return _keras2_h5(model / "link.h5", link)


def _h5_virtual(folder: Path) -> Path:
    import h5py

    _, model = _outside_secret(folder)
    with h5py.File(folder / "other.h5", "w") as other:
        other["k"] = np.ones((3, 3, 3, 4), "<f4")

    def virtual(group) -> None:
        layout = h5py.VirtualLayout(shape=(3, 3, 3, 4), dtype="<f4")
        layout[...] = h5py.VirtualSource(str(folder / "other.h5"), "k", shape=(3, 3, 3, 4))
        group.create_virtual_dataset("kernel:0", layout)
    return _keras2_h5(model / "vds.h5", virtual)


def _h5_many_layer_names(folder: Path) -> Path:
    import h5py

    path = folder / "names.h5"
    with h5py.File(path, "w", libver="latest") as f:  # dense attribute storage allows a 1 MB attribute
        f.attrs["layer_names"] = np.full(10**6, b"x", dtype="S1")
        f.create_group("x").attrs["weight_names"] = np.array([b"kernel:0"])
    return path


def _h5_non_utf8_name(folder: Path) -> Path:
    """Keras 3 layout whose only layer's group name is not UTF-8 (h5py lists it as bytes)."""
    import h5py

    path = folder / "names.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_group("layers").create_group(b"conv\xff\xfe").create_group("vars")["0"] = np.ones((3, 3, 3, 4), "f4")
    return path


def _h5_shape(shape: tuple[int, ...]) -> Callable[[Path], Path]:
    """A chunked dataset declaring ``shape`` with no chunk written: HDF5 would make it up from fill values."""
    return lambda folder: _keras2_h5(folder / "huge.h5", lambda g: g.create_dataset(
        "kernel:0", shape=shape, dtype="<f4", chunks=(1, 1, 3, shape[-1])))


def _h5_global_heap_loop(folder: Path) -> Path:
    """h5py writes strings into a global heap; a heap object header with index 0 and size 0 in the
    middle of the collection sends libhdf5 (1.14) into an endless loop when the string is read.
    Found by the atheris run on a keras-made file, reduced to these 16 bytes; now refused by
    filtergrid.converters.hdf5_heaps before libhdf5 reads the heap."""
    import h5py

    path = folder / "heap.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = '{"class_name": "Sequential", "config": {"layers": []}}'
        f.attrs["keras_version"] = "3.15.1"
    data = bytearray(path.read_bytes())
    heap = data.find(b"GCOL")
    first_size = struct.unpack_from("<Q", data, heap + 16 + 8)[0]
    second = heap + 16 + 16 + (first_size + 7) // 8 * 8
    data[second:second + 16] = bytes(16)
    path.write_bytes(bytes(data))
    return path


def _hf_folder(folder: Path, files: dict[str, bytes | Path]) -> Path:
    """A Hugging Face-style model folder; a Path value makes that file a symlink to it."""
    model = folder / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "vit", "architectures": ["ViTModel"]}')
    for name, content in files.items():
        if isinstance(content, Path):
            (model / name).symlink_to(content)
        else:
            (model / name).write_bytes(content)
    return model


def _outside_weights(folder: Path) -> Path:
    """A valid safetensors file next to (not inside) the model's folder."""
    secret = folder / "secret.safetensors"
    secret.write_bytes(next(s for s in writer_seeds() if s.suffix == ".safetensors").data)
    return secret


def _hf_index(shard: Callable[[Path], str]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        index = {"metadata": {}, "weight_map": {"conv1.weight": shard(folder)}}
        return _hf_folder(folder, {"model.safetensors.index.json": json.dumps(index).encode()})
    return make


def _hf_symlinked_weights(folder: Path) -> Path:
    return _hf_folder(folder, {"model.safetensors": _outside_weights(folder)})


def _data(name: str, data: bytes) -> Case:
    return Case(name, _file(name.split("/", 1)[1], data))


def crafted_cases() -> Iterator[Case]:
    """Attacks on each format's index: lying sizes, traversal names, code in pickles, links out."""
    f32 = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
    yield _data("safetensors/header-100GiB.safetensors", struct.pack("<Q", 100 << 30) + b"{}")
    yield _data("safetensors/tensor-100GiB.safetensors",
                _safetensors({"w": {"dtype": "F32", "shape": [102400, 262144], "data_offsets": [0, 100 << 30]}}))
    yield _data("safetensors/tensor-1GiB-absent.safetensors",
                _safetensors({"w": {"dtype": "F32", "shape": [16384, 16384], "data_offsets": [0, 1 << 30]}}))
    yield _data("safetensors/overlap.safetensors", _safetensors(
        {"a": f32, "b": {**f32, "data_offsets": [8, 24]}}, bytes(24)))
    yield _data("safetensors/negative-offset.safetensors", _safetensors({"w": {**f32, "data_offsets": [-16, 0]}}, bytes(16)))
    yield _data("safetensors/offsets-reversed.safetensors", _safetensors({"w": {**f32, "data_offsets": [16, 0]}}, bytes(16)))
    yield _data("safetensors/float-offsets.safetensors", _safetensors({"w": {**f32, "data_offsets": [0.0, 16.0]}}, bytes(16)))
    yield _data("safetensors/empty-but-huge.safetensors",
                _safetensors({"w": {"dtype": "F16", "shape": [0, 1 << 50, 1 << 56, 4], "data_offsets": [0, 0]}}))
    yield _data("safetensors/negative-dim.safetensors", _safetensors({"w": {**f32, "shape": [-2, -2]}}, bytes(16)))
    yield _data("safetensors/shape-string.safetensors", _safetensors({"w": {**f32, "shape": "22"}}, bytes(16)))
    yield _data("safetensors/dtype-list.safetensors", _safetensors({"w": {**f32, "dtype": ["F32"]}}, bytes(16)))
    yield _data("safetensors/unknown-dtype.safetensors", _safetensors({"w": {**f32, "dtype": "F128"}}, bytes(16)))
    yield _data("safetensors/bad-json.safetensors", _safetensors(None, bytes(16), raw=b'{"w": {"dtype": "F32",'))
    yield _data("safetensors/not-utf8.safetensors", _safetensors(None, bytes(16), raw=b'{"\xff\xfe": 1}'))
    yield _data("safetensors/deep-json.safetensors",
                _safetensors(None, raw=b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"))
    yield _data("safetensors/header-array.safetensors", _safetensors([1, 2, 3]))
    yield _data("npy/declares-128GiB.npy", _npy_header((1 << 35,)) + bytes(64))
    yield _data("npy/declares-1GiB-absent.npy", _npy_header((1 << 28,)) + bytes(64))
    yield _data("npy/complex.npy", _npy_header((4, 4), "<c8") + bytes(128))
    yield _data("npy/subarray-dtype.npy", _npy_header((2,), [("a", "<f4", (1 << 20, 1 << 20))]) + bytes(64))
    # a legacy torch.save head (its magic-number pickle), so the content picks the PyTorch reader
    legacy_head = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + b"."
    yield _data("pickle/bytearray8-claims-2.5GB.pth",
                legacy_head + b"\x80\x05\x96" + struct.pack("<Q", 2_500_000_000) + bytes(16))
    yield _data("npz/declares-128GiB.npz", _zip({"W1.npy": _npy_header((1 << 35,)) + bytes(64)}))
    yield _data("npz/object-dtype.npz", _bytes_of(lambda f: np.savez(f, W1=np.array([{"a": 1}, None], dtype=object))))
    yield Case("npz/pickle-payload.npz", _payload_npz)
    small = _bytes_of(lambda f: np.save(f, np.ones((4, 4), np.float32)))
    yield _data("npz/traversal-member.npz", _zip({"W1.npy": small, "../evil.npy": small}))
    yield _data("npz/absolute-member.npz", _zip({"/tmp/filtergrid-evil.npy": small}))
    yield _data("npz/backslash-member.npz", _zip({"..\\evil.npy": small}))
    yield _data("npz/drive-member.npz", _zip({"C:/evil.npy": small}))
    yield _data("keras/absolute-members.keras", _zip({"/config.json": b"{}", "/model.weights.h5": b""}))
    yield _data("keras/traversal-member.keras", _zip({"config.json": b"{}", "model.weights.h5": b"",
                                                      "../../evil.h5": b""}))
    yield _data("keras/weights-not-hdf5.keras", _zip({"config.json": b"{}", "model.weights.h5": b"not hdf5"}))
    yield Case("h5/external-storage.h5", _h5_external_storage)
    yield Case("h5/external-link.h5", _h5_external_link)
    yield Case("h5/virtual-dataset.h5", _h5_virtual)
    yield Case("h5/layer-names-1e6.h5", _h5_many_layer_names)
    yield Case("h5/shape-over-limit.h5", _h5_shape((65536, 65536, 3, 3)))
    yield Case("h5/data-absent-800MB.h5", _h5_shape((8192, 8192, 3, 1)))
    yield Case("h5/global-heap-loop.h5", _h5_global_heap_loop)
    yield Case("h5/non-utf8-layer-name.h5", _h5_non_utf8_name)
    yield Case("h5/datatype-as-kernel.h5", lambda folder: _keras2_h5(
        folder / "dtype.h5", lambda g: g.__setitem__("kernel:0", np.dtype("<f4"))))
    yield Case("hf/shard-traversal", _hf_index(lambda folder: f"../{_outside_weights(folder).name}"))
    yield Case("hf/shard-absolute", _hf_index(lambda folder: str(_outside_weights(folder))))
    yield Case("hf/weights-symlink-out", _hf_symlinked_weights)


def cases(fixtures: Path = FIXTURES) -> list[Case]:
    """The whole generated corpus: every seed's mutations, the odd inputs, the crafted attacks."""
    out = [case for seed in seeds(fixtures) for case in seed_cases(seed)]
    out += [case for folder in manifest_folders(fixtures) for case in folder_cases(folder, fixtures)]
    return out + list(odd_cases()) + list(crafted_cases())


def write_corpus(out: Path, fixtures: Path = FIXTURES) -> list[Path]:
    """Write every case into its own subfolder of ``out`` (for ``filtergrid audit`` or inspection)."""
    written = []
    for i, case in enumerate(cases(fixtures)):
        folder = out / f"{i:04d}-{case.name.replace('/', '_').replace(':', '_')}"
        folder.mkdir(parents=True, exist_ok=True)
        written.append(case.make(folder))
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/hostile_corpus.py OUTDIR")
    paths = write_corpus(Path(sys.argv[1]))
    print(f"wrote {len(paths)} hostile inputs under {sys.argv[1]}")
