"""The built book, opened in a real (headless) Chromium with the network off.

Serves book/_build/html from a local http.server on 127.0.0.1, opens index.html and every page
linked from its left navigation, and fails on: any request to another host (blocked and recorded),
console errors, uncaught page errors, same-host resources that answer >= 400, images that did
not load (naturalWidth 0), and internal links that answer 404. It also checks that pages are
readable, on a desktop and on a phone-sized window: every image is shown at >= 90% of its natural
width or has a full-size link beside it, and no table is wider than the text column unless it
scrolls inside a container of its own. Each chapter's interactive figure opens in the browser
(not as a download) and draws its chart offline. Saves a full-page screenshot of each page into
$PLMDEPTH_SCREENSHOTS (default: pytest's tmp_path) for a person to look at (`<page>.png` on the
desktop, `<page>.narrow.png` on the phone-sized window).

Needs Debian's Chromium at /usr/bin/chromium (scripts/install_browser.sh installs it) and the
`playwright` PyPI package, which drives that system browser (no `playwright install`).
"""

import functools
import http.server
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "book" / "_build" / "html"
CHROMIUM = Path("/usr/bin/chromium")
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
# pages that must be in the book's navigation, whatever else it links
REQUIRED_PAGES = {
    "chapters/logit_lens.html",
    "chapters/layer_skipping.html",
    "chapters/contributions.html",
    "chapters/cross_model.html",
    "chapters/depth_ladder.html",
}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
    # belt and braces under the request interception: no other host even resolves
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]
TIMEOUT_MS = 60_000
WIDE = {"width": 1366, "height": 900}
NARROW = {"width": 420, "height": 900}
# an image shown narrower than this fraction of its natural width needs a full-size link
MIN_SCALE = 0.9

# Waits for every <img> (made eager, so none stays lazily unloaded) and reports each one.
IMAGES_JS = """
async () => {
  const imgs = Array.from(document.images);
  await Promise.all(imgs.map(img => {
    img.loading = "eager";
    if (img.complete) return null;
    return new Promise(done => {
      img.addEventListener("load", done, {once: true});
      img.addEventListener("error", done, {once: true});
      setTimeout(done, 15000);
    });
  }));
  return imgs.map(img => ({src: img.currentSrc || img.src || img.getAttribute("src"),
                           complete: img.complete, width: img.naturalWidth}));
}
"""
LINKS_JS = """
() => Array.from(document.querySelectorAll("a[href]")).map(a => ({raw: a.getAttribute("href"), url: a.href}))
"""
# Images in the page's text shown below MIN_SCALE of their natural width with no full-size link
# beside them: a link around the image, or, in its figure or the element after it (the line of
# downloads under each chapter figure), a link to an SVG/PNG/interactive HTML of a figure.
SHRUNK_IMAGES_JS = """
(minScale) => {
  const fullSize = /(\\/figures\\/[^\\/]+\\.(html|svg|png)|_downloads\\/.+\\.(svg|png)|_images\\/.+\\.(svg|png))$/;
  const hasLink = el => el && Array.from(el.querySelectorAll("a[href]")).some(a => fullSize.test(a.href));
  const out = [];
  for (const img of document.querySelectorAll("article img, main img")) {
    const shown = img.getBoundingClientRect().width;
    if (!img.naturalWidth || shown >= minScale * img.naturalWidth) continue;
    const wrapped = img.closest("a[href]");
    const box = img.closest("figure, .cell_output, .output, td") || img.parentElement;
    if (wrapped || hasLink(box) || hasLink(box.nextElementSibling)) continue;
    out.push({src: img.getAttribute("src"), shown: Math.round(shown), natural: img.naturalWidth});
  }
  return out;
}
"""
# Tables wider than the text column that do not scroll inside a container of their own
# (the table itself or an ancestor with overflow-x auto/scroll no wider than the column).
WIDE_TABLES_JS = """
() => {
  const column = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;
  const limit = column.getBoundingClientRect().right + 1;
  const out = [];
  for (const table of column.querySelectorAll("table")) {
    if (table.getBoundingClientRect().right <= limit && table.scrollWidth <= table.clientWidth + 1) continue;
    let el = table, scrolls = false;
    while (el && el !== column.parentElement) {
      const style = getComputedStyle(el);
      if (["auto", "scroll"].includes(style.overflowX) && el.getBoundingClientRect().right <= limit) {
        scrolls = true;
        break;
      }
      el = el.parentElement;
    }
    if (!scrolls) {
      const head = table.querySelector("tr");
      out.push({columns: head ? head.children.length : 0, width: Math.round(table.scrollWidth),
                column: Math.round(column.getBoundingClientRect().width)});
    }
  }
  return out;
}
"""
# Is the chart of an interactive figure drawn (vega-embed renders an <svg> or a <canvas>)?
CHART_DRAWN_JS = """
() => { const el = document.querySelector("#vis svg, #vis canvas, .vega-embed svg, .vega-embed canvas");
        return !!el && el.getBoundingClientRect().width > 50; }
"""
NAV_JS = """
() => Array.from(document.querySelectorAll("nav.bd-docs-nav a[href], .toctree-wrapper a[href]")).map(a => a.href)
"""


