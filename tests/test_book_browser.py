"""The built book, read in a real browser: every page of _build/html served on 127.0.0.1 and
opened in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright; nothing downloads
a browser). A page fails on: a raw LaTeX delimiter in its text, a broken image, a Python
traceback or a library warning in an output, a request to any host but 127.0.0.1, a widget that
did not render, a JavaScript error, or an absolute path of the machine that built it.

    LABKIT_BOOK_HTML=_build/html pytest tests/test_book_browser.py   # after `make book`

Screenshots of the intro, one method chapter and the summary go to $LABKIT_BROWSER_ARTIFACTS
(default _build/browser-artifacts; not committed). Without a built book the book test skips;
the checker's own tests (a broken image, a raw $$) run whenever Chromium is there.
"""
from __future__ import annotations

import functools
import http.server
import os
import re
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("LABKIT_CHROMIUM", "/usr/bin/chromium")
BOOK = Path(os.environ.get("LABKIT_BOOK_HTML", ROOT / "_build" / "html"))
ARTIFACTS = Path(os.environ.get("LABKIT_BROWSER_ARTIFACTS", ROOT / "_build" / "browser-artifacts"))
SCREENSHOTS = {"intro": "book/intro.html", "method-chapter": "notebooks/03_lora.html",
               "summary": "notebooks/11_summary.html"}
SKIP_PAGES = {"genindex.html", "search.html", "py-modindex.html"}
# JavaScript errors that are the theme's, not the book's: jupyter-book 1.0.4 with sphinx-thebe 0.3.1
# writes sphinx-thebe's `const THEBE_JS_URL = ...` config script twice into every page (thebe itself
# only loads on a "launch" click, which the book does not offer).
KNOWN_JS_ERRORS = ("Identifier 'THEBE_JS_URL' has already been declared",)

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} "
                                "(Debian: apt-get install chromium)")

