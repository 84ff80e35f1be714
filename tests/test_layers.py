"""The layers of docs/ARCHITECTURE.md hold in the code.

From the bottom up: ``models_runtime`` (no Django), ``annotation`` (the study data
and everything people touch), ``activelearn`` (the loop), ``webapp`` (the project
that composes them). A package imports only packages below it; annotation reaches
the loop through its port, ``annotation.loop``. Every import counts, at module level
or inside a function, migrations included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Bottom first: each package may import the ones before it, never the ones after.
LAYERS = ("models_runtime", "annotation", "activelearn", "webapp")


def _imports(package: str, root: Path = REPO) -> dict[str, set[str]]:
    """First-party top-level packages each module of ``package`` imports (by file)."""
    found: dict[str, set[str]] = {}
    for path in sorted((root / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in LAYERS and top != package:
                    found.setdefault(str(path.relative_to(root)), set()).add(top)
    return found


@pytest.mark.parametrize("package", LAYERS)
def test_a_layer_imports_only_the_layers_below_it(package: str) -> None:
    allowed = set(LAYERS[: LAYERS.index(package)])
    offenders = {module: sorted(tops - allowed) for module, tops in _imports(package).items() if not tops <= allowed}
    assert not offenders, f"{package} may import only {sorted(allowed) or 'nothing first-party'}: {offenders}"


def test_the_layer_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The check above would catch annotation importing the loop, even lazily."""
    package = tmp_path / "annotation"
    package.mkdir()
    (package / "sneaky.py").write_text("def f():\n    from activelearn import services\n    return services\n")
    assert _imports("annotation", root=tmp_path) == {"annotation/sneaky.py": {"activelearn"}}


def test_annotation_models_do_not_point_at_the_loop() -> None:
    """No model of annotation has a relation to a model of activelearn (the
    models that point at each other live together)."""
    from django.apps import apps

    upward = [
        f"{model.__name__}.{field.name}"
        for model in apps.get_app_config("annotation").get_models()
        for field in model._meta.get_fields()
        if field.is_relation and field.related_model and field.related_model._meta.app_label == "activelearn"
    ]
    assert not upward
