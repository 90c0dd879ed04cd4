"""The studio page in a real browser: Debian's chromium, headless, driven by Selenium through
chromedriver, against a real gateway (uvicorn on a free port, embedded stores, the shipped
model, synthetic clips ingested through the API). Screenshots go to ``test-artifacts/``.

Skipped with a reason when chromium, chromedriver or selenium is absent; an error under
CI=true, where ``.ci/run`` installs them.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from storycue.audio.synthetic import synthesise_clips
from storycue.config import LimitSettings, ServiceSettings, Settings
from support.gateway import gateway_settings, in_process_gateway
from support.local import absent, ingest_over_api, serve_app

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
STORY = (
    "The morning was bright and the children ran laughing through the meadow, shouting "
    "with joy at the first warm day of spring.\n\n"
    "Then the storm broke. Thunder cracked, the old barn burst into flames and the horses "
    "screamed as the men ran to save them.\n\n"
    "At last it was quiet. She sat alone by the grey window, grieving, and the rain fell "
    "softly on the empty fields."
)


@dataclass
class Studio:
    url: str
    key: str
    settings: Settings


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory, text_encoder: Any) -> Iterator[Studio]:
    from fastapi.testclient import TestClient

    root = tmp_path_factory.mktemp("studio")
    music = root / "music"
    clips = synthesise_clips(music, seconds=3.0)
    settings = gateway_settings(
        root,
        music,
        service=ServiceSettings(auth_required=True),
        limits=LimitSettings(max_top_k=10),
    )
    with in_process_gateway(settings, text_encoder) as (rt, _dispatcher, app):
        key = rt.keys.create("default", "browser tests")[1]
        with TestClient(app) as client:  # ingest through the API, as a platform would
            tracks = [{"uri": str(p), "title": p.stem} for p in clips]
            ingest_over_api(client, {"Authorization": f"Bearer {key}"}, "studio", tracks)
        with serve_app(app) as url:
            yield Studio(url, key, settings)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        absent("selenium is not installed (pip install -e '.[dev]')")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    if chromium is None or driver_bin is None:
        absent("Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1800",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(arg)  # fmt: skip
    driver = webdriver.Chrome(service=Service(str(driver_bin)), options=options)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, script: str, timeout: float = 60.0) -> Any:
    """Poll a JavaScript expression until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(f"return ({script});")
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {script}")
        time.sleep(0.2)


def _open_with_key(driver: Any, studio: Studio, key: str) -> None:
    driver.get(studio.url + "/studio")
    _wait(driver, "document.readyState === 'complete' && !document.querySelector('#auth').hidden")
    driver.execute_script("sessionStorage.clear();")
    field = driver.find_element("id", "api-key")
    field.clear()
    field.send_keys(key)
    driver.execute_script("document.querySelector('#api-key').dispatchEvent(new Event('change'))")


def test_a_wrong_key_says_so(browser: Any, studio: Studio) -> None:
    _open_with_key(browser, studio, "sc_" + "x" * 32)
    message = _wait(browser, "document.querySelector('#status').textContent")
    assert "API key was refused" in message, message
    assert browser.find_element("id", "status").get_attribute("data-kind") == "error"