# Text a reader must never see. Code blocks are left out: they may show `$` or paths on purpose.
RAW_TEX = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{|\\frac\{|\$[^$\n]{0,80}\\[a-zA-Z]+[^$\n]{0,80}\$")
WARNING = re.compile(r"\b(\w*Warning): |\bwarnings\.warn\(")
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\w+Error: ", re.MULTILINE)
BUILD_PATHS = [str(ROOT), "/site-packages/", "/home/", "/root/", "/Users/", "/work/", "/tmp/", "C:\\Users"]

# In the page: the text outside code blocks, outputs' text, images, widgets.
PAGE_FACTS = """() => {
  const article = document.querySelector('main, article, .bd-article') || document.body;
  const clone = article.cloneNode(true);
  clone.querySelectorAll('pre, code, .highlight, mjx-container, .MathJax, script, style')
    .forEach(e => e.remove());
  const outputs = [...document.querySelectorAll('.cell_output, .output')].map(e => e.innerText);
  const images = [...document.querySelectorAll('img')].map(i => ({src: i.getAttribute('src'),
      ok: i.complete && i.naturalWidth > 0}));
  const views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length;
  const rendered = document.querySelectorAll('.jupyter-widgets, .widget-box, .widget-inline-hbox').length;
  return {text: clone.innerText, outputs, images, views, rendered, all: document.body.innerText};
}"""


def problems_on(page, url: str, wait_ms: int = 1500) -> list[str]:
    """Open `url` in `page` and return what is wrong with it (empty list: nothing)."""
    found: list[str] = []
    origin = re.match(r"https?://[^/]+", url).group(0)

    def on_request(request):
        if not (request.url.startswith(origin) or request.url.split(":")[0] in ("data", "blob", "about")):
            found.append(f"request to another host: {request.url[:120]}")

    page.on("request", on_request)
    page.on("pageerror", lambda err: None if any(k in str(err) for k in KNOWN_JS_ERRORS)
            else found.append(f"JavaScript error: {str(err)[:160]}"))
    page.goto(url, wait_until="load")
    for _ in range(3):  # a page that redirects (the root index.html) is read where it lands
        try:
            page.evaluate("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
            page.wait_for_timeout(wait_ms)  # widgets render after load
            facts = page.evaluate(PAGE_FACTS)
            break
        except playwright.Error as err:
            if "navigation" not in str(err):
                raise
            page.wait_for_load_state("load")
    page.remove_listener("request", on_request)
    for match in sorted({m.group(0) for m in RAW_TEX.finditer(facts["text"])})[:3]:
        found.append(f"raw LaTeX in the text: {match[:60]!r}")
    for image in facts["images"]:
        if not image["ok"]:
            found.append(f"broken image: {image['src']}")
    outputs = "\n".join(facts["outputs"])
    for match in sorted({m.group(0) for m in TRACEBACK.finditer(outputs)})[:2]:
        found.append(f"traceback in an output: {match!r}")
    for match in sorted({m.group(1) or m.group(0) for m in WARNING.finditer(outputs)})[:3]:
        found.append(f"library warning in an output: {match}")
    if facts["views"] and facts["rendered"] == 0:
        found.append(f"{facts['views']} widget(s) not rendered")
    for path in BUILD_PATHS:
        if path in facts["all"]:
            found.append(f"absolute build path on the page: {path}")
    return found


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def serve():
    """serve(folder) -> base URL of `folder` on 127.0.0.1; servers stop after the module."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(_Quiet, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with playwright.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
            viewport={"width": 1280, "height": 900})
        yield context
        context.close()


# ---- the checker catches what it must (no built book needed) -----------------------------------
BROKEN = {
    "image.html": '<main><p>A figure:</p><img src="missing.png"></main>',
    "dollars.html": "<main><p>The update is $$W' = W + BA$$ here.</p></main>",
    "inline.html": r"<main><p>with $\alpha$ unrendered</p></main>",
    "traceback.html": '<main><div class="cell_output"><pre>Traceback (most recent call last):\n'
    "ValueError: x</pre></div></main>",
    "warning.html": '<main><div class="cell_output"><pre>/x/y.py:3: FutureWarning: gone</pre></div></main>',
    "path.html": f"<main><p>saved to {ROOT}/artifacts/x</p></main>",
    "remote.html": '<main><img src="https://cdn.example.invalid/x.png"></main>',
    "widget.html": '<main><script type="application/vnd.jupyter.widget-view+json">{"model_id": "1"}'
    "</script></main>",
    "good.html": "<main><p>Fine: <code>$$</code> in code is allowed, and so is $5.</p>"
    '<img src="data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7" '
    'width="1"></main>',
}


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory, serve):
    folder = tmp_path_factory.mktemp("site")
    for name, body in BROKEN.items():
        (folder / name).write_text(f"<!doctype html><html><body>{body}</body></html>")
    return serve(folder)


@pytest.mark.parametrize("name, words", [
    ("image.html", "broken image: missing.png"), ("dollars.html", "raw LaTeX in the text: '$$'"),
    ("inline.html", "raw LaTeX"), ("traceback.html", "traceback in an output"),
    ("warning.html", "library warning in an output: FutureWarning"),
    ("path.html", "absolute build path"), ("remote.html", "request to another host"),
    ("widget.html", "widget(s) not rendered"),
])
def test_checker_fails_a_broken_page(browser, broken_site, name, words):
    page = browser.new_page()
    found = problems_on(page, f"{broken_site}/{name}", wait_ms=100)
    page.close()
    assert any(words in line for line in found), found


def test_checker_passes_a_clean_page(browser, broken_site):
    page = browser.new_page()
    assert problems_on(page, f"{broken_site}/good.html", wait_ms=100) == []
    page.close()


# ---- the built book ----------------------------------------------------------------------------
@pytest.mark.skipif(not (BOOK / "index.html").exists(), reason=f"no built book at {BOOK} (make book)")
def test_every_page_of_the_built_book(browser, serve):
    base = serve(BOOK)
    pages = sorted(p.relative_to(BOOK).as_posix() for p in BOOK.rglob("*.html")
                   if not p.relative_to(BOOK).parts[0].startswith("_") and p.name not in SKIP_PAGES)
    assert "notebooks/11_summary.html" in pages
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    report = {}
    for rel in pages:
        page = browser.new_page()
        found = problems_on(page, f"{base}/{rel}")
        for shot, shot_rel in SCREENSHOTS.items():
            if rel == shot_rel:
                page.screenshot(path=str(ARTIFACTS / f"{shot}.png"), full_page=True)
        page.close()
        if found:
            report[rel] = found
    (ARTIFACTS / "report.txt").write_text("".join(f"{p}:\n" + "".join(f"  {x}\n" for x in f)
                                                  for p, f in report.items()) or "no problems\n")
    assert not report, "\n".join(f"{p}: {'; '.join(f)}" for p, f in report.items())
    if (BOOK / "notebooks" / "11_summary.html").exists():
        html = (BOOK / "notebooks" / "11_summary.html").read_text()
        # myst-nb writes an SVG output inline or as an image file under _images/ (the page check above
        # already fails on an image that does not load)
        svg_files = [src for src in re.findall(r'<img[^>]+src="([^"]+\.svg)"', html)
                     if (BOOK / "notebooks" / src).resolve().is_file()]
        assert "<svg" in html or svg_files, "the decision flow was not rendered into the summary page"
