"""The simulated annotator reads the annotate page the way a person reads the screen."""

from __future__ import annotations

from activelearn.simulation.client import page_state


def test_page_state_reads_the_comparison_partial():
    html = (
        '<section id="comparison" class="comparison" tabindex="-1" aria-label="Comparison"\n'
        '         data-comparison-id="42"><form><input type="hidden" name="csrfmiddlewaretoken" value="tok">'
    )
    state = page_state(html)
    assert (state.kind, state.comparison_id, state.csrf) == ("comparison", 42, "tok")
    empty = page_state('<section id="comparison" data-comparison-id="">There is nothing waiting for you right now')
    assert empty.kind == "empty" and empty.comparison_id is None


def test_page_state_tells_a_finished_study_from_a_closed_one():
    assert page_state("<p>This study has all the judgments it needs.</p>").kind == "budget"
    assert page_state("<p>This study is not open.</p>").kind == "closed"
    assert page_state("<p>Server Error</p>", status=500).kind == "unknown"