def _is_local(url):
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and parts.hostname in LOCAL_HOSTS


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def built_html():
    if not (HTML / "index.html").is_file():
        proc = subprocess.run([sys.executable, "-m", "plmdepth", "book"], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (HTML / "index.html").is_file(), f"no {HTML / 'index.html'} after building the book"
    return HTML


def serve(directory):
    """Start a threaded http.server for `directory` on 127.0.0.1 (free port); return (server, base url)."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def _status(url):
    """HTTP status of a URL on the local server (no proxies)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, method="HEAD"), timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def _screenshot_name(url, base):
    rel = url[len(base):] or "index.html"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", rel.removesuffix(".html")) + ".png"


def check_readable(page, name, window, problems):
    """Record images shrunk with no full-size link and tables overflowing the text column."""
    for img in page.evaluate(SHRUNK_IMAGES_JS, MIN_SCALE):
        problems.append(f"{name} ({window}): image shown at {img['shown']} of its {img['natural']} px with no "
                        f"full-size link beside it: {img['src']}")
    for table in page.evaluate(WIDE_TABLES_JS):
        problems.append(f"{name} ({window}): a {table['columns']}-column table {table['width']} px wide overflows "
                        f"the {table['column']} px text column with no scroll container")


def check_interactive(page, url, name, problems):
    """An interactive figure opens as a page (not a download) and draws its chart offline."""
    downloads = []
    page.once("download", lambda d: downloads.append(d.suggested_filename))
    try:
        resp = page.goto(url, wait_until="load")
    except Exception as err:  # "Download is starting" when the browser saves it instead
        problems.append(f"{name}: interactive figure did not open as a page ({err.__class__.__name__}: "
                        f"{str(err).splitlines()[0]})")
        return
    if downloads:
        problems.append(f"{name}: interactive figure was downloaded ({downloads[0]}), not opened")
        return
    kind = (resp.headers.get("content-type", "") if resp else "")
    if "text/html" not in kind:
        problems.append(f"{name}: interactive figure served as {kind!r}, not text/html")
    try:
        page.wait_for_function(CHART_DRAWN_JS, timeout=20_000)
    except Exception:
        problems.append(f"{name}: interactive figure drew no chart within 20 s")


