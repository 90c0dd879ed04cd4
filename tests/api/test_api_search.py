"""POST /v1/search: cue sheets, filters, limits, and the same answer as the embedded engine."""

from __future__ import annotations

from apigw import Gateway

from storycue.pipeline.engine import Engine

STORY = (
    "The sun rose over the meadow and the children ran laughing to the river, where their "
    "grandmother waited with warm bread, sweet honey and a basket of ripe summer cherries.\n\n"
    "Then the storm came. Thunder cracked over the hills, the old oak tree split and fell "
    "across the road, the horses bolted into the dark, and everyone screamed in terror."
)


def test_search_returns_a_cue_sheet_per_segment(gateway: Gateway) -> None:
    r = gateway.client.post(
        "/v1/search",
        json={"text": STORY, "top_k": 2, "catalogue": "a-only"},
        headers=gateway.h("a"),
    )
    assert r.status_code == 200, r.text
    sheet = r.json()
    assert sheet["catalogue"] == "a-only"
    assert sheet["model"]["name"] == "va-regression"
    assert sheet["story_chars"] == len(STORY)
    assert len(sheet["segments"]) == 2
    for seg in sheet["segments"]:
        assert STORY[seg["start"] : seg["end"]] == seg["text"]
        assert len(seg["tracks"]) == 2
        assert [t["rank"] for t in seg["tracks"]] == [1, 2]
        scores = [t["score"] for t in seg["tracks"]]
        assert scores == sorted(scores, reverse=True)
        assert seg["emotion"]["valence"] is not None
    a_titles = {"Bright", "Drone", "Bursts"}
    assert {t["title"] for s in sheet["segments"] for t in s["tracks"]} <= a_titles


def test_search_matches_the_embedded_engine(gateway: Gateway) -> None:
    rt = gateway.context
    engine = Engine(
        gateway.settings, model=rt.load_model(), metadata=rt.metadata, vectors=rt.vectors
    )
    for distinct in (False, True):
        body = {"text": STORY, "top_k": 3, "catalogue": "mix", "distinct": distinct}
        r = gateway.client.post("/v1/search", json=body, headers=gateway.h("default"))
        assert r.status_code == 200, r.text
        expected = engine.match(STORY, top_k=3, catalogue="mix", distinct=distinct)
        assert r.json() == expected.model_dump(mode="json")


def test_a_distinct_search_cues_each_track_once(gateway: Gateway) -> None:
    h = gateway.h("a")
    plain = gateway.client.post(
        "/v1/search", json={"text": STORY, "top_k": 3, "catalogue": "a-only"}, headers=h
    )
    assert plain.status_code == 200, plain.text
    ranked = [[t["track_id"] for t in s["tracks"]] for s in plain.json()["segments"]]
    assert plain.json()["distinct"] is False
    assert all(len(r) == 3 for r in ranked), "the catalogue's three tracks in every scene"
    body = {"text": STORY, "top_k": 2, "catalogue": "a-only", "distinct": True}
    r = gateway.client.post("/v1/search", json=body, headers=h)
    assert r.status_code == 200, r.text
    sheet = r.json()
    assert sheet["distinct"] is True
    ids = [[t["track_id"] for t in s["tracks"]] for s in sheet["segments"]]
    # The first scene its best two; the second the one track left, at rank 1.
    assert ids[0] == ranked[0][:2]
    assert ids[1] == [t for t in ranked[1] if t not in ids[0]]
    assert [t["rank"] for t in sheet["segments"][1]["tracks"]] == [1]
    bad = gateway.client.post("/v1/search", json={**body, "distinct": "yes"}, headers=h)
    assert bad.status_code == 422


def test_search_filters(gateway: Gateway) -> None:
    h = gateway.h("a")
    r = gateway.client.post("/v1/search", json={"text": STORY, "tags": ["dark"]}, headers=h)
    assert r.status_code == 200, r.text
    titles = {t["title"] for s in r.json()["segments"] for t in s["tracks"]}
    assert titles == {"Drone"}
    r = gateway.client.post("/v1/search", json={"text": STORY, "min_duration_s": 100.0}, headers=h)
    assert r.status_code == 200
    assert all(s["tracks"] == [] for s in r.json()["segments"])
    r = gateway.client.post(
        "/v1/search",
        json={"text": STORY, "min_duration_s": 5.0, "max_duration_s": 1.0},
        headers=h,
    )
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "validation_error"


def test_search_without_catalogue_stays_in_the_tenant(gateway: Gateway) -> None:
    r = gateway.client.post("/v1/search", json={"text": STORY, "top_k": 5}, headers=gateway.h("b"))
    assert r.status_code == 200, r.text
    titles = {t["title"] for s in r.json()["segments"] for t in s["tracks"]}
    # b holds clips 2..4: "Bursts" and two untitled clips; a's "Bright"/"Drone" never appear
    assert "Bright" not in titles and "Drone" not in titles
    assert len(r.json()["segments"][0]["tracks"]) == 3


