"""SVG and PDF output for slides (``-o grid.svg`` / ``-o grid.pdf``): the same pixels as the PNG, crisp."""

from __future__ import annotations

import base64
import dataclasses
import io
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from conftest import FIXTURES, run_cli
from PIL import Image

import filtergrid
from filtergrid import api
from filtergrid.renderer import RenderOptions, render_result, save, slides
from filtergrid.renderer.output import save_image
from filtergrid.untrusted import MAX_NAME_CHARS


SVG = "{http://www.w3.org/2000/svg}"
XLINK = "{http://www.w3.org/1999/xlink}"
MODEL = FIXTURES / "onnx/cnn.onnx"


TITLE = 'a <b> & "c" \x1b[31m'


@pytest.fixture(scope="module")
def rendered():
    """A grid with labels, title and colour bar, rendered in-process (so mutmut traces what it calls)."""
    bank = api.load(MODEL)
    options = RenderOptions(labels=True, normalize="symmetric", channels="mean", title=TITLE)
    return render_result(bank, options), bank


@pytest.fixture
def outputs(rendered, tmp_path):
    """The same grid as PNG, SVG and PDF, each written by ``save`` in this process."""
    for suffix in ("png", "svg", "pdf"):
        save(*rendered, tmp_path / f"grid.{suffix}")
    return tmp_path


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(int)


def test_svg_embeds_the_png_pixel_for_pixel_and_is_crisp(outputs):
    png = Image.open(outputs / "grid.png")
    root = ET.parse(outputs / "grid.svg").getroot()
    assert root.tag == f"{SVG}svg"
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == (
        str(png.width), str(png.height), f"0 0 {png.width} {png.height}")
    image = root.find(f"{SVG}image")
    assert (image.get("width"), image.get("height")) == (str(png.width), str(png.height))
    assert image.get("style").endswith("image-rendering:pixelated")
    href = image.get(f"{XLINK}href")
    assert href.startswith("data:image/png;base64,")
    embedded = Image.open(io.BytesIO(base64.b64decode(href.split(",", 1)[1])))
    assert embedded.size == png.size and np.array_equal(_pixels(embedded), _pixels(png))
    assert embedded.text["tensor"] == "conv1.weight"  # the PNG's provenance travels with it


def test_svg_title_from_the_user_or_the_file_is_escaped(outputs):
    raw = (outputs / "grid.svg").read_text()
    assert "<b>" not in raw and "\x1b" not in raw
    title = ET.parse(outputs / "grid.svg").getroot().find(f"{SVG}title").text
    assert title == 'a <b> & "c" \\x1b[31m'  # XML-escaped in the file, the terminal escape shown as text


def _jpeg_of(pdf: bytes) -> Image.Image:
    match = re.search(rb"/Filter /DCTDecode.*?stream\r?\n", pdf, re.DOTALL)
    return Image.open(io.BytesIO(pdf[match.end():pdf.index(b"endstream", match.end())]))


def _info(pdf: bytes, key: bytes) -> str:
    """A string of the PDF's Info dictionary (Pillow writes UTF-16 with PDF string escapes)."""
    value = re.search(rb"/" + key + rb" \((.*?)\)\n", pdf, re.DOTALL)[1]
    return re.sub(rb"\\([\\()])", rb"\1", value).decode("utf-16")


