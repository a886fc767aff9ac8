"""The Chromium helper itself: a poll that a navigation interrupts is retried, not failed.

CI once failed a browser test because a poll of ``location.pathname`` ran
while a clicked link was replacing the page; Chromium answered "Inspected
target navigated or closed".  These tests make that race happen every time.
"""

from __future__ import annotations

import os

import pytest

from tests.harness.browser import CHROMIUM, Chromium, PageChanged
from tests.harness.http import served

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]


def two_pages(environ, start_response):
    """A WSGI app with two plain pages, /first and /second."""
    body = f"<html><body><p id=name>{environ['PATH_INFO']}</p></body></html>".encode()
    start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(body)))])
    return [body]


#: Leaves the page for /second and never resolves, so the answer can only be
#: Chromium's "the page changed" error.
LEAVE_AND_HANG = "new Promise(() => { location.href = '/second'; })"


@pytest.fixture
def browser():
    chromium = Chromium()
    yield chromium
    chromium.close()


def test_evaluate_interrupted_by_navigation_raises_page_changed(browser):
    with served(two_pages) as url:
        browser.navigate(f"{url}/first")
        with pytest.raises(PageChanged):
            browser.evaluate(LEAVE_AND_HANG)
        browser.wait("location.pathname === '/second'", 15, "the second page")


def test_wait_counts_an_interrupted_poll_as_not_yet(browser):
    with served(two_pages) as url:
        browser.navigate(f"{url}/first")
        # The first poll leaves the page; the wait goes on and sees the new one.
        expression = (
            f"location.pathname === '/first' ? {LEAVE_AND_HANG} "
            ": document.getElementById('name')?.textContent"
        )
        assert browser.wait(expression, 15, "the second page") == "/second"
