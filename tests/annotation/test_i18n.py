"""Languages (issue 18): the annotator pages in English, German and Arabic
(right to left), picked from the browser or set by the study.

The catalogues are checked as files (every string the annotator templates and
the app's Python mark for translation is translated, nothing fuzzy, the
compiled .mo says what the .po says) and as pages: rendered in German and in
Arabic, no English text that the catalogue translates is left on them.
"""

from __future__ import annotations

import ast
import gettext as gettext_module
import re
from html import unescape
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils.translation import template as template_i18n

from annotation.models import Comparison, Judgment, Membership, Study
from tests.annotation.test_views import HTMX
from tests.factories import study_with_queue

ROOT = Path(__file__).resolve().parents[2]
LANGUAGES = [code for code, _name in settings.LANGUAGES if code != "en"]
# The pages annotators see, whose every string is translated.
ANNOTATOR_TEMPLATES = [
    "templates/base.html",
    "templates/404.html",
    "templates/registration/login.html",
    "templates/registration/locked_out.html",
    *(
        f"templates/annotation/{name}"
        for name in (
            "annotate.html", "_comparison.html", "_answer_extras.html", "_progress.html", "_prompt.html",
            "_candidate_body.html", "study_closed.html", "join_refused.html", "join_signed_in.html",
            "prompt_whole.html", "home.html", "my_answers.html", "answer_amend.html", "_feedback.html",
        )
    ),
]  # fmt: skip
_GETTEXT_CALLS = {"gettext", "gettext_lazy", "gettext_noop", "ngettext", "pgettext"}


def _po(code: str) -> dict[str, dict]:
    """A .po file as {msgid: {"str": [...], "fuzzy": bool}} (a small reader: the files are ours)."""
    text = (ROOT / "locale" / code / "LC_MESSAGES" / "django.po").read_text(encoding="utf-8")
    entries: dict[str, dict] = {}
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if line.strip()]
        fields: dict[str, str] = {}
        current = None
        fuzzy = any(line.startswith("#,") and "fuzzy" in line for line in lines)
        for line in lines:
            if line.startswith("#"):
                continue
            match = re.match(r'^(msgid|msgid_plural|msgstr(?:\[\d\])?) "(.*)"$', line)
            if match:
                current = match[1]
                fields[current] = match[2]
            elif current and line.startswith('"'):
                fields[current] += line[1:-1]
        if "msgid" not in fields or fields["msgid"] == "":
            continue
        decode = lambda s: s.encode("utf-8").decode("unicode_escape").encode("latin-1").decode("utf-8")  # noqa: E731
        strings = [decode(v) for k, v in sorted(fields.items()) if k.startswith("msgstr")]
        entries[decode(fields["msgid"])] = {"str": strings, "fuzzy": fuzzy, "plural": "msgid_plural" in fields}
    return entries


