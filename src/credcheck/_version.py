"""The version of credcheck: written here only (pyproject.toml reads it from here, the package and the User-Agent
from here)."""

__version__ = "0.1.0"
