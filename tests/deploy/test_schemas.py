"""Every rendered object validates, in strict mode (unknown fields are
errors), against the Kubernetes schemas of each version AKS supports."""

from __future__ import annotations

import copy

import kubernetes_validate
import kubernetes_validate.utils as kv
import pytest

from tests.deploy import manifests as m
from tests.deploy.manifests import Obj

# AKS's supported minor versions (standard and LTS support) around the
# 0.1.0 release, late 2026; move the window with AKS's release calendar.
AKS_VERSIONS = ("1.31", "1.32", "1.33", "1.34", "1.35", "1.36")


def test_kubernetes_validate_ships_every_aks_version() -> None:
    shipped = {kv.major_minor(v) for v in kv.all_versions()}
    missing = [v for v in AKS_VERSIONS if v not in shipped]
    assert not missing, f"kubernetes-validate {kubernetes_validate.__version__} lacks schemas for {missing}"


@pytest.mark.parametrize("version", AKS_VERSIONS)
@pytest.mark.parametrize("target", list(m.TARGETS))
def test_strict_schema(rendered: dict[str, list[Obj]], target: str, version: str) -> None:
    failures = []
    for obj in rendered[target]:
        try:
            used = kv.validate(obj, version, strict=True)
        except kv.ValidationError as e:
            failures.append(f"{m.ident(obj)}: {'.'.join(map(str, e.absolute_path))}: {e.message}")
            continue
        except kv.SchemaNotFoundError as e:
            failures.append(f"{m.ident(obj)}: {e.message}")
            continue
        assert used == version, f"validated {m.ident(obj)} against {used}, not {version}"
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param(("spec", "template", "spec", "hostNetwrok"), True, id="misspelt-field"),
        pytest.param(("spec", "updateStrategy", "rollingUpdate", "maxSurge"), [1], id="wrong-type"),
    ],
)
def test_strict_schema_rejects_a_planted_error(rendered: dict[str, list[Obj]], path: tuple[str, ...],
                                               value: object) -> None:
    ds = copy.deepcopy(m.one(rendered["aks-kubenet"], "DaemonSet", m.AGENT))
    node = ds
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(kv.ValidationError):
        kv.validate(ds, AKS_VERSIONS[0], strict=True)
