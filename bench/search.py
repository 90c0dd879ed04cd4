"""Search latency: the vector store (and ``POST /v1/search``) beside an exact numpy scan.

For each catalogue size (``--sizes``, default 10k and 100k tracks) and each embedded vector
backend (``--backends``: ``qdrant-edge``, ``qdrant-local``), synthetic vectors of the
shipped model's dimension (``--dim`` to change it) are inserted directly through the vector
store, with the standard payload (track, catalogue, duration, tags) spread over
``--catalogues`` catalogues. Then, for the same query vectors, with and without a filter on
one catalogue:

(a) ``VectorStore.search`` (top-k with payloads), the call every match makes per segment;
(b) an exact numpy scan of the same vectors (dot products, or squared distances through
    dot products for euclid, masked by the filter, ``argpartition`` for the top-k);
(c) with ``--api`` (default when the gateway package exists and the vectors have the
    model's dimension): ``POST /v1/search`` on the FastAPI app in process (httpx
    ``TestClient``), one-sentence stories, the catalogues created through the tenancy
    store; its latency includes segmenting and encoding the story (the text encoder's
    forward dominates on CPU), the tenant's catalogue check and one search per segment.

With ``--http`` the same requests also go to a real gateway process (``storycue serve``,
one uvicorn worker, over loopback HTTP with keep-alive clients) on the same home once the
largest size is stored: the in-process ``TestClient`` runs the client's request building and
response parsing under the server's interpreter lock, which a deployed gateway does not.

Reported: p50/p90/p99 latency per path, the speed-up of (a) over (b) at the median, and
recall@k of (a) against (b) (HNSW is approximate). Insert time and, for Qdrant Edge, the
HNSW build time are reported separately.

Run from the repository root: ``python bench/search.py`` (``--help`` for options); the
backend comparison of ``docs/scale.md``: ``python bench/search.py --dim 128
--backends qdrant-edge,qdrant-local --no-api --name search-128d``; ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from _harness import (
    add_run_arguments,
    resolve_emotion_checkpoint,
    results_dir,
    run_record,
    scratch_dir,
    wait_for_quiet,
    write_results,
)
from _report import fmt, footer, quick_note
from storycue.config import Settings
from storycue.identity import ModelIdentity
from storycue.log import configure_logging
from storycue.storage.records import Distance
from storycue.storage.vectors import SearchFilter, VectorPoint, point_id_for

NAME = "search"
BACKENDS = ("qdrant-edge", "qdrant-local")
TARGET_P99_MS = 20.0
TAGS = ("calm", "dark", "epic", "happy", "piano", "strings", "tense", "warm")
STORIES = (
    "The storm broke over the harbour and the boats pulled at their ropes.",
    "She laughed so hard that the whole kitchen joined in.",
    "Nobody came to the funeral, not even the brother who had promised to.",
    "A warm evening, music drifting out of every open window.",
    "He waited by the door for hours, listening for footsteps that never came.",
    "They won the final in the last minute and the town poured into the square.",
    "I am afraid of what the letter will say.",
    "The kitten slept in a patch of sun on the windowsill.",
    "Everything was grey: the sky, the sea, the faces on the pier.",
    "The soldiers marched into the burning city without a word.",
)


# ---- data ------------------------------------------------------------------------------------
def synthetic_vectors(n: int, dim: int, distance: Distance, seed: int) -> np.ndarray:
    """``n`` float32 vectors that look like embeddings of this space.

    Low dimensions (the emotion spaces, e.g. valence-arousal in [0, 1]²): a mixture of a few
    clusters clipped to [0, 1]. Higher dimensions: points near a 16-dimensional subspace
    (embeddings have a low intrinsic dimension; i.i.d. Gaussian vectors do not, and no
    index does well on them). Unit length for cosine.
    """
    rng = np.random.default_rng(seed)
    if dim <= 8:
        centres = rng.uniform(0.1, 0.9, size=(12, dim))
        x = centres[rng.integers(0, len(centres), size=n)] + rng.normal(0, 0.12, size=(n, dim))
        x = np.clip(x, 0.0, 1.0)
    else:
        basis = rng.standard_normal((16, dim))
        x = rng.standard_normal((n, 16)) @ basis + 0.1 * rng.standard_normal((n, dim))
    x = x.astype(np.float32)
    if distance == "cosine":
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def payloads(n: int, catalogue_ids: list[int], seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed + 1)
    cats = np.asarray(catalogue_ids)[np.arange(n) % len(catalogue_ids)]
    durations = rng.uniform(20.0, 400.0, size=n)
    out = []
    for i in range(n):
        out.append(
            {
                "track_id": i + 1,
                "catalogue_id": int(cats[i]),
                "duration_s": round(float(durations[i]), 2),
                "tags": [TAGS[i % len(TAGS)], TAGS[(i * 5 + 3) % len(TAGS)]],
                "uri": f"bench://track/{i + 1}",
                "title": f"Track {i + 1}",
            }
        )
    return out


# ---- exact scan ------------------------------------------------------------------------------
class ExactScan:
    """Exact top-k over the same vectors with numpy (the floor an index must beat)."""

    def __init__(self, vectors: np.ndarray, distance: Distance) -> None:
        self.vectors = vectors
        self.distance = distance
        self.sq_norms = (vectors.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)

    def top_k(self, q: np.ndarray, k: int, mask: np.ndarray | None) -> np.ndarray:
        """Row indexes of the ``k`` best rows (best first) among ``mask``."""
        q = q.astype(np.float32)
        if self.distance == "cosine":
            q = q / np.linalg.norm(q)
        dots = self.vectors @ q
        # Lower is better: negated similarity, or squared distance through the dot product.
        cost = self.sq_norms - 2.0 * dots if self.distance == "euclid" else -dots
        if mask is not None:
            cost = np.where(mask, cost, np.inf)
        k = min(k, cost.shape[0])
        part = np.argpartition(cost, k - 1)[:k]
        return part[np.argsort(cost[part], kind="stable")]


# ---- timing ----------------------------------------------------------------------------------
def latencies(fn: Callable[[int], Any], n: int, max_s: float) -> list[float]:
    """Seconds of ``fn(i)`` for i < n, stopping early after ``max_s`` (at least 5 calls)."""
    fn(0)  # warm-up
    out: list[float] = []
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t0)
        if i >= 4 and time.perf_counter() - start > max_s:
            break
    return out


def concurrent_latencies(
    fn: Callable[[int], Any], clients: int, n: int, max_s: float
) -> tuple[list[float], float]:
    """Latencies of ``fn`` called by ``clients`` threads at once, ``n`` calls in all (or
    until ``max_s``), and the requests per second they achieved together."""
    import threading

    fn(0)
    out: list[float] = []
    lock = threading.Lock()
    counter = iter(range(n))
    start = time.perf_counter()

    def client() -> None:
        while time.perf_counter() - start < max_s:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t0 = time.perf_counter()
            fn(i)
            with lock:
                out.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out, len(out) / (time.perf_counter() - start)


def stats_ms(values: list[float]) -> dict[str, Any]:
    ms = np.asarray(values) * 1000.0
    return {
        "n": len(values),
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p90_ms": round(float(np.percentile(ms, 90)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "mean_ms": round(float(ms.mean()), 4),
        "max_ms": round(float(ms.max()), 4),
    }


# ---- stores ----------------------------------------------------------------------------------
def open_store(backend: str, folder: Path) -> Any:
    if backend == "qdrant-edge":
        from storycue.storage.edge import EdgeVectorStore

        return EdgeVectorStore(folder / "qdrant-edge", auto_optimize=False)
    from storycue.storage.qdrant import QdrantVectorStore

    return QdrantVectorStore.local(folder / "qdrant")


def insert(
    store: Any, identity: ModelIdentity, vectors: np.ndarray, meta: list[dict[str, Any]], lo: int
) -> dict[str, float]:
    """Upsert rows ``lo:`` (in chunks) and, for Edge, build the index; seconds of each."""
    t0 = time.perf_counter()
    chunk = 4096
    for start in range(lo, vectors.shape[0], chunk):
        end = min(vectors.shape[0], start + chunk)
        store.upsert(
            identity,
            [
                VectorPoint(id=point_id_for(i + 1), vector=vectors[i], payload=meta[i])
                for i in range(start, end)
            ],
        )
    out = {"upsert_s": round(time.perf_counter() - t0, 3)}
    if hasattr(store, "optimize"):
        t1 = time.perf_counter()
        store.optimize(identity)
        out["index_build_s"] = round(time.perf_counter() - t1, 3)
        out["index"] = store.stats(identity)
    return out


def measure_store(
    store: Any,
    identity: ModelIdentity,
    scan: ExactScan,
    queries: np.ndarray,
    cats: np.ndarray,
    filter_catalogue: int,
    top_k: int,
    max_s: float,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, flt, mask in [
        ("no_filter", None, None),
        (
            "catalogue_filter",
            SearchFilter(catalogue_ids=[filter_catalogue]),
            cats == filter_catalogue,
        ),
    ]:
        found: list[list[int]] = []

        def run_store(
            i: int, flt: SearchFilter | None = flt, found: list[list[int]] = found
        ) -> None:
            hits = store.search(identity, queries[i % len(queries)], top_k, flt)
            if i < len(queries):
                found.append([int(h.payload["track_id"]) - 1 for h in hits])

        def run_scan(i: int, mask: np.ndarray | None = mask) -> None:
            scan.top_k(queries[i % len(queries)], top_k, mask)

        store_lat = latencies(run_store, len(queries), max_s)
        scan_lat = latencies(run_scan, len(queries), max_s)
        found = found[1:]  # the warm-up call appended once
        recall = [
            len(set(got) & set(scan.top_k(queries[i], top_k, mask).tolist())) / top_k
            for i, got in enumerate(found[: len(store_lat)])
        ]
        s_store, s_scan = stats_ms(store_lat), stats_ms(scan_lat)
        out[label] = {
            "store": s_store,
            "exact_numpy_scan": s_scan,
            "speedup_p50": round(s_scan["p50_ms"] / s_store["p50_ms"], 3),
            f"recall_at_{top_k}": round(float(np.mean(recall)), 4) if recall else None,
            "matching_points": int(cats.shape[0] if mask is None else int(mask.sum())),
        }
    return out


def measure_api(
    client: Any,
    encoder_ms: Callable[[str], float],
    filter_name: str,
    n: int,
    max_s: float,
    profile: Path | None = None,
    clients: int = 1,
) -> dict[str, Any]:
    """Latency of ``POST /v1/search``; with ``profile``, a pyinstrument profile of the
    route's work (:func:`storycue.jobs.matching.search`) for catalogue-filtered stories,
    after the timed requests, written there as text."""
    out: dict[str, Any] = {}
    for label, extra in [("no_filter", {}), ("catalogue_filter", {"catalogue": filter_name})]:

        def run(i: int, extra: dict[str, str] = extra) -> None:
            body = {"text": STORIES[i % len(STORIES)], "top_k": 10, **extra}
            r = client.post("/v1/search", json=body)
            if r.status_code != 200:
                raise RuntimeError(f"/v1/search answered {r.status_code}: {r.text[:300]}")
            sheet = r.json()
            if not sheet["segments"] or len(sheet["segments"][0]["tracks"]) != 10:
                raise RuntimeError(f"/v1/search returned an unexpected cue sheet: {sheet}")

        out[label] = stats_ms(latencies(run, n, max_s))
        if clients > 1 and label == "catalogue_filter":
            lat, rps = concurrent_latencies(run, clients, n, max_s)
            out[f"catalogue_filter_{clients}_clients"] = {**stats_ms(lat), "requests_per_s": rps}
        if profile is not None and label == "catalogue_filter":
            from pyinstrument import Profiler

            from storycue.jobs.matching import MatchOptions, search

            # The route's own work (not the HTTP client's thread, which only waits).
            context = client.app.state.context
            options = MatchOptions(top_k=10, catalogue=filter_name)
            profiler = Profiler(interval=0.0002)
            with profiler:
                for i in range(min(n, 200)):
                    search(context, "default", STORIES[i % len(STORIES)], options)
            profile.write_text(profiler.output_text(unicode=True, color=False, show_all=False))
    enc = [encoder_ms(STORIES[i % len(STORIES)]) for i in range(min(n, 30))]
    out["text_encoding_alone"] = stats_ms([e / 1000.0 for e in enc])
    return out


# ---- main ------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="10000,100000", help="catalogue sizes (10000,100000)")
    p.add_argument(
        "--backends", default="qdrant-edge", help="comma-separated among qdrant-edge,qdrant-local"
    )
    p.add_argument("--dim", type=int, default=None, help="vector dimension (the model's)")
    p.add_argument(
        "--distance", default=None, choices=["cosine", "euclid", "dot"], help="(the model's)"
    )
    p.add_argument("--catalogues", type=int, default=10, help="catalogues the tracks spread over")
    p.add_argument("--queries", type=int, default=300, help="timed queries per case (300)")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument(
        "--clients",
        type=int,
        default=8,
        help="also time the filtered API case with this many concurrent clients (8; 1: off)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="also write a pyinstrument profile of the filtered API requests "
        "(<results-dir>/<name>-profile-<size>.txt; needs pyinstrument)",
    )
    p.add_argument(
        "--http",
        action="store_true",
        help="also time POST /v1/search against `storycue serve` in a process of its own "
        "(one uvicorn worker, loopback HTTP) at the largest size",
    )
    p.add_argument("--max-case-s", type=float, default=30.0, help="time cap per case, s (30)")
    p.add_argument(
        "--api",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time POST /v1/search (default: when storycue.api exists and --dim is "
        "the model's)",
    )
    p.add_argument("--model", default=None, help="emotion model (default: shipped va-regression)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default=NAME, help="results file name (search)")
    add_run_arguments(p, quick="smoke run: 1k and 3k tracks, 30 queries")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.queries, args.max_case_s, args.max_wait = "1000,3000", 30, 5.0, 0.0
    return args


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure_http(
    settings_env: dict[str, str],
    encoder_ms: Callable[[str], float],
    filter_name: str,
    n: int,
    max_s: float,
    clients: int,
    log_path: Path,
) -> dict[str, Any]:
    """:func:`measure_api` against ``storycue serve`` (one uvicorn worker) started on
    ``settings_env`` in a process of its own, through an ``httpx`` client over loopback
    (connections kept alive, shared by the client threads). The server's start-up (model
    load, warm-up) is waited for and not timed."""
    import os
    import subprocess

    import httpx

    port = free_port()
    env = {**os.environ, **settings_env, "STORYCUE_SERVICE__AUTH_REQUIRED": "false"}
    cmd = [sys.executable, "-c", "from storycue.cli import app; app()", "serve",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 180
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"storycue serve exited with {proc.returncode}: {log_path}")
                try:
                    if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"storycue serve did not answer in 180 s: {log_path}")
                time.sleep(0.5)
            limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
            with httpx.Client(base_url=url, timeout=60, limits=limits) as client:
                return measure_api(client, encoder_ms, filter_name, n, max_s, clients=clients)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def api_available() -> bool:
    try:
        import storycue.api.app  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    configure_logging(args.log_level)
    sizes = sorted({int(x) for x in args.sizes.split(",") if x.strip()})
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not sizes or min(sizes) < args.catalogues or set(backends) - set(BACKENDS) or not backends:
        raise SystemExit("--sizes must be >= --catalogues; --backends among " + ",".join(BACKENDS))
    load = wait_for_quiet(args.max_load, args.max_wait)
    results_backends: dict[str, Any] = {}
    with scratch_dir() as tmp:
        checkpoint, model_record = resolve_emotion_checkpoint(args.model, Path(tmp))
        from storycue.models.emotion import load_emotion_model

        model = load_emotion_model(checkpoint, device="cpu")
        dim = args.dim or model.identity.dim
        distance: Distance = args.distance or model.distance
        use_api = args.api if args.api is not None else api_available()
        use_api = bool(use_api and dim == model.identity.dim and distance == model.distance)
        vectors = synthetic_vectors(max(sizes), dim, distance, args.seed)
        queries = synthetic_vectors(args.queries, dim, distance, args.seed + 99)
        for backend in backends:
            home = Path(tmp) / backend
            print(f"{backend}: {dim}-d {distance}, sizes {sizes}", file=sys.stderr)
            res: dict[str, Any] = {"sizes": {}}
            client: Any = None
            context: Any = None
            api_model: Any = None
            if use_api:
                from fastapi.testclient import TestClient

                from storycue.api.app import create_app
                from storycue.context import get_context

                settings = Settings(home=home, vector_backend=backend, emotion_model=checkpoint)
                context = get_context(settings)
                client = TestClient(create_app(settings, context=context))
                cat_ids = [
                    context.tenancy.create_catalogue("default", f"bench-{c}")[0].id
                    for c in range(args.catalogues)
                ]
                api_model = context.load_model()
                context.register(api_model)
                identity = api_model.identity
                store = context.vectors
                if hasattr(store, "auto_optimize"):
                    store.auto_optimize = False
            else:
                identity = ModelIdentity(name=f"bench-{dim}d", version="1", dim=dim)
                store = open_store(backend, home)
                store.ensure_collection(identity, distance)
                cat_ids = list(range(1, args.catalogues + 1))

            def encode_ms(text: str, m: Any = api_model) -> float:
                """The bare text path of the API's model on one story, ms."""
                t0 = time.perf_counter()
                m.embed_text([text])
                return 1000.0 * (time.perf_counter() - t0)

            meta = payloads(max(sizes), cat_ids, args.seed)
            cats_all = np.asarray([m["catalogue_id"] for m in meta])
            filter_cat = cat_ids[len(cat_ids) // 2]
            done = 0
            try:
                for size in sizes:
                    ins = insert(store, identity, vectors[:size], meta, done)
                    done = size
                    assert store.count(identity) == size
                    print(f"  {size}: inserted {ins}", file=sys.stderr)
                    scan = ExactScan(vectors[:size], distance)
                    case: dict[str, Any] = {
                        "insert": ins,
                        "search": measure_store(
                            store,
                            identity,
                            scan,
                            queries,
                            cats_all[:size],
                            filter_cat,
                            args.top_k,
                            args.max_case_s,
                        ),
                    }
                    if client is not None:
                        case["api"] = measure_api(
                            client,
                            encode_ms,
                            f"bench-{cat_ids.index(filter_cat)}",
                            args.queries,
                            args.max_case_s,
                            clients=args.clients,
                            profile=(
                                results_dir(args) / f"{args.name}-profile-{size}.txt"
                                if args.profile
                                else None
                            ),
                        )
                    res["sizes"][str(size)] = case
                    print(f"  {size}: {case['search']}", file=sys.stderr)
            finally:
                if client is not None:
                    client.close()
                    from storycue.context import close_contexts
                    from storycue.storage.factory import close_vector_stores

                    close_contexts()
                    close_vector_stores()
                else:
                    store.close()
            if client is not None and args.http:
                # The stores are closed: the gateway process opens them itself.
                largest = str(max(sizes))
                print(f"  {largest}: POST /v1/search through storycue serve", file=sys.stderr)
                res["sizes"][largest]["http"] = measure_http(
                    {
                        "STORYCUE_HOME": str(home),
                        "STORYCUE_VECTOR_BACKEND": backend,
                        "STORYCUE_EMOTION_MODEL": str(checkpoint),
                    },
                    encode_ms,
                    f"bench-{cat_ids.index(filter_cat)}",
                    args.queries,
                    args.max_case_s,
                    args.clients,
                    Path(tmp) / f"serve-{backend}.log",
                )
            results_backends[backend] = res

    results: dict[str, Any] = {
        **run_record("search", "cpu", load),
        "config": {
            "sizes": sizes,
            "backends": backends,
            "dim": dim,
            "distance": distance,
            "catalogues": args.catalogues,
            "queries": args.queries,
            "top_k": args.top_k,
            "max_case_s": args.max_case_s,
            "api": use_api,
            "http": bool(use_api and args.http),
            "quick": args.quick,
            "vectors": "synthetic: clustered in [0,1]^d for d <= 8, else near a 16-d subspace",
            "metadata": "catalogues created and the model registered through the tenancy and "
            "metadata stores; no track rows (search reads the vector payloads only)",
        },
        "model": model_record,
        "backends": results_backends,
        "target_p99_ms": TARGET_P99_MS,
    }
    path = write_results(args.name, results, results_dir(args))
    print_report(results)
    print(f"wrote {path} and SUMMARY.md", file=sys.stderr)
    return results


def print_report(r: dict[str, Any]) -> None:
    for backend, res in r["backends"].items():
        for size, case in res["sizes"].items():
            for label, s in case["search"].items():
                rec = next((v for k, v in s.items() if k.startswith("recall")), None)
                print(
                    f"{backend} {size:>7} {label:<17} store p50 {s['store']['p50_ms']:8.3f} ms "
                    f"p99 {s['store']['p99_ms']:8.3f} ms | scan p50 "
                    f"{s['exact_numpy_scan']['p50_ms']:8.3f} ms | ×{s['speedup_p50']} | "
                    f"recall {rec}"
                )
            for where in ("api", "http"):
                for label, s in (case.get(where) or {}).items():
                    print(
                        f"{backend} {size:>7} {where} {label:<19} p50 {s['p50_ms']:8.2f} ms "
                        f"p99 {s['p99_ms']:8.2f} ms"
                    )


def summary_section(r: dict[str, Any]) -> list[str]:
    cfg = r["config"]
    quick = quick_note(cfg)
    top_k = cfg["top_k"]
    lines = [
        f"## Search: vector store{' and `POST /v1/search`' if cfg.get('api') else ''} "
        f"vs exact numpy scan ({cfg['dim']}-d, {cfg['distance']})",
        "",
        f"Synthetic {cfg['dim']}-d vectors ({cfg['vectors']}) spread over "
        f"{cfg['catalogues']} catalogues; the filter keeps one catalogue (a tenth of the "
        f"tracks). Up to {cfg['queries']} queries per case, top {top_k}; latencies in ms; "
        f"speed-up = scan p50 / store p50; recall@{top_k} of the store against the exact "
        f"scan.{quick}",
        "",
        f"| backend | tracks | filter | store p50 | store p99 | scan p50 | scan p99 | "
        f"speed-up | recall@{top_k} |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    api_rows: list[str] = []
    inserts: list[str] = []
    for backend, res in r["backends"].items():
        for size, case in res["sizes"].items():
            for label, c in case["search"].items():
                st, sc = c["store"], c["exact_numpy_scan"]
                lines.append(
                    f"| {backend} | {int(size):,} | {label.replace('_', ' ')} | "
                    f"{fmt(st['p50_ms'], 3)} | {fmt(st['p99_ms'], 3)} | "
                    f"{fmt(sc['p50_ms'], 3)} | {fmt(sc['p99_ms'], 3)} | "
                    f"×{fmt(c['speedup_p50'])} | {fmt(c.get(f'recall_at_{top_k}'), 3)} |"
                )
            ins = case["insert"]
            build = f", index build {ins['index_build_s']:.1f} s" if "index_build_s" in ins else ""
            inserts.append(f"{backend} {int(size):,}: upsert {ins['upsert_s']:.1f} s{build}")
            for where, how in (("api", "in process"), ("http", "`storycue serve`, HTTP")):
                for label, a in (case.get(where) or {}).items():
                    rps = a.get("requests_per_s")
                    api_rows.append(
                        f"| {backend} | {int(size):,} | {how} | {label.replace('_', ' ')} | "
                        f"{fmt(a['p50_ms'])} | {fmt(a['p90_ms'])} | {fmt(a['p99_ms'])} | "
                        f"{fmt(rps, 0)} |"
                    )
    if api_rows:
        lines += [
            "",
            "`POST /v1/search` (one-sentence stories, top 10; the latency includes segmenting "
            "and encoding the story, whose encoder forward alone is the last row of each "
            "group), in process through the `TestClient` and, with `--http`, against a "
            "gateway process of its own (one uvicorn worker) over loopback HTTP:",
            "",
            "| backend | tracks | gateway | request | p50 | p90 | p99 | requests/s |",
            "|---|---:|---|---|---:|---:|---:|---:|",
            *api_rows,
        ]
    lines += [
        "",
        f"Target: p99 ≤ {r['target_p99_ms']:g} ms at 100k tracks with a catalogue filter "
        "(embedded mode). Inserts (points added at this size, excluded above): "
        + "; ".join(inserts)
        + ".",
        *footer(r),
    ]
    return lines


if __name__ == "__main__":
    main()
