"""Keep the book's pages free of console errors in a browser.

1. Jupyter Book 1 (Sphinx 7.4) writes each inline script that extensions add after the builder
   starts (sphinx-thebe's `const THEBE_JS_URL ...`, sphinx-togglebutton's selector) twice, once
   with filename None and once with '' (fixed upstream in Sphinx 8.2, sphinx-doc/sphinx#13402):
   the second `const` declaration is a SyntaxError on every page. Drop exact duplicates.
2. pydata-sphinx-theme logs "Got invalid theme mode: ." on a visitor's first page (empty
   localStorage). Default the mode to "auto" before its script runs.
"""

MODE_DEFAULT = 'if (!document.documentElement.dataset.mode) { document.documentElement.dataset.mode = "auto"; }'


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        attrs = getattr(js, "attributes", {}) or {}
        key = (str(getattr(js, "filename", js) or ""), tuple(sorted((k, str(v)) for k, v in attrs.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


def setup(app):
    app.add_js_file(None, body=MODE_DEFAULT, priority=100)
    app.connect("html-page-context", _dedupe_scripts, priority=999)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
