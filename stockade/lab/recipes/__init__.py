"""The 18 network policy recipe cases, shipped with the package for the demo.

Copies of ``shared/cases/recipes/`` (see README.md here for their origin:
Ahmet Alp Balkan's "Kubernetes Network Policy Recipes", Apache-2.0), so
``stockade demo`` works where the shared folder is absent.  Data only.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def directory() -> Path:
    """The folder holding the recipe ``*.json`` files."""
    return Path(str(resources.files(__name__)))
