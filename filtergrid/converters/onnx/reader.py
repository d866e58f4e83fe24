"""The ONNX Reader: walk the file once when opened, decode one tensor when asked."""

from __future__ import annotations

import numpy as np

from ...bank import Producer, TensorInfo
from ...errors import CorruptFileError
from ...safeio import ModelPath, map_readonly
from ..base import lookup
from .decode import Decoder
from .listing import list_tensors
from .walk import GraphWalk
from .wire import ModelParser


class OnnxReader:
    def __init__(self, path: ModelPath) -> None:
        try:
            self.mm = map_readonly(path)  # a remote model: its RangeFile, read by ranges
        except IsADirectoryError:
            raise CorruptFileError("an ONNX model is a file, not a folder") from None
        except ValueError:
            raise CorruptFileError("empty file") from None
        try:
            parser = ModelParser(self.mm)
            graph = parser.model()
            uses = GraphWalk(parser.functions).run(graph)
            self.entries = list_tensors(uses, parser.tensors)
            self.written_by = parser.written_by
        except BaseException:
            self.mm.close()
            raise
        self.decoder = Decoder(self.mm, path.parent)

    def tensors(self) -> list[TensorInfo]:
        return [e.info for e in self.entries.values()]

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        entry = lookup(self.entries, name)
        values = self.decoder.decode(entry.tensor, rows)
        if entry.quant is None:
            return values
        length = entry.tensor.dims[0] if rows is not None and entry.tensor.dims else None
        return self.decoder.dequantize(values, entry.quant, name, length)

    def producer(self) -> Producer | None:
        w = self.written_by
        ir = f"ONNX IR version {w['ir_version']}" if "ir_version" in w else ""
        return Producer.recorded(w.get("producer_name"), w.get("producer_version"), ir,
                                 " + ".join(f"{domain} {version}" for domain, version in w["opsets"]))

    def close(self) -> None:
        self.mm.close()
