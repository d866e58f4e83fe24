"""Audit ONE model: hash, detect, load, assess, draw its grid; always a plain JSON-ready record.

:func:`audit_file` never raises for anything the file can cause: a failure at any step becomes
``status: "error"`` with a one-line ``error`` and the fields found so far. It runs inside a worker
process (``python -m filtergrid.audit.worker``, see :mod:`filtergrid.audit.process`) whose memory
is capped, so a file that crashes the decoder or blows memory costs one record, not the audit.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .text import bounded, bounded_record
from .walk import NOT_A_MODEL

if TYPE_CHECKING:
    from PIL.Image import Image

    from ..bank import FilterBank

#: Bytes hashed per read (sha256 is streamed: memory stays bounded for any file size).
HASH_CHUNK = 1 << 20

#: Thumbnails beside the grids: at most this many pixels a side, and at most this many bytes.
THUMB_PIXELS = 256
THUMB_MAX_BYTES = 64 * 1024

RECORD_FIELDS = ("path", "size", "sha256", "etag", "bytes_read", "requests", "format", "producer", "status", "error",
                 "tensor", "chosen_by", "original_shape", "original_dtype", "layout", "canonical_shape", "kind",
                 "health", "grid", "thumbnail", "seconds")

#: What a record's ``status`` may be. A file a worker finds is no model at all is not a record:
#: its reply has status "skipped" and the report lists it under ``skipped``.
STATUSES = ("ok", "error", "unsupported")


def empty_record(path: str) -> dict[str, Any]:
    """Every field of the schema, unknown until a step fills it in."""
    record: dict[str, Any] = dict.fromkeys(RECORD_FIELDS)
    record.update(path=path, status="error")
    return record


def one_line(error: BaseException) -> str:
    """The message of an error as one bounded line (FiltergridErrors already are one line)."""
    from ..errors import FiltergridError

    if isinstance(error, FiltergridError):
        return bounded(error.reason)  # the record already says which file and format
    text = " ".join(str(error).split())
    return bounded(f"{type(error).__name__}: {text}" if text else type(error).__name__)


def files_of(path: Path, is_folder: bool) -> list[Path]:
    """The bytes that make the model: the file, or a model folder's regular files in name order.

    In a folder only files that stay inside it after resolving links count (the converters refuse
    the others too), so a link to ``/etc/passwd`` is never hashed.
    """
    if not is_folder:
        return [path]
    root = path.resolve()
    inside = (p for p in path.rglob("*") if p.is_file() and root in p.resolve().parents)
    return sorted(inside, key=lambda p: p.relative_to(path).as_posix())


def size_and_sha256(path: Path, is_folder: bool) -> tuple[int, str]:
    """Total size and streamed sha256; a folder hashes each file's relative name and bytes in order."""
    digest = hashlib.sha256()
    size = 0
    for file in files_of(path, is_folder):
        if is_folder:
            digest.update(file.relative_to(path).as_posix().encode("utf-8", "surrogateescape") + b"\0")
        with open(file, "rb") as f:
            while chunk := f.read(HASH_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    return size, digest.hexdigest()


def _describe(record: dict[str, Any], bank: FilterBank) -> None:
    p = bank.provenance
    record.update(tensor=p.tensor, chosen_by=p.chosen_by, original_shape=list(p.original_shape),
                  original_dtype=p.original_dtype, layout=p.layout, canonical_shape=list(bank.shape),
                  kind=bank.kind, producer=p.producer.describe() if p.producer else None)


def thumbnail_bytes(image: Image) -> bytes:
    """A PNG of ``image`` at most THUMB_PIXELS a side and THUMB_MAX_BYTES long (halved until it fits)."""
    from PIL.Image import Resampling

    side = THUMB_PIXELS
    while True:
        thumb = image.copy()
        thumb.thumbnail((side, side), Resampling.BOX)
        buffer = io.BytesIO()
        thumb.save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= THUMB_MAX_BYTES or side <= 16:
            return buffer.getvalue()
        side //= 2


def _draw(record: dict[str, Any], bank: FilterBank, task: dict[str, Any]) -> None:
    """The full grid and its thumbnail: ``grids/x.thumb.png``, or the grid itself when it is small."""
    from ..renderer import RenderOptions, render_result, save
    from ..safeio import atomic_write

    result = render_result(bank, RenderOptions(**task.get("render", {})))
    grid = Path(task["out"]) / task["grid"]
    save(result, bank, grid)
    record["grid"] = record["thumbnail"] = task["grid"]
    if max(result.image.size) <= THUMB_PIXELS and grid.stat().st_size <= THUMB_MAX_BYTES:
        return
    data = thumbnail_bytes(result.image)
    record["thumbnail"] = task["grid"].removesuffix(".png") + ".thumb.png"
    atomic_write(Path(task["out"]) / record["thumbnail"], lambda f: f.write(data))


def _is_empty(path: str) -> bool:
    try:
        return os.stat(path).st_size == 0
    except OSError:
        return False


def _failure(record: dict[str, Any], error: Exception, step: str, task: dict[str, Any]) -> None:
    """Fill in status and error for what went wrong at ``step`` (a skip, unsupported, or an error)."""
    from ..errors import CompanionFileError, UnknownFormatError, UnsupportedFormatError

    if isinstance(error, CompanionFileError):  # a Darknet .cfg, an ncnn .bin: audited with its main file
        record["status"], record["error"] = "skipped", one_line(error)
    elif isinstance(error, UnknownFormatError) and step == "detecting":
        # Never the file's first bytes (detect's message has them): it may be anyone's non-model file.
        record["status"] = "error" if task.get("claimed", True) else "skipped"
        record["error"] = NOT_A_MODEL + (" (an empty file)" if _is_empty(task["path"]) else "")
    elif isinstance(error, UnsupportedFormatError):
        record["status"], record["error"] = "unsupported", one_line(error)
    elif isinstance(error, MemoryError) or isinstance(error.__context__, MemoryError):
        limit = task.get("max_memory_text")
        record["error"] = f"ran out of memory while {step}" + (f" (--max-memory {limit})" if limit else "")
    else:
        record["error"] = one_line(error) if step != "drawing" else f"grid: {one_line(error)}"


def _remote_facts(record: dict[str, Any], source: Any, task: dict[str, Any]) -> None:
    """What a remote model cost: range requests and bytes fetched, the parent's look at its first bytes
    included (no sha256: that would download it)."""
    record["etag"] = task.get("etag")
    probed = task.get("probed", 0)
    record["requests"] = source.transfer.requests + (1 if probed else 0)
    record["bytes_read"] = source.transfer.bytes + probed


def audit_file(task: dict[str, Any]) -> dict[str, Any]:
    """The record of ``task["path"]``; the grid goes to ``task["out"]/task["grid"]`` (relative).

    A remote model (``task["url"]``) is read from its store by ranges; ``path`` is its redacted URL.
    """
    from .. import api, converters
    from ..remote import RemotePath
    from ..safeio import model_path
    from .health import assess

    started = time.perf_counter()
    source = model_path(task.get("url") or task["path"])
    remote = isinstance(source, RemotePath)
    record = empty_record(task["path"])
    step = "detecting"
    try:
        if remote:
            record["size"] = task.get("size") if task.get("is_folder") else source.stat().st_size
        elif not task.get("is_folder"):
            record["size"] = source.stat().st_size  # known even when nothing else is
        record["format"] = converters.detect(source).name
        step = "reading"
        if not isinstance(source, RemotePath):
            record["size"], record["sha256"] = size_and_sha256(source, task.get("is_folder", False))
        step = "loading"
        bank = api.load(source, format=record["format"])
        _describe(record, bank)
        step = "assessing"
        record["health"] = assess(bank)
        step = "drawing"
        _draw(record, bank, task)
        record["status"] = "ok"
    except Exception as e:  # noqa: BLE001 - the whole point: one record per file, whatever happens
        _failure(record, e, step, task)
    if remote:
        _remote_facts(record, source, task)
    record["seconds"] = round(time.perf_counter() - started, 4)
    return bounded_record(record)


def data_size() -> int:
    """Bytes of private data the process holds now (VmData on Linux; 0 where unknown)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cap_memory(extra: int) -> None:
    """Let this process allocate at most ``extra`` bytes beyond what it holds now (Linux).

    RLIMIT_DATA counts anonymous mappings (NumPy arrays) since Linux 4.7 but not read-only file maps
    (safetensors' mmap), so it bounds memory, not file size. Where VmData cannot be read the limit
    is not set (the time limit still holds).
    """
    base = data_size()
    if extra <= 0 or not base:
        return
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    want = base + extra if hard == resource.RLIM_INFINITY else min(base + extra, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (want, hard))


def encode_reply(record: dict[str, Any], recycle: bool) -> str:
    """One JSON line; a record that will not serialize (a bug of ours) still becomes an error record."""
    try:
        return json.dumps({"record": record, "recycle": recycle}, allow_nan=False)
    except (TypeError, ValueError) as e:
        broken = empty_record(record["path"])
        broken.update(error=f"internal error: record not serializable ({one_line(e)})", seconds=record["seconds"])
        return json.dumps({"record": broken, "recycle": recycle})


def serve(max_memory: int) -> None:
    """The worker loop: one JSON task per line on stdin, one JSON reply per line on the protocol pipe.

    The protocol pipe is the original stdout; fd 1 is pointed at stderr so that a stray print (or a C
    library writing to stdout) cannot corrupt a reply. Ctrl-C is the parent's to handle.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    import numpy  # noqa: F401 - warm the imports before measuring the baseline
    import PIL.Image  # noqa: F401

    from .. import api, renderer  # noqa: F401
    from . import health  # noqa: F401

    cap_memory(max_memory)
    replies.write(json.dumps({"ready": os.getpid()}) + "\n")
    replies.flush()
    for line in sys.stdin:
        record = audit_file(json.loads(line))
        # After running out of memory the heap may stay fragmented: hand over to a fresh process.
        recycle = bool(record["error"] and "out of memory" in record["error"])
        replies.write(encode_reply(record, recycle) + "\n")
        replies.flush()
        if recycle:
            break


if __name__ == "__main__":
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
