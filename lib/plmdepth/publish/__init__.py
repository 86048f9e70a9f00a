"""Publishing: what turns results folders into the book.

    chapters     every chapter defined once: notebook, own parameters, the runs it needs
    chapter      what every chapter notebook does: collect_chapter, publish_figure, glue
    chapter_text the chapters' sentences and tables, from their results tables
    verdicts     the verdicts written out (the numbers are plmdepth.analysis's)
    figures      altair charts rendered to static SVG/PNG (the book works offline)
    provenance   captions and provenance tables from run.json
    grid         the chapters' runs as workflow jobs; job resources
    book         papermill per chapter, generated pages, the Jupyter Book build

`BookError` lives here so that the command line can report it without importing the book's
packages (altair, jupytext, papermill), which the second environment does not have.
"""

import warnings

from tqdm import TqdmWarning

# Inside a kernel, tqdm.auto (imported by transformers when plmdepth's model modules load, which every
# chapter's first cell does through this package) warns that ipywidgets is missing. Chapters show no
# progress widgets on purpose (they would need JavaScript from a CDN), so the filter is set here,
# before any module of the package loads them.
warnings.filterwarnings("ignore", category=TqdmWarning)


class BookError(RuntimeError):
    """The book or one of its chapters could not be built."""


class ParameterError(BookError, ValueError):
    """A chapter asked for with a parameter it does not have (a bad input, before anything runs)."""
