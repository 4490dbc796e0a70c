"""/demo7 in a real browser: the chart draws and then changes as windows arrive."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.spark]


def test_demo7_chart_changes_when_windows_arrive(running_stack: Any, page: Any) -> None:
    p = page.page
    p.goto(f"{running_stack.url}/demo7")
    # The tumbling chart's line gets a path once the first window arrives ...
    p.wait_for_function(
        "() => { const l = document.querySelector('#chart-tumbling svg path[stroke]');"
        " return l && (l.getAttribute('d') || '').length > 10; }", timeout=150_000)
    first = p.eval_on_selector("#chart-tumbling svg path[stroke]", "e => e.getAttribute('d')")
    # ... and changes when the next update arrives (a window grew or a new one started).
    p.wait_for_function(
        "(before) => { const l = document.querySelector('#chart-tumbling svg path[stroke]');"
        " return l && l.getAttribute('d') !== before; }", arg=first, timeout=60_000)
    assert p.text_content("#conn") == "connected"
    assert "updated" in (p.text_content("#last-update") or "")
    page.screenshot("demo7")
    assert page.errors == []
