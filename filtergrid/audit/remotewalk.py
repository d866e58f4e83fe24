"""Find the models under a remote PATH (``s3://bucket/prefix/``, ``gs://``, ``hf://``, an ``https://`` file).

The same rule as the local walk, from one listing of the prefix: names and sizes (and the store's
ETag), plus the first bytes by one small range read only for a file whose suffix claims no model
format. Nothing a file says is parsed here. An HTTP(S) URL names one file (a server lists no
folders). A prefix that cannot be listed (no such bucket, access denied) stays one named model, so
its worker turns the store's answer into an error record.
"""

from __future__ import annotations

import fnmatch
import posixpath
from typing import Any

from ..converters.base import natural_key
from ..errors import FiltergridError, LimitError
from ..remote import FsspecTransport, RemotePath, redact
from .walk import HEAD_BYTES, NOT_A_MODEL, Found, Walk, has_signature, marks_model_folder, model_suffixes


def _model_folders(keys: list[str], prefix: str) -> list[str]:
    """Folders below ``prefix`` (and itself) that are one model by their names, shallowest first,
    each as ``folder/``; the local walk's rule (:func:`marks_model_folder`) on the listing."""
    names: dict[str, set[str]] = {}  # folder -> the names of its files and subfolders
    files: dict[str, set[str]] = {}
    root = prefix.rstrip("/")
    for key in keys:
        parts = key[len(prefix):].split("/")
        folder = root
        for part in parts:
            names.setdefault(folder, set()).add(part)
            folder = f"{folder}/{part}"
        files.setdefault(posixpath.dirname(key), set()).add(parts[-1])
    marked = sorted((f for f, n in names.items() if marks_model_folder(sorted(n), files.get(f, set()).__contains__)),
                    key=lambda f: (f.count("/"), f))
    kept: list[str] = []
    for folder in marked:
        if not any(folder.startswith(outer + "/") for outer in kept):
            kept.append(folder)
    return [f + "/" for f in kept]


class _Lister:
    def __init__(self, url: str, transport: FsspecTransport, pattern: str | None, result: Walk):
        self.scheme = url.partition("://")[0]
        self.transport, self.pattern, self.result = transport, pattern, result
        self.suffixes = model_suffixes()
        self.done: set[str] = set()  # model folders already added

    def url(self, key: str) -> str:
        return f"{self.scheme}://{key}"

    def matches(self, relative: str) -> bool:
        return not self.pattern or fnmatch.fnmatch(posixpath.basename(relative.rstrip("/")), self.pattern) \
            or fnmatch.fnmatch(relative.rstrip("/"), self.pattern)

    def add_file(self, key: str, info: dict[str, Any], relative: str) -> None:
        if not self.matches(relative):
            return
        size = int(info.get("size") or 0)
        claimed = posixpath.splitext(key)[1].lower() in self.suffixes
        head = b""
        if not claimed:
            try:
                head = self.transport.fetch(self.url(key), 0, min(size, HEAD_BYTES)) if size else b""
            except FiltergridError as e:  # gone or refused since the listing
                self.result.skipped.append((redact(self.url(key)), f"cannot read ({e.reason})"))
                return
            if not has_signature(head, size):
                self.result.skipped.append((redact(self.url(key)), NOT_A_MODEL))
                return
        self.result.models.append(Found(self.url(key), claimed=claimed, size=size, etag=_etag(info), probed=len(head)))

    def add_folder(self, folder: str, prefix: str, listing: dict[str, dict[str, Any]]) -> None:
        relative = folder[len(prefix):]
        if not relative or self.matches(relative):  # the prefix named is always audited
            size = sum(int(info.get("size") or 0) for key, info in listing.items() if key.startswith(folder))
            self.result.models.append(Found(self.url(folder.rstrip("/")), is_folder=True, size=size))

    def add_listing(self, prefix: str, listing: dict[str, dict[str, Any]]) -> None:
        """In name order; a model folder where its first file would be, its files not on their own."""
        folders = _model_folders(list(listing), prefix)
        for key in sorted(listing, key=natural_key):
            folder = next((f for f in folders if key.startswith(f)), None)
            if folder is None:
                self.add_file(key, listing[key], key[len(prefix):])
            elif folder not in self.done:
                self.done.add(folder)
                self.add_folder(folder, prefix, listing)


def _etag(info: dict[str, Any]) -> str | None:
    tag = info.get("ETag") or info.get("etag") or info.get("md5Hash")
    return str(tag).strip('"')[:200] if tag else None


def list_remote(url: str, pattern: str | None, result: Walk) -> None:
    """Append the models under ``url`` (and what was passed over) to ``result``."""
    remote = RemotePath(url)
    if not isinstance(remote.transport, FsspecTransport):
        result.models.append(Found(url))  # an HTTP(S) file: the worker reads it by ranges
        return
    key = remote.transport.fs._strip_protocol(url)
    try:
        listing = remote.transport.find(url)
    except LimitError:
        raise
    except FiltergridError:
        listing = {}
    prefix = key.rstrip("/") + "/"
    if not listing or list(listing) == [key.rstrip("/")]:  # a single object, or nothing listable
        info = next(iter(listing.values()), {})
        result.models.append(Found(url, size=info.get("size"), etag=_etag(info)))
        return
    _Lister(url, remote.transport, pattern, result).add_listing(prefix, listing)
