"""The playground in a real browser: headless Chromium (Debian's package) driven by Playwright.

`.ci/run` installs chromium where it is missing and sets TEXTGEN_REQUIRE_BROWSER=1, so there a
missing browser fails; elsewhere the test is skipped with the reason.
"""

import os
import shutil
import time

import pytest
from serving_fixtures import live_streams, running_server

import textgen

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

if not os.path.exists(CHROMIUM):
    if os.environ.get("TEXTGEN_REQUIRE_BROWSER"):
        raise RuntimeError(f"no browser at {CHROMIUM}: apt-get install -y chromium")
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def page(tiny_model, slow_model):
    directory, _ = tiny_model
    with running_server(str(directory), str(slow_model)) as (process, base), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(base + "/")
        yield page, base, directory
        browser.close()


def test_generate_streams_the_seeded_text_into_the_page(page):
    page, base, directory = page
    expect(page.locator("#model option")).to_have_text([directory.name, "slow"])
    page.fill("#prompt", "The ")
    page.fill("#seed", "7")
    page.locator("#length").fill("120")  # a range input takes its value like a text field
    page.locator("#temperature").fill("0.8")
    page.click("#generate")
    expect(page.locator("#status")).to_have_text("finished: length", timeout=20000)
    expected = textgen.load(directory).generate("The ", length=120, temperature=0.8, seed=7)
    assert page.inner_text("#output") == expected
    assert page.locator("#output span.token").count() == 120
    page.fill("#seed", "8")  # another seed, other text
    page.click("#generate")
    expect(page.locator("#status")).to_have_text("finished: length", timeout=20000)
    other = textgen.load(directory).generate("The ", length=120, temperature=0.8, seed=8)
    assert page.inner_text("#output") == other != expected
    page.fill("#seed", "7")
    page.click("#generate")
    expect(page.locator("#status")).to_have_text("finished: length", timeout=20000)


def test_hovering_a_character_shows_its_five_likeliest_and_surprise_colours(page):
    page, base, directory = page
    token = page.locator("#output span.token").nth(10)
    token.hover()
    tooltip = page.locator("#tooltip")
    expect(tooltip).to_be_visible()
    assert tooltip.locator("tr").count() == 5
    percentages = [float(cell.rstrip("%")) for cell in tooltip.locator("td:nth-child(2)").all_inner_texts()]
    assert percentages == sorted(percentages, reverse=True) and sum(percentages) <= 100.5
    assert token.evaluate("span => span.style.background") == ""
    page.check("#surprise")
    assert token.evaluate("span => span.style.background").startswith("rgba(220, 60, 40")


def test_stop_ends_the_stream_and_frees_the_row(page):
    page, base, directory = page
    page.select_option("#model", "slow")  # an untrained 2x1024 LSTM: a few ms per character
    page.fill("#prompt", "the ")  # the untrained model knows lowercase letters only
    page.locator("#length").fill("2000")
    page.fill("#seed", "")
    page.click("#generate")
    expect(page.locator("#output span.token").nth(20)).to_be_attached(timeout=20000)
    page.click("#stop-button")
    expect(page.locator("#generate")).to_be_enabled()
    for _ in range(200):
        if live_streams(base, "slow") == 0:
            break
        time.sleep(0.02)
    assert live_streams(base, "slow") == 0
    written = page.locator("#output span.token").count()
    assert 20 < written < 2000 and not page.inner_text("#status").startswith("finished")
    page.select_option("#model", directory.name)


def test_a_bad_setting_shows_the_servers_message(page):
    page, base, directory = page
    page.fill("#prompt", "snow \u2603")
    page.click("#generate")
    expect(page.locator("#status")).to_contain_text("characters not in the model's vocabulary")
