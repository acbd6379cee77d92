"""The ``{{name}}`` renderer of custom fields: what it substitutes and escapes, what it refuses,
that it never fails otherwise on any text, and that its cost grows linearly with the template."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sendpost_platform.domain import handlebars
from sendpost_platform.domain.handlebars import TemplateError, parse, render, rendered_size

from tests.support.scaling import SIZES, measure_growth

FIELDS = {"first": "Tom & <Jerry>", "n": 42, "ok": True, "none": None, "order": {"total": 9.5}}


@pytest.mark.parametrize(
    ("template", "html", "text"),
    [
        ("Hi {{first}}!", "Hi Tom &amp; &lt;Jerry&gt;!", "Hi Tom & <Jerry>!"),
        ("{{{first}}}", "Tom & <Jerry>", "Tom & <Jerry>"),
        ("{{ first }}|{{n}}|{{ok}}|{{none}}", "Tom &amp; &lt;Jerry&gt;|42|true|", None),
        ("{{order.total}} {{order.missing}} {{first.x}}", "9.5  ", "9.5  "),
        ("{{unknown}}-", "-", "-"),
        ("a {{ b", "a {{ b", "a {{ b"),
        ("}} {{x", "}} {{x", "}} {{x"),
        ("{{first}}{{first}}", "Tom &amp; &lt;Jerry&gt;" * 2, "Tom & <Jerry>" * 2),
    ],
)
def test_rendering(template: str, html: str, text: str | None) -> None:
    """Values substituted (escaped in HTML unless triple-stashed), scalars as JSON text, unknown
    names and missing steps as nothing, an unclosed ``{{`` left as text."""
    parsed = parse(template)
    assert html == render(parsed, FIELDS, escape=True)
    if text is not None:
        assert text == render(parsed, FIELDS, escape=False)


@pytest.mark.parametrize(
    "template",
    [
        "{{#if x}}y{{/if}}",
        "{{> partial}}",
        "{{! comment}}",
        "{{a b}}",
        "{{}}",
        "{{a..b}}",
        "{{.a}}",
    ],
)
def test_unsupported_expressions_are_refused(template: str) -> None:
    """Helpers, partials, comments, expressions with spaces and malformed names raise
    TemplateError with the offset, instead of rendering as literal text."""
    with pytest.raises(TemplateError) as refused:
        parse("ok " + template)
    assert refused.value.offset == 3


@given(st.text(alphabet=st.sampled_from("{} ab.#\\\n&<")), st.dictionaries(st.text(), st.text()))
def test_any_text_parses_or_is_refused_and_sizes_agree(text: str, fields: dict[str, str]) -> None:
    """Any text either parses or raises TemplateError; when it parses, the counted size equals
    the rendered size (the API's size check counts instead of rendering)."""
    try:
        parsed = parse(text)
    except TemplateError:
        return
    memo: dict[tuple[int, bool, bool], int] = {}
    for escape in (True, False, True):
        rendered = render(parsed, fields, escape=escape)
        assert len(rendered.encode()) == rendered_size(parsed, fields, escape=escape)
        assert len(rendered) == rendered_size(parsed, fields, escape=escape, chars=True, memo=memo)


@pytest.mark.slow
@pytest.mark.parametrize("unit", ["{{", "{{{a}}", "{{a}}", "{{ " + "a" * 200])
def test_parsing_costs_linear_time(unit: str) -> None:
    """Templates made of repeated openers without closers, placeholders, and over-long names
    parse (or are refused) in time linear in their size."""

    def make(size: int) -> str:
        return (unit * (size // len(unit) + 1))[:size]

    def run(text: str) -> object:
        try:
            return parse(text)
        except TemplateError:
            return None

    growth = measure_growth(make, run, factor=3.0, sizes=SIZES[:6])
    assert growth.broken_at is None, growth.describe()


def test_lookup_reaches_nested_fields_only() -> None:
    """Dotted names step into objects; a step into a scalar finds nothing."""
    assert 9.5 == handlebars.lookup(FIELDS, "order.total")
    assert handlebars.lookup(FIELDS, "first.length") is None
