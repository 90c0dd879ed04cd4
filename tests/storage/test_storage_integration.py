"""Metadata and vectors together, the way ingest and search use them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from storycue.identity import ModelIdentity
from storycue.storage import (
    MetadataStore,
    QdrantVectorStore,
    SearchFilter,
    TrackCreate,
    VectorPoint,
    point_id_for,
)

VA = ModelIdentity(name="va-regression", version="1.0.0", dim=2)


def test_ingest_then_search_maps_hits_back_to_tracks(
    store: MetadataStore, make_track: Callable[..., TrackCreate]
) -> None:
    jazz = store.get_or_create_catalogue("jazz")
    rock = store.get_or_create_catalogue("rock")
    model = store.register_model(VA, family="va-regression", distance="euclid")
    vectors = QdrantVectorStore.memory()
    try:
        vectors.ensure_collection(model.identity, model.distance)
        emotions = {1: (0.9, 0.1), 2: (-0.5, 0.5), 3: (0.8, 0.2), 4: (0.0, -0.9)}
        for n, va in emotions.items():
            cat = jazz if n % 2 else rock
            track, _ = store.add_track(make_track(cat.id, n, tags=[f"tag{n}"]))
            # Re-ingesting is a no-op in both stores.
            for _ in range(2):
                vectors.upsert(VA, [VectorPoint.for_track(track, np.array(va))])
                store.record_embedding(track.id, model.id, valence=va[0], arousal=va[1])
        assert vectors.count(VA) == store.count_tracks() == 4
        assert store.tracks_missing_embedding(jazz.id, model.id) == []

        hits = vectors.search(VA, [1.0, 0.0], top_k=2, flt=SearchFilter(catalogue_ids=[jazz.id]))
        tracks = store.get_tracks([h.payload["track_id"] for h in hits])
        assert [t.catalogue_id for t in tracks] == [jazz.id, jazz.id]
        assert [t.content_hash for t in tracks] == [
            make_track(jazz.id, 1).content_hash,
            make_track(jazz.id, 3).content_hash,
        ]
        assert hits[0].id == point_id_for(tracks[0].id)
        assert hits[0].payload["tags"] == ["tag1"]

        # Deleting a track: read its provenance first, then drop the vectors.
        gone = tracks[0]
        points = [e.point_id for e in store.list_embeddings(track_id=gone.id)]
        assert store.delete_track(gone.id)
        vectors.delete(VA, points)
        assert vectors.count(VA) == store.count_tracks() == 3
    finally:
        vectors.close()
