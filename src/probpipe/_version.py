"""The version of probpipe (one place; the package and provenance read it)."""

__version__ = "0.1.0"
