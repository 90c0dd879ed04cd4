"""Distinct cue sheets: no track cued twice in one story, each scene its best unused tracks.

The shipped model reads the scenes; the catalogue is a real Qdrant Edge store filled with
points placed around the scenes' own embeddings, so which tracks each scene prefers (and
how much they overlap) is known exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from storycue.config import get_settings
from storycue.identity import ModelIdentity
from storycue.models.emotion import EmotionModel, load_emotion_model
from storycue.pipeline.cuesheet import CueSheet
from storycue.pipeline.match import match_texts
from storycue.pipeline.segment import segment_story
from storycue.storage import SearchFilter, VectorPoint, point_id_for
from storycue.storage.edge import EdgeVectorStore

#: Three scenes of one story; the first and the third read alike (both serene).
SCENES = (
    "The lake lay still under the evening sky, and the old man rowed home slowly, at peace. "
    "Swallows skimmed the water; somewhere a bell rang for the last time that day.",
    "Then the storm broke: thunder cracked, the boat pitched, and he screamed for help. "
    "Waves smashed over the bow and the oars were torn from his hands.",
    "By morning the water was calm again and the village slept in the soft grey light. "
    "He sat on the jetty with a warm cup of tea and listened to the quiet.",
)
STORY = "\n\n".join(SCENES)


@pytest.fixture(scope="module")
def model() -> EmotionModel:
    return load_emotion_model(get_settings().emotion_model)


def _scene_vectors(model: EmotionModel) -> np.ndarray:
    segs = segment_story(STORY, model.text_encoder.count_tokens, model.text_encoder.max_tokens)
    assert len(segs) == len(SCENES), "each paragraph is a scene"
    return model.embed_text([s.text for s in segs])


@pytest.fixture()
def store(model: EmotionModel, tmp_path: Path) -> Iterator[EdgeVectorStore]:
    """40 tracks in 4 clusters of 10: around the first scene's vector, the second's, the
    midpoint of the first and the third (the serene scenes share it, so a plain sheet
    repeats tracks), and opposite the second; odd and even ids in two catalogues."""
    rng = np.random.default_rng(0)
    scenes = _scene_vectors(model)
    anchors = [scenes[0], scenes[1], scenes[0] * 0.5 + scenes[2] * 0.5, -scenes[1]]
    points = []
    for a, anchor in enumerate(anchors):
        for j in range(10):
            v = anchor + rng.normal(scale=0.05, size=anchor.shape)
            if model.info.distance == "cosine":
                v = v / np.linalg.norm(v)
            tid = a * 10 + j
            points.append(
                VectorPoint(
                    point_id_for(tid),
                    v.astype(np.float32),
                    {"track_id": tid, "catalogue_id": 1 + (tid % 2), "uri": f"t{tid}.wav"},
                )
            )
    with EdgeVectorStore(tmp_path / "edge") as s:
        s.ensure_collection(model.identity, model.info.distance)
        s.upsert(model.identity, points)
        yield s


def _sheet(
    model: EmotionModel,
    store: EdgeVectorStore,
    top_k: int,
    *,
    distinct: bool,
    flt: SearchFilter | None = None,
) -> CueSheet:
    (sheet,) = match_texts(
        model, store, [STORY], top_k=top_k, flt=flt, catalogue=None,
        max_chars=100_000, distinct=distinct,
    )  # fmt: skip
    assert isinstance(sheet, CueSheet)
    return sheet


def _ids(sheet: CueSheet) -> list[list[int]]:
    return [[t.track_id for t in seg.tracks] for seg in sheet.segments]


def test_a_plain_sheet_repeats_tracks_for_scenes_that_read_alike(
    model: EmotionModel, store: EdgeVectorStore
) -> None:
    sheet = _sheet(model, store, 5, distinct=False)
    ids = _ids(sheet)
    assert not sheet.distinct
    assert set(ids[0]) & set(ids[2]), "the two serene scenes share tracks without distinct"


@pytest.mark.parametrize("top_k", [3, 5, 13])
def test_distinct_sheet_cues_each_track_once_and_each_scene_its_best_unused(
    model: EmotionModel, store: EdgeVectorStore, monkeypatch: pytest.MonkeyPatch, top_k: int
) -> None:
    plain = _ids(_sheet(model, store, 40, distinct=False))  # every track, ranked per scene
    searches: list[tuple[int, int]] = []
    search_batch = store.search_batch

    def counted(identity: ModelIdentity, queries: Any, k: int, flt: Any) -> Any:
        searches.append((len(queries), k))
        return search_batch(identity, queries, k, flt)

    monkeypatch.setattr(store, "search_batch", counted)
    sheet = _sheet(model, store, top_k, distinct=True)
    ids = _ids(sheet)
    # One batch of every scene at twice top_k; a scene short of unused tracks among its
    # first 2 x top_k is searched again, alone, for top_k + the tracks already cued.
    expected = [(len(SCENES), 2 * top_k)]
    for i, ranked in enumerate(plain):
        cued = {t for scene in ids[:i] for t in scene}
        if len([t for t in ranked[: 2 * top_k] if t not in cued]) < top_k:
            expected.append((1, top_k + len(cued)))
    assert searches == expected
    if top_k == 13:  # 3 x 13 of 40 tracks: the third scene must search again
        assert len(searches) > 1
    assert sheet.distinct
    flat = [t for scene in ids for t in scene]
    assert len(flat) == len(set(flat)) == top_k * len(SCENES)
    used: set[int] = set()
    for scene, ranked in zip(ids, plain, strict=True):
        # In story order: the scene's own ranking with the earlier scenes' tracks left out.
        assert scene == [t for t in ranked if t not in used][:top_k]
        used.update(scene)
    for seg in sheet.segments:
        assert [t.rank for t in seg.tracks] == list(range(1, top_k + 1))
        scores = [t.score for t in seg.tracks]
        assert scores == sorted(scores, reverse=True)
    # The first scene is exactly what a plain search gives it.
    assert ids[0] == plain[0][:top_k]


def test_a_top_up_search_asks_for_no_more_than_a_search_answers(
    model: EmotionModel, store: EdgeVectorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("storycue.pipeline.match.MAX_TOP_K", 30)
    asked: list[int] = []
    search_batch = store.search_batch

    def counted(identity: ModelIdentity, queries: Any, k: int, flt: Any) -> Any:
        asked.append(k)
        return search_batch(identity, queries, k, flt)

    monkeypatch.setattr(store, "search_batch", counted)
    ids = _ids(_sheet(model, store, 13, distinct=True))
    assert asked[0] == 26 and asked[1:] and max(asked[1:]) == 30  # not 13 + 26
    flat = [t for scene in ids for t in scene]
    assert len(flat) == len(set(flat))


def test_distinct_sheet_respects_filters_and_runs_short_only_when_the_catalogue_does(
    model: EmotionModel, store: EdgeVectorStore
) -> None:
    # Catalogue 1 holds the 20 even track ids: 3 scenes x 8 tracks do not fit.
    flt = SearchFilter(catalogue_ids=[1])
    ids = _ids(_sheet(model, store, 8, distinct=True, flt=flt))
    assert [len(scene) for scene in ids] == [8, 8, 4]
    flat = [t for scene in ids for t in scene]
    assert len(set(flat)) == 20 and all(t % 2 == 0 for t in flat)