def test_pdf_is_one_page_of_the_grid_in_points_with_pixels_kept(outputs):
    png = Image.open(outputs / "grid.png")
    pdf = (outputs / "grid.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and len(re.findall(rb"/Type /Page\b", pdf)) == 1
    box = re.search(rb"/MediaBox \[ 0 0 ([\d.]+) ([\d.]+) \]", pdf)
    assert (float(box[1]), float(box[2])) == (png.width, png.height)  # one point per pixel
    embedded = _jpeg_of(pdf)
    k = slides.pdf_factor(png.size)
    assert k == 8 and embedded.size == (png.width * k, png.height * k)
    enlarged = np.repeat(np.repeat(_pixels(png), k, axis=0), k, axis=1)
    assert np.abs(_pixels(embedded) - enlarged).max() <= 2  # each pixel one flat JPEG block
    assert _info(pdf, b"Creator") == f"filtergrid {filtergrid.__version__}"
    assert _info(pdf, b"Title") == 'a <b> & "c" \\x1b[31m'  # the title from the options, its escape shown as text


def test_pdf_enlargement_stays_within_its_limits():
    assert slides.pdf_factor((300, 300)) == 8
    assert slides.pdf_factor((1000, 1000)) == 4
    assert slides.pdf_factor((5000, 5000)) == 1
    assert slides.pdf_factor((20_000, 10)) == 2  # a long strip: the JPEG side limit decides
    for size in ((300, 300), (1000, 1000), (3000, 1500), (20_000, 10)):
        k = slides.pdf_factor(size)
        assert size[0] * size[1] * k * k <= slides.MAX_PDF_PIXELS and max(size) * k <= slides.MAX_JPEG_SIDE


def test_pdf_of_a_large_grid_is_enlarged_twice_and_keeps_its_pixels(tmp_path):
    blocks = np.random.default_rng(0).integers(0, 256, size=(250, 375, 3), dtype=np.uint8)
    grid = np.kron(blocks, np.ones((4, 4, 1), dtype=np.uint8))  # 1500 x 1000, flat 4x4 blocks
    image = Image.fromarray(grid, mode="RGB")
    assert slides.pdf_factor(image.size) == 2
    pdf = save_image(image, tmp_path / "big.pdf", title="t" * 1000).read_bytes()
    box = re.search(rb"/MediaBox \[ 0 0 ([\d.]+) ([\d.]+) \]", pdf)
    assert (float(box[1]), float(box[2])) == (1500, 1000)  # still one point per pixel
    embedded = _jpeg_of(pdf)
    assert embedded.size == (3000, 2000)  # each 4x4 block of pixels is one 8x8 JPEG block
    assert np.abs(_pixels(embedded) - np.repeat(np.repeat(grid.astype(int), 2, axis=0), 2, axis=1)).max() <= 2
    title = _info(pdf, b"Title")  # a long title is cut to the length of a name
    assert title == "t" * MAX_NAME_CHARS + "... (800 more characters)"


def test_svg_titles_default_to_the_model_and_tensor_and_to_nothing(rendered, tmp_path):
    result, bank = rendered
    untitled = dataclasses.replace(result, options=dataclasses.replace(result.options, title=None))
    root = ET.parse(save(untitled, bank, tmp_path / "model.svg")).getroot()
    assert root.find(f"{SVG}title").text == f"{MODEL} conv1.weight"
    root = ET.parse(save_image(result.image, tmp_path / "image.svg")).getroot()
    assert root.find(f"{SVG}title").text is None  # save_image without a title: an empty <title/>
    assert (root.get("width"), root.get("height")) == tuple(map(str, result.image.size))


@pytest.mark.parametrize("suffix", ["svg", "pdf"])
def test_diff_writes_slides_too(tmp_path, suffix):
    out = tmp_path / f"diff.{suffix}"
    a, b = FIXTURES / "safetensors/cnn.safetensors", FIXTURES / "safetensors/cnn_fp16.safetensors"
    assert run_cli("diff", a, b, "-o", out, "-q").returncode == 0
    png = tmp_path / "diff.png"
    run_cli("diff", a, b, "-o", png, "-q")
    width, height = Image.open(png).size
    if suffix == "svg":
        root = ET.parse(out).getroot()
        assert (root.get("width"), root.get("height")) == (str(width), str(height))
    else:
        k = slides.pdf_factor((width, height))
        assert _jpeg_of(out.read_bytes()).size == (width * k, height * k)


def test_an_unknown_suffix_is_refused_before_reading_the_models(tmp_path):
    not_a_model = tmp_path / "notes.txt"
    not_a_model.write_text("not a model")
    result = run_cli("diff", MODEL, not_a_model, "-o", tmp_path / "out.xyz")
    assert result.returncode == 2 and "end the name in .png, .svg, .pdf" in result.stderr


def test_svg_text_is_always_well_formed_xml():
    hostile = "\ufffe\uffff\x00\ud800 ]]> <!-- & " + "x" * 10_000
    root = ET.fromstring(slides.svg_document(b"", (3, 2), hostile))
    assert root.find(f"{SVG}title").text.startswith("\\ufffe\\uffff\\x00\\ud800 ]]> <!-- & ")
    assert len(root.find(f"{SVG}title").text) < 300
