"""SVG and PDF of a rendered grid, for slides: the grid's pixels stay sharp squares at any zoom.

Both embed the picture rather than drawing it as vectors: a grid *is* pixels, and the annotation
layer (:mod:`.annotate`) draws the title, tile indices and colour-bar labels into the same image
with positions measured in pixels of that image's font. So the text is part of the embedded image,
not SVG ``<text>``; the title is also the SVG's ``<title>`` and the PDF's Title (searchable).

* SVG: the PNG that ``-o grid.png`` writes (same bytes, provenance chunks included), inline, drawn
  with ``image-rendering: pixelated`` so browsers and slide tools scale it without smoothing.
* PDF (Pillow's writer): a page of one point per pixel. Pillow stores RGB as JPEG, so the image is
  first enlarged ``k`` times by repeating pixels, ``k`` = 8 when it fits :data:`MAX_PDF_PIXELS`: each
  pixel then fills exactly one 8x8 JPEG block, which quality 100 keeps flat (within 1-2 levels of
  8 bits), and a viewer that smooths images blurs only 1/8 of a pixel at each edge.
"""

from __future__ import annotations

import base64
from typing import BinaryIO

from PIL import Image

from ..untrusted import MAX_NAME_CHARS, terminal, xml_text

#: Pixels of the enlarged image embedded in a PDF (RGB: 3 bytes each in memory while it is written).
MAX_PDF_PIXELS = 16_000_000
#: Enlargements tried, largest first; 8 makes each pixel one JPEG block.
PDF_FACTORS = (8, 4, 2, 1)
#: Longest side of a JPEG.
MAX_JPEG_SIDE = 65_500
#: Tried in order by viewers that know some but not all of them (later wins where understood).
_PIXELATED = "image-rendering:optimizeSpeed;image-rendering:crisp-edges;image-rendering:pixelated"


def svg_document(png: bytes, size: tuple[int, int], title: str) -> bytes:
    """An SVG of ``size`` pixels showing ``png`` pixel for pixel, titled ``title`` (untrusted: escaped)."""
    width, height = size
    data = base64.b64encode(png).decode("ascii")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">\n'
        f"<title>{xml_text(title)}</title>\n"
        f'<image x="0" y="0" width="{width}" height="{height}" preserveAspectRatio="none" '
        f'style="{_PIXELATED}" xlink:href="data:image/png;base64,{data}"/>\n'
        "</svg>\n"
    ).encode()


def pdf_factor(size: tuple[int, int]) -> int:
    """How many times the image is enlarged in a PDF: the largest of PDF_FACTORS that fits the limits."""
    width, height = size
    return next((k for k in PDF_FACTORS if width * height * k * k <= MAX_PDF_PIXELS
                 and max(width, height) * k <= MAX_JPEG_SIDE), 1)


def write_pdf(image: Image.Image, f: BinaryIO, title: str) -> None:
    """One page of ``image.size`` points holding the image, enlarged by :func:`pdf_factor`."""
    from .. import __version__

    k = pdf_factor(image.size)
    rgb = image.convert("RGB")
    page = rgb.resize((rgb.width * k, rgb.height * k), Image.Resampling.NEAREST) if k > 1 else rgb
    page.save(f, format="PDF", resolution=72.0 * k, quality=100, subsampling=0, optimize=True,
              title=terminal(title, MAX_NAME_CHARS), creator=f"filtergrid {__version__}")
