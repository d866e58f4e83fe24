"""The HTML report in a real headless browser: every row and grid there, images decoded, names inert."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from audit_zoo import HOSTILE_NAME, make_zoo
from conftest import run_cli

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="needs a headless Chromium (apt-get install chromium)")

HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--hide-scrollbars",
            "--virtual-time-budget=10000"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    zoo = make_zoo(tmp_path_factory.mktemp("zoo") / "models")
    out = tmp_path_factory.mktemp("html") / "out"
    result = run_cli("audit", zoo.root, "--out", out, "--quiet")
    assert result.returncode == 1, result.stderr
    return zoo, out, json.loads((out / "report.json").read_text())


def dump_dom(url: str, *flags: str) -> str:
    return subprocess.run([BROWSER, *HEADLESS, *flags, "--dump-dom", url], capture_output=True, text=True,
                          timeout=120).stdout


class Elements(HTMLParser):
    """Tags with their attributes, as the browser left the DOM."""

    def __init__(self, markup: str):
        super().__init__()
        self.found: list[tuple[str, dict[str, str]]] = []
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))

    def all(self, tag: str, **where: str) -> list[dict[str, str]]:
        return [a for t, a in self.found if t == tag and all(a.get(k) == v for k, v in where.items())]


def test_every_row_and_grid_is_in_the_browser_and_every_image_loads(report):
    _, out, document = report
    dom = Elements(dump_dom((out / "index.html").as_uri()))
    files = document["files"]
    ok = [r for r in files if r["status"] == "ok"]
    body = dom.all("body")[0]
    assert body["data-images"] == "ok", body
    assert body["data-images-loaded"] == f"{len(ok)}/{len(ok)}"
    rows = dom.all("tr")[1:]
    assert len(rows) == len(files)
    assert [r["data-status"] for r in rows] == [r["status"] for r in files]
    assert sorted(i["src"] for i in dom.all("img")) == sorted(r["thumbnail"] for r in ok)
    assert sorted(a["href"] for a in dom.all("a", **{"class": "thumb"})) == sorted(r["grid"] for r in ok)
    assert len(dom.all("div", **{"class": "card error"})) == len(files) - len(ok)


def test_file_names_are_text_not_markup(report):
    _, out, _ = report
    markup = (out / "index.html").read_text(encoding="utf-8")
    assert "&lt;img src=x onerror=alert(1)&gt;.npy" in markup
    dom = Elements(dump_dom((out / "index.html").as_uri()))
    assert not [a for _, a in dom.found if "onerror" in a], "a file name became an element"
    assert all(i["src"].startswith("grids/") for i in dom.all("img"))
    assert HOSTILE_NAME not in markup


def test_the_address_filters_rows_and_cards(report):
    _, out, document = report
    errors = sum(r["status"] != "ok" for r in document["files"])
    dom = dump_dom((out / "index.html").as_uri() + "#status=error")
    shown = [row for row in re.findall(r"<tr [^>]*data-status=\"(\w+)\"[^>]*>", dom)]
    hidden_rows = re.findall(r"<tr [^>]*hidden", dom)
    assert len(shown) - len(hidden_rows) == errors
    assert f"{errors} of {len(document['files'])} shown" in dom


def test_the_table_fits_1280_px_and_cards_follow_its_sort(report):
    _, out, document = report
    dom = dump_dom((out / "index.html").as_uri() + "#sort=-5", "--window-size=1280,2000")
    assert Elements(dom).all("body")[0]["data-table-fits"] == "true"
    rows = re.findall(r'<tr data-i="(\d+)"', dom)
    cards = re.findall(r'<div class="card \w+" data-i="(\d+)"', dom)
    assert rows == cards and len(rows) == len(document["files"])
    sizes = [document["files"][int(i)]["size"] for i in rows]
    assert sizes == sorted(sizes, reverse=True)  # column 5 is the size, -5 sorts it descending
    assert rows != [str(i) for i in range(len(rows))]


def test_sizes_are_human_and_sha256_is_shown(report):
    _, out, document = report
    markup = (out / "index.html").read_text(encoding="utf-8")
    conv = next(r for r in document["files"] if r["path"].endswith("/conv.npy"))
    assert f"sha256 {conv['sha256']}" in markup and conv["sha256"][:12] in markup
    assert re.search(r"\b\d(\.\d+)? KB\b", markup) and f">{conv['size']}<" not in markup


def test_self_contained_report_works_copied_alone(tmp_path_factory):
    zoo = make_zoo(tmp_path_factory.mktemp("zoo") / "models", fixtures=False)
    out = tmp_path_factory.mktemp("html") / "out"
    assert run_cli("audit", zoo.root, "--out", out, "--quiet", "--self-contained").returncode == 1
    alone = tmp_path_factory.mktemp("mailed") / "index.html"
    shutil.copy(out / "index.html", alone)
    dom = Elements(dump_dom(alone.as_uri()))
    ok = [r for r in json.loads((out / "report.json").read_text())["files"] if r["status"] == "ok"]
    assert dom.all("body")[0]["data-images"] == "ok"
    assert dom.all("body")[0]["data-images-loaded"] == f"{len(ok)}/{len(ok)}"
    assert all(i["src"].startswith("data:image/png;base64,") for i in dom.all("img"))
    assert not [a for a in dom.all("a") if a.get("href", "").startswith("grids/")]


def test_screenshot(report, tmp_path):
    _, out, _ = report
    shot = tmp_path / "report.png"
    subprocess.run([BROWSER, *HEADLESS, "--window-size=1280,1800", f"--screenshot={shot}", (out / "index.html").as_uri()],
                   capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000
