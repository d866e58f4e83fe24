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
from ..converters.hf import WEIGHT_FILES
from ..errors import FiltergridError, LimitError
from ..remote import FsspecTransport, RemotePath, redact
from .walk import HEAD_BYTES, NOT_A_MODEL, Found, Walk, has_signature, model_suffixes


def _model_folders(keys: list[str]) -> list[str]:
    """Folders (``prefix/``) holding ``config.json`` beside a known weight file, shallowest first."""
    names: dict[str, set[str]] = {}
    for key in keys:
        folder, name = posixpath.split(key)
        names.setdefault(folder, set()).add(name)
    folders = sorted((f for f, n in names.items() if "config.json" in n and n & set(WEIGHT_FILES)),
                     key=lambda f: (f.count("/"), f))
    kept: list[str] = []
    for folder in folders:
        if not any(folder.startswith(outer + "/") for outer in kept):
            kept.append(folder)
    return [f + "/" for f in kept]


class _Lister:
    def __init__(self, url: str, transport: FsspecTransport, pattern: str | None, result: Walk):
        self.scheme = url.partition("://")[0]
        self.transport, self.pattern, self.result = transport, pattern, result
        self.suffixes = model_suffixes()

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
        if not claimed:
            head = self.transport.fetch(self.url(key), 0, min(size, HEAD_BYTES)) if size else b""
            if not has_signature(head, size):
                self.result.skipped.append((redact(self.url(key)), NOT_A_MODEL))
                return
        self.result.models.append(Found(self.url(key), claimed=claimed, size=size, etag=_etag(info)))

    def add_listing(self, prefix: str, listing: dict[str, dict[str, Any]]) -> None:
        keys = sorted(listing, key=natural_key)
        folders = _model_folders(keys)
        for folder in folders:
            if self.matches(folder[len(prefix):] or folder):
                size = sum(int(listing[k].get("size") or 0) for k in keys if k.startswith(folder))
                self.result.models.append(Found(self.url(folder.rstrip("/")), is_folder=True, size=size))
        for key in keys:
            if not any(key.startswith(folder) for folder in folders):
                self.add_file(key, listing[key], key[len(prefix):] or posixpath.basename(key))


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