_LITERAL = r"""u?(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""


def _template_msgids(path: Path) -> set[str]:
    """The strings a template marks for translation, as makemessages reads them
    (Django's templatize turns them into gettext calls)."""
    code = template_i18n.templatize(path.read_text(encoding="utf-8"), origin=str(path))
    return {ast.literal_eval(m[1]) for m in re.finditer(rf"\b(?:n|p)?gettext\(({_LITERAL})", code)}


def _python_msgids() -> set[str]:
    """The strings the app's Python marks with gettext, gettext_lazy or ngettext."""
    found = set()
    for folder in ("annotation", "webapp"):
        for path in (ROOT / folder).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                name = getattr(node, "func", None)
                name = getattr(name, "id", None) or getattr(name, "attr", None)
                if isinstance(node, ast.Call) and name in _GETTEXT_CALLS and node.args:
                    first = node.args[0]
                    if isinstance(first, ast.Constant) and isinstance(first.value, str):
                        found.add(first.value)
    return found


def test_the_templates_are_read_as_makemessages_reads_them():
    assert "Skip this comparison" in _template_msgids(ROOT / "templates/annotation/_comparison.html")
    assert "Response %(label)s" in _template_msgids(ROOT / "templates/annotation/_comparison.html")
    assert "Not reviewed" in _python_msgids()


@pytest.mark.parametrize("code", LANGUAGES)
def test_every_marked_string_is_translated(code):
    catalogue = _po(code)
    wanted = set().union(*(_template_msgids(ROOT / t) for t in ANNOTATOR_TEMPLATES)) | _python_msgids()
    missing = sorted(m for m in wanted if m not in catalogue or not all(catalogue[m]["str"]))
    assert not missing, f"run makemessages -l {code} and translate: {missing[:10]}"
    fuzzy = sorted(m for m, e in catalogue.items() if e["fuzzy"])
    assert not fuzzy, f"fuzzy (unchecked) translations in {code}: {fuzzy[:10]}"
    # Placeholders survive translation.
    for msgid, entry in catalogue.items():
        names = set(re.findall(r"%\((\w+)\)", msgid))
        for text in entry["str"]:
            assert set(re.findall(r"%\((\w+)\)", text)) == names, (code, msgid, text)


@pytest.mark.parametrize("code", LANGUAGES)
def test_the_compiled_catalogue_matches_the_source(code):
    """The .mo files are committed (no gettext tools needed to run the app): run
    compilemessages after editing a .po, or this fails."""
    with (ROOT / "locale" / code / "LC_MESSAGES" / "django.mo").open("rb") as handle:
        compiled = gettext_module.GNUTranslations(handle)
    for msgid, entry in _po(code).items():
        if entry["plural"]:
            continue
        assert compiled.gettext(msgid) == entry["str"][0], f"{code}: {msgid!r} differs in the .mo; run compilemessages"


# --- the pages ----------------------------------------------------------------------------------


def _visible_text(html: str) -> str:
    html = re.sub(r"<(script|style|template)\b.*?</\1>", " ", html, flags=re.S)
    html = re.sub(r"<[^>]+>", " ", html)
    return " ".join(unescape(html).split())


def _english_left(text: str, code: str) -> list[str]:
    """Catalogue strings whose English is still on the page (their longest literal part, 12+ characters)."""
    left = []
    for msgid, entry in _po(code).items():
        if entry["str"] and entry["str"][0] == msgid:
            continue
        parts = [p.strip() for p in re.split(r"%\(\w+\)[sdr]|<[^>]+>", unescape(msgid)) if len(p.strip()) >= 12]
        left += [p for p in parts if p in text]
    return left


@pytest.fixture
def rich_study(make_member):
    """A study showing every answer option (richer feedback included), an annotator with an answer, and a reviewer."""
    study = study_with_queue(
        n_prompts=2, n_candidates=3, allow_both_bad=True, ask_rationale="required", aspects=["helpfulness"],
        ask_strength=False, highlight_diff=True, guidelines="Pick the better one.", evaluation_rate=0.0,
        feedback_tags=["unsafe", "off topic"], tag_spans=True, allow_rewrite=True,
    )  # fmt: skip
    annotator = make_member(study, username="ana")
    other = study_with_queue(
        n_prompts=1, n_candidates=3, mode="listwise", list_size=3, allow_tie=True, feedback_tags=["unsafe"],
        allow_rewrite=True,
    )  # fmt: skip
    Membership.objects.create(study=other, user=annotator, role=Membership.Role.ANNOTATOR)
    return study, other, annotator


def _pages(client, study: Study, other: Study, annotator) -> dict[str, str]:
    comparison = Comparison.objects.filter(study=study).order_by("id").last()
    shown = list(comparison.items.order_by("position").values_list("candidate_id", flat=True))
    judgment = Judgment.objects.create(
        study=study, comparison=comparison, annotator=annotator, choice="a", ranking=shown, shown_order=shown,
        rationale="clearer", evaluation=False,
    )  # fmt: skip
    pages = {
        "home": reverse("home"),
        "annotate": reverse("annotate", args=[study.slug]),
        "annotate-listwise": reverse("annotate", args=[other.slug]),
        "my-answers": reverse("my_answers", args=[study.slug]),
        "amend": reverse("answer_amend", args=[study.slug, judgment.id]),
    }
    return {name: client.get(url).content.decode() for name, url in pages.items()}


@pytest.mark.django_db
@pytest.mark.parametrize("code", LANGUAGES)
def test_the_annotator_pages_leave_no_english_in_the_browser_language(rich_study, client_for, code):
    study, other, annotator = rich_study
    client = client_for(annotator)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = f"{code},en;q=0.5"
    for name, html in _pages(client, study, other, annotator).items():
        assert f'<html lang="{code}" dir="{"rtl" if code == "ar" else "ltr"}">' in html, name
        if name.startswith("annotate"):
            assert '<details class="feedback"' in html, "the richer-feedback panel is on the page"
        left = _english_left(_visible_text(html), code)
        assert not left, f"{name} in {code} still says: {left}"


@pytest.mark.django_db
def test_the_study_language_wins_over_the_browser_and_pages_start_in_english(rich_study, client_for):
    study, _other, annotator = rich_study
    client = client_for(annotator)
    english = client.get(reverse("annotate", args=[study.slug])).content.decode()
    assert '<html lang="en" dir="ltr">' in english and "Skip this comparison" in english
    assert "Skip this comparison" in _english_left(_visible_text(english), "de")  # the check has teeth
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "de"
    assert "Diesen Vergleich überspringen" in client.get(reverse("annotate", args=[study.slug])).content.decode()
    Study.objects.filter(id=study.id).update(language="ar")
    arabic = client.get(reverse("annotate", args=[study.slug])).content.decode()
    assert '<html lang="ar" dir="rtl">' in arabic and "تخطَّ هذه المقارنة" in arabic
    # The people's text keeps its own direction.
    assert arabic.count('<div class="plain" dir="auto">') >= 3  # the prompt and both responses
    # A refused answer's message is in the study's language too.
    comparison_id = re.search(r'name="comparison_id" value="(\d+)"', arabic)[1]
    refused = client.post(
        reverse("annotate_submit", args=[study.slug]), {"comparison_id": comparison_id, "choice": "a"}, **HTMX
    )
    message = re.search(r"server-error\" role=\"alert\">(.*?)</p>", unescape(refused.content.decode()))[1]
    assert refused.status_code == 400 and message == "يُرجى شرح إجابتك في جملة: هذه الدراسة تطلب سببًا.", message


@pytest.mark.django_db
def test_the_settings_page_offers_the_languages(client_for, make_member):
    study = study_with_queue(n_prompts=1, n_candidates=2)
    researcher = make_member(study, Membership.Role.RESEARCHER)
    page = client_for(researcher).get(reverse("study_settings", args=[study.slug])).content.decode()
    assert "Each annotator&#x27;s browser language" in page and "العربية" in page and "Deutsch" in page
