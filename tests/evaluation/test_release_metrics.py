"""What a release's numbers read: the validation parts by default, the test parts only when
asked (a release's one look at them), for retrieval and for the reading of prose alike."""

from __future__ import annotations

from typing import Any

import pytest

from storycue.config import Settings
from storycue.evaluation import continuous, harness
from storycue.evaluation.release import release_metrics


class _Model:
    class info:  # noqa: N801 - stands in for CheckpointInfo's one attribute read here
        va_axes = True


@pytest.fixture
def parts_read(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every split part the metrics ask for, in order; the heavy work itself is replaced by
    tiny reports of the right shape (this test is about which parts are read)."""
    seen: list[str] = []

    def gallery(part: str, backbone: Any, settings: Settings) -> str:
        seen.append(f"4q-{part}")
        return part

    def queries(name: str, settings: Settings) -> str:
        seen.append(name)
        return name

    def evaluate(model: Any, q: Any, g: Any, settings: Settings) -> dict[str, Any]:
        return {"mappings": {"manual": {"macro": {"p@5": 1.0}}}, "diagnostics": {}}

    def reading(model: Any, settings: Settings, part: str) -> dict[str, Any]:
        seen.append(f"emobank-{part}")
        return {"rows": {"model": {"sets": {"sentences": {"valence_pearson": 0.5}}}}}

    monkeypatch.setattr(harness, "fourq_gallery", gallery)
    monkeypatch.setattr(harness, "load_queries", queries)
    monkeypatch.setattr(harness, "evaluate", evaluate)
    monkeypatch.setattr(continuous, "continuous_report", reading)
    return seen


def test_a_release_reads_validation_parts_unless_the_test_is_asked_for(
    parts_read: list[str],
) -> None:
    settings = Settings(data_dir=None)
    metrics = release_metrics(_Model(), None, settings)
    assert not [p for p in parts_read if "test" in p]
    assert set(metrics) == {"isear-validation->4q-validation",
                            "goemotions-validation->4q-validation", "reading"}  # fmt: skip
    assert set(metrics["reading"]) == {"validation"}
    parts_read.clear()
    looked = release_metrics(_Model(), None, settings, test=True)
    assert "isear-test" in parts_read and "4q-test" in parts_read and "emobank-test" in parts_read
    assert "isear-test->4q-test" in looked and set(looked["reading"]) == {"validation", "test"}
