"""The pages in a real browser: headless Chromium (Debian's chromium + chromium-driver) drives a
search and the themes page on a live server and checks what is on screen.

Run locally: `sudo apt-get install -y chromium chromium-driver`, then
`.venv/bin/python -m pytest -q semsearch_tests/test_serve_browser.py`. Without them the test fails
saying so; it never skips.
"""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import Select, WebDriverWait

from semsearch.query.searcher import searcher_for
from semsearch_tests.ops_support import DAYS
from semsearch_tests.serve_support import chromium_driver


@pytest.fixture(scope="module")
def browser():
    driver = chromium_driver()
    try:
        yield driver
    finally:
        driver.quit()


def wait(browser, selector: str, seconds: float = 60):
    return WebDriverWait(browser, seconds).until(
        seen.presence_of_element_located((By.CSS_SELECTOR, selector))
    )


def test_a_search_from_the_page_shows_documents_with_the_passage_marked(browser, served):
    url, settings = served
    browser.get(url + "/")
    box = browser.find_element(By.NAME, "q")
    box.send_keys("my card was declined at the shop")
    Select(browser.find_element(By.NAME, "mode")).select_by_index(0)
    browser.find_element(By.NAME, "since").send_keys("")  # the whole range
    browser.find_element(By.CSS_SELECTOR, "form.search button").click()
    wait(browser, "#results .hit")
    hits = browser.find_elements(By.CSS_SELECTOR, "#results .hit")
    assert len(hits) == 10
    expected = searcher_for(settings).search("my card was declined at the shop", 10)
    shown = [h.get_attribute("data-doc-id") for h in hits]
    assert shown == [h.doc_id for h in expected]
    marks = [m.text.lower() for m in browser.find_elements(By.CSS_SELECTOR, ".passage mark")]
    # Query words and their inflections ("cards" for "card"), never stop words or other words.
    assert marks and all(any(m.startswith(w) for w in ("card", "declin", "shop")) for m in marks)
    first = hits[0]
    assert first.find_element(By.CSS_SELECTOR, ".date").text in {d.isoformat() for d in DAYS}
    assert first.find_element(By.CSS_SELECTOR, ".passage").text == expected[0].text
    tags = browser.find_elements(By.CSS_SELECTOR, "#results .hit .tag")
    assert tags and all(t.text for t in tags)
    first.find_element(By.CSS_SELECTOR, "a.title").click()
    wait(browser, "div.text")
    assert expected[0].doc_id in browser.find_element(By.CSS_SELECTOR, "p.meta").text


def test_a_bad_date_range_is_said_on_the_page(browser, served):
    url, _ = served
    browser.get(url + "/?q=card&since=2026-11-05&until=2026-11-03")
    assert "after" in wait(browser, "#results .error").text


def test_the_themes_page_shows_themes_by_size_with_volume_charts(browser, served):
    url, settings = served
    browser.get(url + "/themes")
    wait(browser, ".theme")
    themes = searcher_for(settings).themes()
    rows = browser.find_elements(By.CSS_SELECTOR, ".theme")
    assert [r.get_attribute("data-theme-id") for r in rows] == [t.theme_id for t in themes]
    first = rows[0]
    assert first.find_element(By.CSS_SELECTOR, ".label").text == themes[0].label
    assert first.find_element(By.CSS_SELECTOR, ".size").text == f"{themes[0].size} documents"
    assert first.find_element(By.CSS_SELECTOR, ".keywords").text == ", ".join(themes[0].keywords)
    bars = first.find_elements(By.CSS_SELECTOR, "svg.volume rect")
    assert len(bars) == (themes[0].window[1] - themes[0].window[0]).days + 1
    assert first.find_elements(By.CSS_SELECTOR, "blockquote")  # example texts
    first.find_element(By.CSS_SELECTOR, "a.label").click()
    wait(browser, "ol.members li.member")
    members = browser.find_elements(By.CSS_SELECTOR, "ol.members li.member")
    assert len(members) == min(themes[0].size, 50)
    assert browser.find_element(By.CSS_SELECTOR, "h1.label").text == themes[0].label