def test_search_limits_and_bad_input(gateway: Gateway) -> None:
    h = gateway.h("a")
    post = gateway.client.post
    cases = [
        ({"text": STORY, "top_k": 21}, 422, "invalid_input"),
        ({"text": STORY, "top_k": 0}, 422, "validation_error"),
        ({"text": "x" * 8001}, 422, "invalid_input"),
        ({"text": "   \n  "}, 422, "validation_error"),  # the schema's pattern: not only blanks
        ({"text": 42}, 422, "validation_error"),
        ({"text": STORY, "extra": 1}, 422, "validation_error"),
        ({"text": "bad\x00text"}, 422, "validation_error"),  # the schema: no NUL
        ({"text": STORY, "catalogue": "nope"}, 404, "not_found"),
        ({"text": STORY, "tags": []}, 422, "validation_error"),
    ]
    for body, status, code in cases:
        r = post("/v1/search", json=body, headers=h)
        assert r.status_code == status, (body, r.text)
        assert r.json()["error"]["code"] == code, (body, r.text)
        assert set(r.json()["error"]) == {"code", "message", "details"}


def test_unicode_stories_are_matched(gateway: Gateway) -> None:
    text = "Ünïcödé 🌧️ — «Elle pleurait» ... שלום עולם. 雨が降っていた。\u200b\u202e"
    r = gateway.client.post("/v1/search", json={"text": text}, headers=gateway.h("a"))
    assert r.status_code == 200, r.text
    assert r.json()["story_chars"] == len(text)


def test_a_search_writes_nothing_to_the_database(gateway: Gateway) -> None:
    """The read path only reads: the model is registered once per process, not per
    request (the database sees SELECTs only, whichever catalogue scope is asked for)."""
    from sqlalchemy import event

    engine = gateway.context.metadata.engine
    statements: list[str] = []

    def record(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement.lstrip().split(None, 1)[0].upper())

    event.listen(engine, "before_cursor_execute", record)
    try:
        for body in ({"text": STORY, "catalogue": "a-only"}, {"text": STORY}):
            for _ in range(3):
                r = gateway.client.post("/v1/search", json=body, headers=gateway.h("a"))
                assert r.status_code == 200, r.text
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert statements, "the searches read the catalogues"
    assert set(statements) <= {"SELECT"}, sorted(set(statements))


def test_concurrent_searches_share_one_greedy_text_batcher(gateway: Gateway) -> None:
    """The gateway reads story text through one greedy micro-batcher per model
    (``service.share_search_forwards``, on by default): searches sent at once get the cue
    sheets they get one at a time, and every request went through that batcher."""
    from concurrent.futures import ThreadPoolExecutor

    from storycue.models.batching import BatchedTextEncoder

    h = gateway.h("default")
    stories = [STORY, STORY.split("\n\n")[0], STORY.split("\n\n")[1], "A quiet grey morning."]

    def ask(text: str) -> dict[str, object]:
        r = gateway.client.post("/v1/search", json={"text": text, "top_k": 3}, headers=h)
        assert r.status_code == 200, r.text
        body: dict[str, object] = r.json()
        return body

    alone = [ask(t) for t in stories]
    encoder = gateway.context.load_model().text_encoder
    assert isinstance(encoder, BatchedTextEncoder)
    assert encoder.batcher.max_wait_s == 0.0
    before = encoder.batcher.stats.units, encoder.batcher.stats.items
    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(ask, stories * 4))
    segments = sum(len(a["segments"]) for a in alone)  # type: ignore[arg-type]
    # every segment went through the batcher, one request per search
    assert encoder.batcher.stats.units - before[0] == 4 * segments
    assert encoder.batcher.stats.items - before[1] == 4 * len(stories)

    def tracks(sheet: dict[str, object]) -> list[list[tuple[int, float]]]:
        return [
            [(t["track_id"], t["score"]) for t in seg["tracks"]]
            for seg in sheet["segments"]  # type: ignore[attr-defined]
        ]

    # A shared pass pads a segment beside others: the same tracks, scores equal up to float
    # rounding (not bit for bit).
    for i, sheet in enumerate(together):
        got, want = tracks(sheet), tracks(alone[i % len(stories)])
        assert [[t for t, _ in seg] for seg in got] == [[t for t, _ in seg] for seg in want]
        for seg_got, seg_want in zip(got, want, strict=True):
            for (_, a), (_, b) in zip(seg_got, seg_want, strict=True):
                assert abs(a - b) < 1e-4
