"""A Sphinx extension for the course's book: every lesson page offers its notebook as a .ipynb
download, made at build time from the text notebook (no outputs), beside the .md source.

sphinx-book-theme shows a ".ipynb" entry in its download menu when the page context names an
``ipynb_source`` file in ``_sources/``; MyST-NB does not make one for text notebooks, so this
extension writes it (with jupytext) and names it.
"""
from pathlib import Path

import jupytext


def _is_notebook(path: Path) -> bool:
    """A MyST text notebook: its front matter names a jupytext format and a kernel."""
    if path.suffix != ".md" or not path.is_file():
        return False
    head = path.read_text(encoding="utf-8")[:600]
    return head.startswith("---") and "jupytext:" in head and "kernelspec:" in head


def _page_context(app, pagename, templatename, context, doctree):
    if _is_notebook(Path(app.srcdir) / f"{pagename}.md"):
        context["ipynb_source"] = f"{pagename}.ipynb"


def _write_notebooks(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir) / "_sources"
    for md in sorted(Path(app.srcdir).glob("*.md")):
        if _is_notebook(md):
            out.mkdir(parents=True, exist_ok=True)
            jupytext.write(jupytext.read(md), out / f"{md.stem}.ipynb", fmt="ipynb")


def setup(app):
    app.connect("html-page-context", _page_context, priority=400)  # before the theme reads the context
    app.connect("build-finished", _write_notebooks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