def check_site(html_dir, screenshot_dir, required=REQUIRED_PAGES):
    """Open the site in headless Chromium; return (list of problems, list of page urls visited)."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install_browser.sh (installs Debian's chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: pip install -r requirements.txt "
                    "(it drives /usr/bin/chromium; never run `playwright install`)")

    screenshot_dir = Path(screenshot_dir)
    screenshot_dir.mkdir(parents=True, exist_ok=True)
    problems = []
    server, base = serve(html_dir)
    try:
        with sync_playwright() as pw:
            # launch() gives the browser a fresh temporary profile (user-data-dir) each time
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=TIMEOUT_MS)
            try:
                context = browser.new_context(viewport=WIDE, service_workers="block", accept_downloads=True)
                context.set_default_timeout(TIMEOUT_MS)
                where = {"page": "?"}

                def route(route_):
                    url = route_.request.url
                    if _is_local(url) or urlsplit(url).scheme in ("data", "blob", "about"):
                        route_.continue_()
                    else:
                        problems.append(f"{where['page']}: request to another host blocked: {url}")
                        route_.abort("blockedbyclient")

                def websocket(ws_route):
                    problems.append(f"{where['page']}: websocket to another host blocked: {ws_route.url}")
                    ws_route.close()

                context.route("**/*", route)
                context.route_web_socket(re.compile(r"^(?!wss?://(127\.0\.0\.1|localhost)[:/]).*"), websocket)

                def console(msg):
                    if msg.type == "error":
                        problems.append(f"{where['page']}: console error: {msg.text} ({msg.location.get('url', '')})")

                def page_error(exc):
                    problems.append(f"{where['page']}: uncaught page error: {exc}")

                def response(resp):
                    if resp.status >= 400 and _is_local(resp.url):
                        problems.append(f"{where['page']}: {resp.url} answered HTTP {resp.status}")

                page = context.new_page()
                page.on("console", console)
                page.on("pageerror", page_error)
                page.on("response", response)

                # index.html first; the pages to visit are those its navigation links to
                index = urljoin(base, "index.html")
                where["page"] = "index.html"
                page.goto(index, wait_until="load")
                nav = []
                for href in page.evaluate(NAV_JS):
                    url = urldefrag(href).url
                    if _is_local(url) and url.startswith(base) and url not in nav and url != index:
                        nav.append(url)
                relative = {u[len(base):] for u in nav}
                missing = set(required) - relative
                if missing:
                    problems.append(f"index.html: navigation does not link {sorted(missing)} (it links {sorted(relative)})")

                links = {}  # link url (no fragment) -> first page that has it
                interactive = {}  # interactive figure (figures/<label>.html) -> first page linking it
                visited = []
                for url in [index] + nav:
                    where["page"] = url[len(base):]
                    if url != index:
                        page.goto(url, wait_until="load")
                    try:
                        page.wait_for_load_state("networkidle", timeout=15_000)
                    except Exception:
                        pass  # something still polling: the checks below still apply
                    for img in page.evaluate(IMAGES_JS):
                        if not img["complete"] or img["width"] == 0:
                            problems.append(f"{where['page']}: image did not load (naturalWidth 0): {img['src']}")
                    for link in page.evaluate(LINKS_JS):
                        raw = (link["raw"] or "").strip()
                        if not raw or raw.startswith("#") or raw.lower().startswith(("mailto:", "javascript:", "tel:")):
                            continue
                        target = urldefrag(link["url"]).url
                        if _is_local(target):
                            links.setdefault(target, where["page"])
                    check_readable(page, where["page"], "desktop", problems)
                    page.screenshot(path=str(screenshot_dir / _screenshot_name(url, base)), full_page=True)
                    page.set_viewport_size(NARROW)
                    page.wait_for_timeout(300)
                    check_readable(page, where["page"], "phone-sized window", problems)
                    page.screenshot(path=str(screenshot_dir / _screenshot_name(url, base).replace(".png", ".narrow.png")),
                                    full_page=True)
                    page.set_viewport_size(WIDE)
                    for link in page.evaluate(LINKS_JS):
                        target = urldefrag(link["url"]).url
                        if _is_local(target) and re.search(r"/figures/fig-[\w-]+\.html$", target):
                            interactive.setdefault(target, where["page"])
                    visited.append(url)
                if not interactive:
                    problems.append("no page links an interactive figure (figures/fig-*.html)")
                for target, source in sorted(interactive.items()):
                    where["page"] = f"{source} -> {target[len(base):]}"
                    check_interactive(page, target, where["page"], problems)
                for target, source in sorted(links.items()):
                    status = _status(target)
                    if status >= 400:
                        problems.append(f"{source}: internal link {target[len(base):] or target} answers HTTP {status}")
                context.close()
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return problems, visited


@pytest.mark.browser
def test_book_in_a_real_browser_offline(built_html, tmp_path):
    shots = Path(os.environ.get("PLMDEPTH_SCREENSHOTS") or tmp_path / "screenshots")
    problems, visited = check_site(built_html, shots)
    print(f"\nvisited {len(visited)} pages; screenshots in {shots}")
    assert len(visited) >= 1 + len(REQUIRED_PAGES), visited
    assert not problems, "the book has problems in the browser:\n  " + "\n  ".join(problems)