def test_a_story_becomes_a_cue_sheet_that_plays(browser: Any, studio: Studio) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    _open_with_key(browser, studio, studio.key)
    _wait(browser, "document.querySelectorAll('#catalogue option').length >= 2")
    browser.execute_script(
        "const s = document.querySelector('#story'); s.value = arguments[0];"
        "s.dispatchEvent(new Event('input'));", STORY,
    )  # fmt: skip
    browser.find_element("id", "cue").click()
    _wait(browser, "document.querySelectorAll('#scenes .scene').length > 0")
    scenes = browser.find_elements("css selector", "#scenes .scene")
    assert len(scenes) == 3  # one per paragraph
    for scene in scenes:
        assert scene.find_elements("css selector", ".track"), scene.text
    # The arc chart: one valence point and one arousal point per scene.
    assert len(browser.find_elements("css selector", "#arc circle.point.line-v")) == 3
    assert len(browser.find_elements("css selector", "#arc circle.point.line-a")) == 3
    # The story is shown with its scenes marked, in order and covering the text.
    marks = browser.find_elements("css selector", "#story-view mark")
    assert [m.get_attribute("data-scene") for m in marks] == ["0", "1", "2"]
    # Every player loads its audio through the Range route with a signed link.
    ready = _wait(
        browser,
        "[...document.querySelectorAll('#scenes audio')].every(a => a.readyState >= 2) && "
        "[...document.querySelectorAll('#scenes audio')].map(a => a.currentSrc)",
    )
    assert all("/audio?tenant=default&expires=" in src for src in ready), ready
    assert all(studio.key not in src for src in ready)  # never the key in a URL
    duration = browser.execute_script("return document.querySelector('#scenes audio').duration")
    assert duration == pytest.approx(3.0, abs=0.1)
    browser.find_element("id", "scene-1").click()
    assert "active" in (browser.find_element("id", "scene-text-1").get_attribute("class") or "")
    browser.save_screenshot(str(ARTIFACTS / "studio-cue-sheet.png"))
    # "No track twice": the same story again, with every track of the 5-track catalogue cued
    # at most once (3 + 2 tracks, the third scene left without).
    plain = browser.execute_script(
        "return [...document.querySelectorAll('#scenes .scene')].map("
        "s => s.querySelectorAll('.track').length)"
    )
    browser.find_element("id", "distinct").click()
    browser.find_element("id", "cue").click()
    counts = _wait(
        browser,
        "(() => { const n = [...document.querySelectorAll('#scenes .scene')].map("
        "s => s.querySelectorAll('.track').length); return n.join() === '3,2,0' && n; })()",
    )
    assert plain == [3, 3, 3] and counts == [3, 2, 0]
    left = browser.find_element("css selector", "#scene-2 .tracks li.none").text
    assert "every matching track is cued in an earlier scene" in left
    browser.save_screenshot(str(ARTIFACTS / "studio-cue-sheet-distinct.png"))


def test_the_mood_map_plays_a_clicked_track(browser: Any, studio: Studio) -> None:
    _open_with_key(browser, studio, studio.key)
    _wait(browser, "document.querySelectorAll('#map-catalogue option').length >= 1")
    browser.find_element("id", "show-map").click()
    points = _wait(browser, "document.querySelectorAll('#map .map-point').length")
    assert points == 5  # every synthetic clip
    assert "5 of 5 tracks" in browser.find_element("id", "map-note").text
    browser.find_element("css selector", "#map .map-point").click()
    _wait(browser, "document.querySelector('#map-player').readyState >= 2")
    assert browser.find_element("id", "map-now").text.startswith("Playing ")
    browser.save_screenshot(str(ARTIFACTS / "studio-mood-map.png"))


def test_keyboard_and_phone_width(browser: Any, studio: Studio) -> None:
    _open_with_key(browser, studio, studio.key)
    labelled = browser.execute_script(
        "return [...document.querySelectorAll('input, select, textarea')]"
        ".filter(e => e.type !== 'hidden')"
        ".every(e => e.labels && e.labels.length > 0)"
    )
    assert labelled, "every control has a label"
    browser.set_window_size(390, 844)
    try:
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1, f"the page scrolls sideways by {overflow}px at phone width"
    finally:
        browser.set_window_size(1280, 1800)


def test_a_bulk_job_runs_and_its_results_download(
    browser: Any, studio: Studio, tmp_path: Path
) -> None:
    import json

    stories = tmp_path / "stories.jsonl"
    paragraphs = STORY.split("\n\n")
    stories.write_text(
        "".join(json.dumps({"id": f"s{i}", "text": t}) + "\n" for i, t in enumerate(paragraphs)),
        "utf-8",
    )
    _open_with_key(browser, studio, studio.key)
    browser.find_element("id", "bulk-file").send_keys(str(stories))
    browser.find_element("css selector", "#bulk-form button").click()
    _wait(browser, "!document.querySelector('#bulk-download').hidden")
    assert "succeeded" in browser.find_element("id", "bulk-status").text
    text = browser.execute_async_script(
        "const done = arguments[0];"
        "fetch(document.querySelector('#bulk-download').href).then(r => r.text()).then(done);"
    )
    rows = [json.loads(line) for line in text.splitlines()]
    assert [r["index"] for r in rows] == [0, 1, 2] and all(r["ok"] for r in rows), rows[:1]
    assert [r["result"]["id"] for r in rows] == ["s0", "s1", "s2"]
    assert all(r["result"]["cue_sheet"]["segments"][0]["tracks"] for r in rows)
