"""Fixtures for the deploy/ checks: each kustomization rendered once."""

from __future__ import annotations

import pytest

from tests.deploy import manifests


@pytest.fixture(scope="session")
def rendered_text() -> dict[str, str]:
    if manifests.kubectl() is None:
        pytest.skip("kubectl is not installed (its built-in kustomize renders deploy/)")
    return {name: manifests.kustomize_yaml(path) for name, path in manifests.TARGETS.items()}


@pytest.fixture(scope="session")
def rendered(rendered_text: dict[str, str]) -> dict[str, list[manifests.Obj]]:
    return {name: manifests.parse(text) for name, text in rendered_text.items()}
