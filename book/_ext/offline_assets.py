"""Sphinx extension: serve MathJax and the ipywidgets manager from the book itself.

`_config.yml` points `mathjax_path` and `nb_ipywidgets_js` at copies under
book/vendor/static, which `make book` installs from npm. When those copies are missing (no npm),
the book still builds: this extension falls back to the libraries' CDN defaults and lists the
pages that will need a network connection for their math or widgets.
"""
from __future__ import annotations

from pathlib import Path

from myst_nb.core.config import ipywidgets_js_factory
from sphinx.ext.mathjax import MATHJAX_URL
from sphinx.util import logging

logger = logging.getLogger(__name__)


def _use_cdn_if_missing(app, config) -> None:
    static = [Path(app.confdir, folder) for folder in config.html_static_path]
    wanted = [config.mathjax_path, *config.nb_ipywidgets_js]
    missing = [f for f in wanted if "://" not in f and not any((s / f).is_file() for s in static)]
    app.offline_assets_missing = missing
    if missing:
        config.mathjax_path = MATHJAX_URL
        config.nb_ipywidgets_js = ipywidgets_js_factory()
        config.html_static_path = [f for f in config.html_static_path if Path(app.confdir, f).is_dir()]
        logger.info(f"offline_assets: {', '.join(missing)} not vendored (run `make book` with npm); "
                    "math and widgets will load from a CDN")


def _list_online_pages(app, exception) -> None:
    if exception or not getattr(app, "offline_assets_missing", None):
        return
    cdn = {"math": MATHJAX_URL, "widgets": next(iter(ipywidgets_js_factory()))}
    outdir = Path(app.outdir)
    for page in sorted(outdir.rglob("*.html")):
        html = page.read_text(errors="replace")
        needs = [what for what, url in cdn.items() if url in html]
        if needs:
            logger.info(f"needs a network for {' and '.join(needs)}: {page.relative_to(outdir)}")


def setup(app):
    app.connect("config-inited", _use_cdn_if_missing)
    app.connect("build-finished", _list_online_pages)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
