"""edgecnn's version (pyproject.toml holds the same): a leaf, so the modules that record it in
what they write need not import the package, whose ``__init__`` reaches every stage (lazily) for
the Python API."""

__version__ = "0.1.0"
