"""The studio page's first cue sheet: how long a 1,000-word story takes on the embedded demo
catalogue, and the screenshot the README shows.

Builds the demo's embedded set-up in a temporary home (SQLite, Qdrant's local mode,
in-process jobs): ``--clips`` 4Q clips of ``STORYCUE_DATA_DIR/4q`` (``../shared/data``)
ingested as the catalogue ``demo`` with their titles and artists, as ``storycue demo``
does. Then, through a real gateway
(uvicorn on a free port):

* ``POST /v1/search`` of a 1,000-word story (paragraphs of storycue's story set, in order,
  cut at the last paragraph that keeps it at or under 1,000 words) plus the audio links for
  its tracks, ``--runs`` times after one warm-up call: what the page waits for before it
  can draw the cue sheet (the page's own assets, 24 kB, load before it);
* with ``--screenshot``, the studio page in headless chromium cueing A Christmas Carol
  (five scenes, their mood turning), saved to ``docs/figures/studio-cue-sheet.png``.

Writes ``bench/results/studio.json``.

    python bench/studio.py [--clips 200] [--runs 5] [--screenshot]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from _harness import REPO_ROOT, RESULTS_DIR, environment
from storycue.config import Settings, get_settings
from storycue.evaluation.stories import load_story_set, stories_of, story_text
from storycue.pipeline.engine import Engine, find_audio_files, read_catalogue_metadata, spread

OUT = RESULTS_DIR / "studio.json"
FIGURE = REPO_ROOT / "docs" / "figures" / "studio-cue-sheet.png"


def thousand_words() -> str:
    paragraphs = [p.text for p in load_story_set()]
    kept: list[str] = []
    words = 0
    for p in paragraphs:
        n = len(p.split())
        if words + n > 1000:
            break
        kept.append(p)
        words += n
    return "\n\n".join(kept)


def serve(settings: Settings) -> tuple[Any, threading.Thread, str]:
    import socket

    import uvicorn

    from storycue.api import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def screenshot(base: str, text: str) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--window-size=1280,1500"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(base + "/studio")
        deadline = time.monotonic() + 30
        while (
            driver.execute_script("return document.querySelectorAll('#catalogue option').length")
            < 2
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the studio page did not list the catalogue")
            time.sleep(0.2)
        driver.execute_script(
            "const s = document.querySelector('#story'); s.value = arguments[0];"
            "s.dispatchEvent(new Event('input'));"
            "document.querySelector('#catalogue').value = 'demo';",
            text,
        )
        driver.find_element("id", "cue").click()
        while not driver.execute_script(
            "return document.querySelectorAll('#scenes .scene').length > 0 && "
            "[...document.querySelectorAll('#scenes audio')].every(a => a.readyState >= 2)"
        ):
            time.sleep(0.2)
        driver.execute_script("document.querySelector('#result').scrollIntoView()")
        FIGURE.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(FIGURE))
    finally:
        driver.quit()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--screenshot", action="store_true")
    args = ap.parse_args()
    base_settings = get_settings()
    if base_settings.data_dir is None or not (base_settings.data_dir / "4q").is_dir():
        raise SystemExit("needs the 4Q clips: set STORYCUE_DATA_DIR (default ../shared/data)")
    folder = base_settings.data_dir / "4q"
    with tempfile.TemporaryDirectory(prefix="storycue-studio-bench-") as tmp:
        settings = base_settings.model_copy(
            update={
                "home": Path(tmp),
                "sources": base_settings.sources.model_copy(update={"allowed_roots": [folder]}),
            }
        )
        t0 = time.perf_counter()
        files = spread(find_audio_files(folder), args.clips)
        meta_csv = folder / "metadata.csv"
        meta = read_catalogue_metadata(meta_csv) if meta_csv.is_file() else {}
        report = Engine(settings).ingest(files, catalogue="demo", meta=meta)
        ingest_s = time.perf_counter() - t0
        server, thread, base = serve(settings)
        story = thousand_words()
        timings: list[float] = []
        scenes = 0
        try:
            with httpx.Client(base_url=base, timeout=120) as client:
                for i in range(args.runs + 1):
                    t = time.perf_counter()
                    r = client.post(
                        "/v1/search", json={"text": story, "top_k": 3, "catalogue": "demo"}
                    )
                    r.raise_for_status()
                    sheet = r.json()
                    ids = sorted({t["track_id"] for s in sheet["segments"] for t in s["tracks"]})
                    client.post(
                        "/v1/tracks/audio-links", json={"track_ids": ids}
                    ).raise_for_status()
                    if i > 0:  # the first call loads the model: reported apart
                        timings.append(time.perf_counter() - t)
                    else:
                        first = time.perf_counter() - t
                    scenes = len(sheet["segments"])
            if args.screenshot:
                screenshot(base, story_text(stories_of(load_story_set())["A Christmas Carol"]))
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    result = {
        "what": "studio: POST /v1/search + audio links of a 1,000-word story, "
        "embedded demo catalogue",
        "environment": environment("cpu"),
        "catalogue_clips": report.embedded + report.already_present,
        "ingest_s": round(ingest_s, 1),
        "story_words": len(story.split()),
        "scenes": scenes,
        "first_call_s": round(first, 3),
        "warm_s": {
            "runs": [round(x, 3) for x in timings],
            "median": round(statistics.median(timings), 3),
            "max": round(max(timings), 3),
        },
        "screenshot": str(FIGURE.relative_to(REPO_ROOT)) if args.screenshot else None,
    }
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
