"""Every benchmark script runs from the repository with ``--quick`` and writes its JSON and
the combined summary (the numbers of a quick run are not checked, only their shape)."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from storycue.models.checkpoints import checkpoint_info, resolve_checkpoint
from support.local import require_port

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Import a bench script by name, with ``bench/`` on ``sys.path`` as when it is run."""
    monkeypatch.syspath_prepend(str(BENCH))
    loaded: list[str] = []

    def load(name: str) -> ModuleType:
        loaded.append(name)
        return importlib.import_module(name)

    yield load
    for name in [
        *loaded,
        "_harness",
        "_report",
        "text",
        "search",
        "ingest",
        "bulk",
        "ingest_celery",
        "ingest_kafka",
    ]:
        sys.modules.pop(name, None)


def _positive(x: Any) -> bool:
    return isinstance(x, int | float) and x > 0


def _summary(results_dir: Path) -> str:
    summary = (results_dir / "SUMMARY.md").read_text()
    assert "Quick smoke run" in summary
    return summary


def test_text_quick(bench: Any, tmp_path: Path) -> None:
    r = bench("text").main(
        ["--quick", "--inputs", "synthetic", "--texts", "24", "--results-dir", str(tmp_path)]
    )
    on_disk = json.loads((tmp_path / "text.json").read_text())
    assert on_disk["workloads"].keys() == r["workloads"].keys()
    assert set(r["workloads"]) == {"torch/synthetic", "onnx/synthetic"}
    for w in r["workloads"].values():
        assert w["segments"] == 24
        for path in ("embed_text", "bare_encoder", "worker_batching", "bare_on_worker_batches"):
            assert _positive(w[path]["segments_per_s"]), path
        assert _positive(w["ratio"]) and _positive(w["worker_ratio"])
        assert w["worker_batching"]["batches_formed"] >= 1
    assert _positive(r["onnx_vs_torch"]["synthetic"]["bare_onnx_over_bare_torch"])
    assert r["config"]["quick"] is True and r["environment"]["python"]
    assert "| onnx/synthetic | 24 |" in _summary(tmp_path)


def test_search_quick(bench: Any, tmp_path: Path) -> None:
    r = bench("search").main(["--quick", "--http", "--results-dir", str(tmp_path)])
    assert json.loads((tmp_path / "search.json").read_text())["config"] == r["config"]
    shipped = checkpoint_info(resolve_checkpoint("va-regression"))
    assert r["config"]["sizes"] == [1000, 3000]
    assert (r["config"]["dim"], r["config"]["distance"]) == (
        shipped.identity.dim,
        shipped.distance,
    )
    sizes = r["backends"]["qdrant-edge"]["sizes"]
    for size in ("1000", "3000"):
        for label in ("no_filter", "catalogue_filter"):
            case = sizes[size]["search"][label]
            assert _positive(case["store"]["p99_ms"]) and _positive(
                case["exact_numpy_scan"]["p50_ms"]
            )
            assert case["recall_at_10"] == pytest.approx(1.0)  # 4-d: the index is exact
        assert case["matching_points"] == int(size) // 10
        if r["config"]["api"]:
            assert _positive(sizes[size]["api"]["catalogue_filter"]["p99_ms"])
    if r["config"]["api"]:  # --http: the same requests to a gateway process of its own
        http = sizes["3000"]["http"]
        assert _positive(http["catalogue_filter"]["p99_ms"])
        assert _positive(http["catalogue_filter_8_clients"]["requests_per_s"])
        assert "| qdrant-edge | 3,000 | `storycue serve`, HTTP | catalogue filter |" in _summary(
            tmp_path
        )
    assert "| qdrant-edge | 3,000 | catalogue filter |" in _summary(tmp_path)


def test_bulk_quick(bench: Any, tmp_path: Path) -> None:
    r = bench("bulk").main(["--quick", "--results-dir", str(tmp_path)])
    assert json.loads((tmp_path / "bulk.json").read_text())["ratio"] == r["ratio"]
    assert r["config"]["stories"] == 40 and r["config"]["execution"] == "inprocess"
    assert r["config"]["vector_backend"] == "qdrant-edge"
    assert _positive(r["job"]["stories_per_s"]) and _positive(r["bare_encoder"]["stories_per_s"])
    assert "Bulk matching: a 40-story job" in _summary(tmp_path)


@pytest.mark.slow
def test_bulk_quick_through_celery(bench: Any, tmp_path: Path) -> None:
    require_port("Redis", "127.0.0.1", 6379)
    r = bench("bulk").main(["--quick", "--execution", "celery", "--results-dir", str(tmp_path)])
    assert r["config"]["execution"] == "celery"
    assert _positive(r["job"]["stories_per_s"])
    assert (tmp_path / "bulk-celery.json").is_file()


@pytest.mark.data
def test_ingest_quick(bench: Any, tmp_path: Path, real_data_dir: Path) -> None:
    if not (real_data_dir / "4q").is_dir():
        pytest.skip("../shared/data/4q is absent")
    pytest.importorskip("musicnn", reason="the musicnn wheel (weights) is not installed")
    r = bench("ingest").main(
        ["--quick", "--data-dir", str(real_data_dir), "--results-dir", str(tmp_path)]
    )
    assert r["config"]["clips"] == 4 and _positive(r["ratio"])
    assert "## Ingest" in _summary(tmp_path)


def test_summary_renders_every_committed_result(bench: Any, tmp_path: Path) -> None:
    """SUMMARY.md from the committed results: each file under its own section (a section
    whose name starts like another's, ingest-celery, is not taken for a variant of it)."""
    import shutil

    report = bench("_report")
    for p in (BENCH / "results").glob("*.json"):
        shutil.copy(p, tmp_path / p.name)
    text = report.write_summary(tmp_path).read_text()
    assert "could not be rendered" not in text
    if (tmp_path / "ingest-celery.json").exists():
        assert "## Ingest through Celery" in text
    if (tmp_path / "ingest-kafka.json").exists():
        assert "## Ingest through Kafka" in text
