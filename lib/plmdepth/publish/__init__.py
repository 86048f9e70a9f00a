"""Publishing: what turns results folders into the book.

    chapter      what every chapter notebook does: shared parameters, collect, publish_figure
    figures      altair charts rendered to static SVG/PNG (the book works offline)
    provenance   captions and provenance tables from run.json
    verdicts     the paper's claims tested by numbers computed from the results
    book         papermill per chapter, generated pages, the Jupyter Book build

`BookError` lives here so that the command line can report it without importing the book's
packages (altair, jupytext, papermill), which the second environment does not have.
"""


class BookError(RuntimeError):
    """The book or one of its chapters could not be built."""


class ParameterError(BookError, ValueError):
    """A chapter asked for with a parameter it does not have (a bad input, before anything runs)."""
