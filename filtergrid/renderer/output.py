"""Writing a rendered grid to disk: atomically, in the format its suffix names, PNGs with provenance,
SVG and PDF for slides."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from PIL import Image, PngImagePlugin

from ..bank import FilterBank
from ..errors import FiltergridError, UsageError
from ..safeio import atomic_write
from ..untrusted import terminal
from . import slides

if TYPE_CHECKING:
    from .core import RenderResult

#: Encoder settings for formats whose defaults would blur a pixel grid.
_ENCODER_OPTIONS: dict[str, dict[str, Any]] = {
    "JPEG": {"quality": 95, "subsampling": 0},
    "WEBP": {"lossless": True},
}


def image_format(path: str | os.PathLike) -> str:
    """The format a file name asks for (``grid.png`` -> PNG, ``grid.svg`` -> SVG), or a usage error."""
    suffix = Path(path).suffix.lower()
    fmt = "SVG" if suffix == ".svg" else Image.registered_extensions().get(suffix)
    if fmt is None or (fmt != "SVG" and fmt not in Image.SAVE):
        raise UsageError(f"cannot tell an image format from {Path(path).name!r}; end the name in .png, .svg, .pdf, "
                         ".jpg, .webp or another suffix Pillow writes")
    return fmt


def png_text(result: RenderResult, bank: FilterBank) -> PngImagePlugin.PngInfo:
    """Text chunks that say where the picture came from (read back with ``Image.open(p).text``)."""
    from .. import __version__

    p = bank.provenance
    options = result.options
    info = PngImagePlugin.PngInfo()
    fields = {
        "source": p.source,
        "format": p.format,
        "tensor": p.tensor,
        "original_shape": "x".join(str(d) for d in p.original_shape),
        "dtype": p.original_dtype,
        "layout": p.layout,
        "chosen_by": p.chosen_by,
        "normalization": options.normalize,
        "cmap": options.cmap or ("gray" if result.one_channel else "none (RGB tiles)"),
        "channels": options.channels,
        "scale": str(result.scale),
        "filtergrid_version": __version__,
        "Software": f"filtergrid {__version__}",
    }
    if result.notes:
        fields["notes"] = "; ".join(result.notes)
    for key, value in fields.items():
        info.add_text(key, terminal(value))  # untrusted names: escaped; UTF-8 iTXt for non-Latin-1
    return info


def save(result: RenderResult, bank: FilterBank, path: str | os.PathLike) -> Path:
    """Write ``result.image`` to ``path`` through a temporary file; returns the path written."""
    title = result.options.title or f"{bank.provenance.source} {bank.provenance.tensor}"
    return save_image(result.image, path, title=title, pnginfo=png_text(result, bank))


def save_image(image: Image.Image, path: str | os.PathLike, *, title: str = "",
               pnginfo: PngImagePlugin.PngInfo | None = None) -> Path:
    """Write ``image`` atomically in the format ``path``'s suffix names: PNG (with ``pnginfo``), SVG or
    PDF for slides (:mod:`.slides`; ``title`` is their title, untrusted), or another Pillow format."""
    fmt = image_format(path)

    def write(f: BinaryIO) -> None:
        if fmt == "SVG":
            png = io.BytesIO()
            image.save(png, format="PNG", pnginfo=pnginfo)
            f.write(slides.svg_document(png.getvalue(), image.size, title))
        elif fmt == "PDF":
            slides.write_pdf(image, f, title)
        else:
            image.save(f, format=fmt, **({"pnginfo": pnginfo} if fmt == "PNG" else _ENCODER_OPTIONS.get(fmt, {})))

    try:
        return atomic_write(path, write)
    except (OSError, ValueError, KeyError) as e:
        detail = " ".join(str(e).split()) or type(e).__name__
        raise FiltergridError(f"cannot write {fmt} image {path}: {detail}") from e
