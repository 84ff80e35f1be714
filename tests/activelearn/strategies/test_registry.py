"""The registry is the one place a strategy is named: everything else follows from it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from activelearn import refill
from activelearn.strategies import StrategyName, get_strategy
from activelearn.strategies.ensemble_based import InfomaxStrategy
from activelearn.strategies.registry import STRATEGIES, choices, get_spec, names, register, registered
from annotation.models import Comparison, Study
from tests.activelearn.strategies.toy_strategy import SPEC as TOY

REPO = Path(__file__).resolve().parents[3]


def test_unknown_strategy_names_the_known_ones() -> None:
    known = "known strategies: random, least_compared, uncertainty, apohf, double_ts, infomax"
    with pytest.raises(ValueError, match=known):
        get_strategy("apohf-typo")


def test_factory_validates_names_and_parameters() -> None:
    assert isinstance(get_strategy("infomax", top_k=4), InfomaxStrategy)
    with pytest.raises(ValueError, match="known strategies"):
        get_strategy("thompson")
    with pytest.raises(ValueError, match=r"unknown parameter.*top_kk"):
        get_strategy("infomax", top_kk=4)
    with pytest.raises(ValueError, match="invalid parameters"):
        get_strategy("infomax", top_k=1)


def test_the_enum_and_the_study_choices_come_from_the_registry() -> None:
    assert [member.value for member in StrategyName] == [spec.name for spec in STRATEGIES]
    assert list(Study._meta.get_field("strategy").choices) == choices() == [(s.name, s.label) for s in STRATEGIES]


def test_a_name_is_registered_once() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register(get_spec("random"))


@pytest.mark.django_db
def test_a_strategy_added_only_to_the_registry_is_offered_and_served_by_the_loop(make_study) -> None:
    with registered(TOY):
        assert TOY.name in names()
        study = make_study(strategy=TOY.name, queue_target=6)
        study.full_clean()  # a valid choice, options checked by its factory
        created = refill.queue_refill(study_id=study.id, use_model=False, seed=0)
        chosen = Comparison.objects.filter(study=study).order_by("id")
        assert created == 6
        assert set(chosen.values_list("strategy", flat=True)) == {TOY.name}
        # Its picks, not random ones: the first open pairs of the first prompt.
        first_prompt = chosen.first().prompt_id
        assert set(chosen.values_list("prompt_id", flat=True)) == {first_prompt}
    assert TOY.name not in names()
    with pytest.raises(ValidationError) as refused:
        study.full_clean()
    assert "strategy" in refused.value.message_dict


def test_a_strategy_added_only_to_the_registry_is_covered_by_the_contract_tests() -> None:
    """Run the contract tests with the toy strategy registered (as a plugin, before
    collection): they check it without any edit to the test file."""
    contract = REPO / "tests/activelearn/strategies/test_contract.py"
    plugin = "tests.activelearn.strategies.toy_strategy"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", plugin, str(contract), "-k", TOY.name],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    contract_tests = len(
        re.findall(r"^def test_", (REPO / "tests/activelearn/strategies/test_contract.py").read_text(), re.M)
    )
    assert re.search(rf"\b{contract_tests} passed\b", run.stdout), run.stdout
