"""The package's version (``gla.__version__``), in a module of its own so that every module
that records it (the protocols' rows, ``gla run``'s settings, the book's environment) can
import it without importing the package's ``__init__``."""

__version__ = "0.2.0"
