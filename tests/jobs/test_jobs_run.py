"""The job functions on SQLite and on PostgreSQL: the same behaviour on both.

Real model (shipped va-regression with the session's text encoder), real synthetic audio,
Qdrant local mode. Covers ingest and bulk match through the in-process dispatcher, re-runs
after a simulated crash, idempotence and cancellation between batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storycue.audio.synthetic import synthesise_clips
from storycue.config import IngestSourceSettings, QueueSettings, Settings
from storycue.context import ProcessContext, close_contexts, get_context
from storycue.jobs import InProcessDispatcher, run_ingest, run_match_items
from storycue.jobs.matching import MatchOptions, search_scope
from storycue.jobs.params import IngestParams, MatchParams
from storycue.jobs.submit import submit_ingest, submit_match
from storycue.pipeline.cuesheet import CueSheet
from storycue.pipeline.match import match_texts
from storycue.storage import MetadataStore
from storycue.storage.factory import close_vector_stores
from storycue.storage.vectors import SearchFilter

STORIES = [
    (f"story-{n}", text)
    for n, text in enumerate(
        [
            "They cheered and sang as the sun came out over the festival.",
            "The letter said he had died in the war, and she wept all night.",
            "Something scratched at the door. She froze, heart pounding.",
            "A lazy Sunday by the lake, nothing to do, nowhere to be.",
            "He smashed the plate against the wall, red with rage.",
            "At last the twins were home, safe, and the house filled with joy.",
            "Rain again. The empty chair. The silence after the funeral.",
        ]
    )
]


@pytest.fixture
def env(
    metadata: MetadataStore, db_url: str, tmp_path: Path, text_encoder: Any
) -> Iterator[tuple[Settings, ProcessContext, list[Path]]]:
    music = tmp_path / "music"
    clips = synthesise_clips(music, seconds=2.0)
    settings = Settings(
        home=tmp_path / "home",
        database_url=db_url,
        sources=IngestSourceSettings(allowed_roots=[music]),
        queue=QueueSettings(job_chunk_size=3),
        batch={"text": 2},  # type: ignore[arg-type]
    )
    rt = get_context(settings)
    rt.load_model().use_text_encoder(text_encoder)
    try:
        yield settings, rt, clips
    finally:
        close_contexts()
        close_vector_stores()


def _ingest(settings: Settings, rt: ProcessContext, tenant: str, paths: list[Path]) -> str:
    cat, _ = rt.tenancy.create_catalogue(tenant, "music")
    for p in paths:
        rt.tenancy.register_source(tenant, cat.id, str(p), title=p.stem)
    job = submit_ingest(rt, tenant, IngestParams(catalogue="music"))
    run_ingest(job.id, settings)
    return job.id


def test_ingest_is_idempotent_and_per_tenant(
    env: tuple[Settings, ProcessContext, list[Path]],
) -> None:
    settings, rt, clips = env
    job_id = _ingest(settings, rt, "t1", clips[:3])
    job = rt.jobs.require("t1", job_id)
    assert job.state == "succeeded" and job.progress_done == 3
    model = rt.load_model()
    cat = rt.tenancy.catalogue("t1", "music")
    assert rt.vectors.count(model.identity, SearchFilter(catalogue_ids=[cat.id])) == 3
    # a redelivered task of the finished job does nothing; a new job finds nothing to do
    run_ingest(job_id, settings, redelivered=True)
    again = submit_ingest(rt, "t1", IngestParams(catalogue="music"))
    assert again.progress_total == 0
    # re-ingesting the same sources after a simulated crash duplicates nothing
    rt.tenancy.register_source("t1", cat.id, str(clips[0]), title="renamed")
    crash = rt.jobs.create(
        "t1",
        "ingest",
        {"catalogue": "music"},
        items=[(str(s.id), s.uri) for s in rt.tenancy.sources("t1", cat.id)],
        catalogue_id=cat.id,
    )
    assert rt.jobs.start("t1", crash.id)
    rt.jobs.requeue("t1", crash.id)  # the worker was lost
    run_ingest(crash.id, settings, redelivered=True)
    results, _ = rt.jobs.results("t1", crash.id)
    assert [r.result["outcome"] for r in results] == ["already_present"] * 3
    assert rt.metadata.count_tracks(cat.id) == 3
    assert rt.vectors.count(model.identity, SearchFilter(catalogue_ids=[cat.id])) == 3
    # another tenant's catalogue of the same name is separate
    _ingest(settings, rt, "t2", clips[3:])
    cat2 = rt.tenancy.catalogue("t2", "music")
    assert cat2.id != cat.id
    assert rt.vectors.count(model.identity, SearchFilter(catalogue_ids=[cat2.id])) == 2


def test_match_job_chunks_resume_and_results(
    env: tuple[Settings, ProcessContext, list[Path]],
) -> None:
    settings, rt, clips = env
    _ingest(settings, rt, "t1", clips)
    job = submit_match(rt, "t1", STORIES, MatchParams(top_k=2, catalogue="music"), settings)
    assert job.progress_total == 7
    # a worker crashes after the first chunk: the job is running with 3 results
    run_match_items(job.id, [0, 1, 2], settings)
    mid = rt.jobs.require("t1", job.id)
    assert (mid.state, mid.progress_done) == ("running", 3)
    first, _ = rt.jobs.results("t1", job.id)
    # the dispatcher re-sends everything (the chunks of the redelivered tasks)
    dispatcher = InProcessDispatcher(settings, max_workers=2)
    dispatcher.dispatch(mid)
    dispatcher.wait(job.id, timeout=120)
    dispatcher.shutdown()
    final = rt.jobs.require("t1", job.id)
    assert (final.state, final.progress_done, final.progress_total) == ("succeeded", 7, 7)
    results, cursor = rt.jobs.results("t1", job.id, limit=100)
    assert cursor is None
    assert [r.index for r in results] == list(range(7))
    assert [r.result["id"] for r in results] == [sid for sid, _ in STORIES]
    assert [r.result for r in results[:3]] == [r.result for r in first]  # unchanged
    for r in results:
        sheet = r.result["cue_sheet"]
        assert sheet["catalogue"] == "music"
        assert all(len(seg["tracks"]) == 2 for seg in sheet["segments"])
    assert final.model is not None and final.model.name == "va-regression"


def test_chunk_embedded_in_one_call_gives_the_same_results(
    env: tuple[Settings, ProcessContext, list[Path]],
) -> None:
    """A chunk's segments go to one encoder call (sorted by length across the chunk); the
    cue sheets equal those of the previous behaviour, one call per ``batch.text`` stories."""
    settings, rt, clips = env
    _ingest(settings, rt, "t1", clips)
    long_story = "\n\n".join(text for _, text in STORIES * 6)  # several segments
    stories = [
        ("tiny", "Joy."),
        ("long", long_story),
        ("mid", " ".join(text for _, text in STORIES[:3])),
    ]
    params = MatchParams(top_k=3, catalogue="music")
    job = submit_match(rt, "t1", stories, params, settings)
    run_match_items(job.id, [0, 1, 2], settings)
    results, _ = rt.jobs.results("t1", job.id, limit=10)
    assert rt.jobs.require("t1", job.id).state == "succeeded"
    scope = search_scope(rt, "t1", MatchOptions(top_k=3, catalogue="music"))
    before: list[CueSheet] = []
    for g in range(0, len(stories), settings.batch.text):  # the previous grouping
        sheets = match_texts(
            scope.model,
            rt.vectors,
            [text for _, text in stories[g : g + settings.batch.text]],
            top_k=3,
            flt=scope.flt,
            catalogue="music",
            max_chars=settings.limits.max_story_chars,
        )
        before += [sh for sh in sheets if isinstance(sh, CueSheet)]
    assert len(before) == 3 and len(before[1].segments) > 2
    for r, old in zip(results, before, strict=True):
        new = r.result["cue_sheet"]
        ref = old.model_dump(mode="json")
        assert len(new["segments"]) == len(ref["segments"])
        for ns, rs in zip(new["segments"], ref["segments"], strict=True):
            assert (ns["text"], ns["tokens"]) == (rs["text"], rs["tokens"])
            assert [t["track_id"] for t in ns["tracks"]] == [t["track_id"] for t in rs["tracks"]]
            for nt, rt_ in zip(ns["tracks"], rs["tracks"], strict=True):
                assert abs(nt["score"] - rt_["score"]) <= 1e-5
            for k in ("valence", "arousal"):
                assert abs(ns["emotion"][k] - rs["emotion"][k]) <= 1e-5


def test_a_distinct_match_job_cues_each_track_once_per_story(
    env: tuple[Settings, ProcessContext, list[Path]],
) -> None:
    """``distinct`` holds per cue sheet: a story never repeats a track, stories of one chunk
    may share tracks, and each sheet equals the story matched alone."""
    settings, rt, clips = env
    _ingest(settings, rt, "t1", clips)
    two_scenes = "\n\n".join(text for _, text in STORIES[:4]) + "\n\n" + STORIES[5][1] * 3
    stories = [("a", two_scenes), ("b", two_scenes), ("c", STORIES[0][1])]
    params = MatchParams(top_k=2, catalogue="music", distinct=True)
    job = submit_match(rt, "t1", stories, params, settings)
    assert job.params["distinct"] is True
    # An ordinary job does not store it, so the previous release's workers, which refuse
    # parameters they do not know, still run it during a rolling upgrade.
    plain = submit_match(rt, "t1", stories[:1], MatchParams(top_k=2, catalogue="music"), settings)
    assert "distinct" not in plain.params
    assert MatchParams.model_validate(plain.params).distinct is False
    run_match_items(job.id, [0, 1, 2], settings)
    assert rt.jobs.require("t1", job.id).state == "succeeded"
    results, _ = rt.jobs.results("t1", job.id, limit=10)
    scope = search_scope(rt, "t1", MatchOptions(top_k=2, catalogue="music", distinct=True))
    sheets = [r.result["cue_sheet"] for r in results]
    for (_, text), sheet in zip(stories, sheets, strict=True):
        assert sheet["distinct"] is True
        ids = [t["track_id"] for seg in sheet["segments"] for t in seg["tracks"]]
        assert len(ids) == len(set(ids))
        (alone,) = match_texts(
            scope.model, rt.vectors, [text], top_k=2, flt=scope.flt, catalogue="music",
            max_chars=settings.limits.max_story_chars, distinct=True,
        )  # fmt: skip
        assert isinstance(alone, CueSheet)
        assert [[t["track_id"] for t in seg["tracks"]] for seg in sheet["segments"]] == [
            [t.track_id for t in seg.tracks] for seg in alone.segments
        ]
    assert len(sheets[0]["segments"]) >= 2
    assert sheets[0]["segments"] == sheets[1]["segments"], "the same story, the same sheet"


def test_cancel_between_batches(env: tuple[Settings, ProcessContext, list[Path]]) -> None:
    settings, rt, clips = env
    _ingest(settings, rt, "t1", clips[:2])
    job = submit_match(rt, "t1", STORIES, MatchParams(top_k=1), settings)
    assert rt.jobs.start("t1", job.id)
    run_match_items(job.id, [0, 1], settings)  # one group (job_chunk_size = 3)
    rt.jobs.request_cancel("t1", job.id)
    run_match_items(job.id, [2, 3, 4, 5, 6], settings)
    final = rt.jobs.require("t1", job.id)
    assert final.state == "cancelled" and final.progress_done == 2


def test_a_job_that_cannot_run_fails_with_a_code(
    env: tuple[Settings, ProcessContext, list[Path]],
) -> None:
    settings, rt, _clips = env
    job = rt.jobs.create("t1", "match", {"top_k": 1, "catalogue": "gone"}, items=STORIES[:1])
    run_match_items(job.id, [0], settings)
    failed = rt.jobs.require("t1", job.id)
    assert (failed.state, failed.error_code) == ("failed", "not_found")
    bad = rt.jobs.create("t1", "match", {"top_k": "many"}, items=STORIES[:1])
    run_match_items(bad.id, [0], settings)
    assert rt.jobs.require("t1", bad.id).error_code == "invalid_params"


def test_ingest_prepares_one_source_ahead_and_keeps_item_outcomes(
    env: tuple[Settings, ProcessContext, list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next track is handed to the prefetcher before the current one is embedded; a
    file that cannot be decoded and a source deleted after submission stay their own
    items' results, in order, and the job goes on."""
    import storycue.jobs.ingest as ingest_mod

    settings, rt, clips = env
    music = clips[0].parent
    bad = music / "not-audio.wav"
    bad.write_bytes(b"this is not a wave file")
    cat, _ = rt.tenancy.create_catalogue("t1", "music")
    paths = [clips[0], bad, clips[1], clips[2], clips[3]]
    sources = [rt.tenancy.register_source("t1", cat.id, str(p))[0] for p in paths]
    job = submit_ingest(rt, "t1", IngestParams(catalogue="music"))
    rt.tenancy.delete_source("t1", cat.id, sources[3].id)  # gone before the worker runs

    events: list[str] = []
    name = {s.id: p.name for s, p in zip(sources, paths, strict=True)}
    submit, store = ingest_mod.SourcePrefetcher.submit, ingest_mod.store_prepared

    def spy_submit(self: Any, source: Any) -> Any:
        events.append(f"prepare {name[source.id]}")
        return submit(self, source)

    def spy_store(runtime: Any, model: Any, record: Any, catalogue: Any, prepared: Any) -> Any:
        events.append(f"embed {name[prepared.source.id]}")
        return store(runtime, model, record, catalogue, prepared)

    monkeypatch.setattr(ingest_mod.SourcePrefetcher, "submit", spy_submit)
    monkeypatch.setattr(ingest_mod, "store_prepared", spy_store)
    run_ingest(job.id, settings)

    c0, c1, _, c3 = (p.name for p in clips[:4])
    assert events == [
        f"prepare {c0}",
        "prepare not-audio.wav",
        f"embed {c0}",
        f"prepare {c1}",  # the bad file fails in preparation: nothing to embed
        f"embed {c1}",  # the deleted source (item 3) is never prepared
        f"prepare {c3}",
        f"embed {c3}",
    ]
    results, _ = rt.jobs.results("t1", job.id)
    outcomes = [(r.result["outcome"], (r.result.get("error") or {}).get("code")) for r in results]
    assert outcomes[0] == ("embedded", None)
    assert outcomes[1][0] == "failed" and outcomes[1][1] is not None
    assert outcomes[2] == ("embedded", None)
    assert outcomes[3] == ("failed", "not_found")
    assert outcomes[4] == ("embedded", None)
    final = rt.jobs.require("t1", job.id)
    assert final.progress_done == 5
    assert rt.metadata.count_tracks(cat.id) == 3
