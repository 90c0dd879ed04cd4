"""What the vector-store tests share: the points of a small catalogue laid out on a circle,
and emptying a Qdrant server between tests."""

from __future__ import annotations

from typing import Any

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from storycue.storage import VectorPoint, point_id_for


def angle_point(track_id: int, degrees: float, **payload: object) -> VectorPoint:
    """A 2-d point of norm 3 at ``degrees`` on the circle, with ``track_id`` in its payload."""
    rad = np.deg2rad(degrees)
    return VectorPoint(
        id=point_id_for(track_id),
        vector=np.array([np.cos(rad), np.sin(rad)]) * 3.0,
        payload={"track_id": track_id, **payload},
    )


def catalogue_points() -> list[VectorPoint]:
    """Five tracks over three catalogues, with durations and tags for the filter tests."""
    return [
        angle_point(1, 0, catalogue_id=1, duration_s=30.0, tags=["calm", "piano"]),
        angle_point(2, 10, catalogue_id=1, duration_s=200.0, tags=["rock"]),
        angle_point(3, 20, catalogue_id=2, duration_s=60.0, tags=["calm"]),
        angle_point(4, 90, catalogue_id=2, duration_s=120.0, tags=[]),
        angle_point(5, 180, catalogue_id=3, duration_s=45.0, tags=["sad", "piano"]),
    ]


def clear_server(url: str) -> None:
    """Delete every collection and alias of the Qdrant server at ``url``."""
    client = QdrantClient(url=url)
    try:
        drop = [
            qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=a.alias_name))
            for a in client.get_aliases().aliases
        ]
        if drop:
            client.update_collection_aliases(change_aliases_operations=drop)
        for c in client.get_collections().collections:
            client.delete_collection(c.name)
    finally:
        client.close()


def vector_points(url: str) -> list[Any]:
    """Every point of every collection of the Qdrant server at ``url`` (with payloads)."""
    client = QdrantClient(url=url, timeout=30)
    try:
        points: list[Any] = []
        for c in client.get_collections().collections:
            offset = None
            while True:
                page, offset = client.scroll(c.name, limit=256, offset=offset, with_payload=True)
                points.extend(page)
                if offset is None:
                    break
        return points
    finally:
        client.close()
