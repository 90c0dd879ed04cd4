"""A stand-in for a Qdrant server, for tests only: Qdrant's REST API over local mode.

There is no Qdrant server binary on the test machines, and qdrant-client's embedded local
mode lets only one process open a folder. Multi-process tests (gateway, workers, Kafka
consumer as separate OS processes) therefore run this small server: it alone owns a
local-mode folder and answers the subset of Qdrant's REST API that qdrant-client's remote
(HTTP) client sends for storycue's calls, in Qdrant's ``{"result", "status", "time"}``
envelope, with request and response bodies parsed and written by qdrant-client's own
models (:mod:`qdrant_client.http.models`). Every storycue process then runs unchanged on the
production server path, with ``STORYCUE_QDRANT_URL`` pointing here.

It is not a Qdrant server: one process, calls served one at a time, exact (brute-force)
search, no payload indexes, no snapshots, clusters or API keys. Never deploy it.

Routes: ``GET /`` (version), ``/healthz``, ``/readyz``, ``/livez``; collections list, get,
exists, create, update (metadata), delete; aliases (change, list, per collection); payload
indexes (create, accepted and ignored as local mode does); points upsert, delete, retrieve,
count, scroll, query (``/points/query``, which also serves qdrant-client's ``search``) and
batch query (``/points/query/batch``, qdrant-client's ``query_batch_points``).

Run: ``python tests/support/qdrant_rest.py --path DIR --port PORT``, or
:class:`QdrantRestServer` from a test (a subprocess; a context manager).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from qdrant_client import QdrantClient
from qdrant_client.http import models as rm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

#: What ``GET /`` answers as the title (qdrant-client reads only the version).
TITLE = "qdrant - vector search engine (storycue test stand-in over qdrant-client local mode)"

_POINTS = TypeAdapter(rm.PointInsertOperations)
_SELECTOR = TypeAdapter(rm.PointsSelector)

M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    """An error answer: HTTP status and Qdrant's error text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _ok(result: Any, started: float) -> JSONResponse:
    return JSONResponse(
        {"result": _jsonable(result), "status": "ok", "time": time.perf_counter() - started}
    )


def _error(status: int, message: str, started: float) -> JSONResponse:
    return JSONResponse(
        {"status": {"error": message}, "time": time.perf_counter() - started}, status_code=status
    )


def _from_local(exc: Exception) -> ApiError:
    """Qdrant's status for an error of the local client (which raises ValueError)."""
    text = str(exc)
    low = text.lower()
    if "not found" in low or "does not exist" in low or "doesn't exist" in low:
        return ApiError(404, f"Not found: {text}")
    if "already exists" in low:
        return ApiError(409, f"Wrong input: {text}")
    return ApiError(400, f"Wrong input: {text}")


async def _body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"Format error in JSON body: {exc}") from exc


def _parse(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, f"Format error in JSON body: {exc}") from exc


def _parse_adapter(adapter: TypeAdapter[Any], data: Any) -> Any:
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise ApiError(400, f"Format error in JSON body: {exc}") from exc


class LocalQdrantApi:
    """The REST handlers over one local-mode client (calls run one at a time on the
    server's event loop, so the client is never used concurrently)."""

    def __init__(self, client: QdrantClient) -> None:
        self.client = client

    # ---- plumbing ----------------------------------------------------------------------
    def _collection(self, request: Request) -> str:
        name = str(request.path_params["name"])
        if not self.client.collection_exists(name):
            raise ApiError(404, f"Not found: Collection `{name}` doesn't exist!")
        return name

    def routes(self) -> list[Route]:
        def route(path: str, handler: Callable[[Request], Awaitable[Any]], method: str) -> Route:
            async def endpoint(request: Request) -> Response:
                started = time.perf_counter()
                try:
                    result = await handler(request)
                except ApiError as exc:
                    return _error(exc.status, exc.message, started)
                except (ValueError, KeyError) as exc:
                    err = _from_local(exc)
                    return _error(err.status, err.message, started)
                except Exception as exc:  # a bug of the stand-in: say so, keep serving
                    message = f"Service internal error: {type(exc).__name__}: {exc}"
                    return _error(500, message, started)
                return _ok(result, started)

            return Route(path, endpoint, methods=[method])

        return [
            Route("/", self.root, methods=["GET"]),
            Route("/healthz", self.health, methods=["GET"]),
            Route("/readyz", self.health, methods=["GET"]),
            Route("/livez", self.health, methods=["GET"]),
            route("/collections", self.list_collections, "GET"),
            route("/aliases", self.list_aliases, "GET"),
            route("/collections/aliases", self.change_aliases, "POST"),
            route("/collections/{name}", self.get_collection, "GET"),
            route("/collections/{name}", self.create_collection, "PUT"),
            route("/collections/{name}", self.update_collection, "PATCH"),
            route("/collections/{name}", self.delete_collection, "DELETE"),
            route("/collections/{name}/exists", self.collection_exists, "GET"),
            route("/collections/{name}/aliases", self.collection_aliases, "GET"),
            route("/collections/{name}/index", self.create_index, "PUT"),
            route("/collections/{name}/points", self.upsert, "PUT"),
            route("/collections/{name}/points", self.retrieve, "POST"),
            route("/collections/{name}/points/delete", self.delete_points, "POST"),
            route("/collections/{name}/points/count", self.count, "POST"),
            route("/collections/{name}/points/scroll", self.scroll, "POST"),
            route("/collections/{name}/points/query", self.query, "POST"),
            route("/collections/{name}/points/query/batch", self.query_batch, "POST"),
        ]

    # ---- service -----------------------------------------------------------------------
    async def root(self, request: Request) -> Response:
        version = importlib.metadata.version("qdrant-client")
        return JSONResponse({"title": TITLE, "version": version, "commit": None})

    async def health(self, request: Request) -> Response:
        return Response("healthz check passed", media_type="text/plain")

    # ---- collections -------------------------------------------------------------------
    async def list_collections(self, request: Request) -> Any:
        return self.client.get_collections()

    async def get_collection(self, request: Request) -> Any:
        return self.client.get_collection(self._collection(request))

    async def collection_exists(self, request: Request) -> Any:
        name = str(request.path_params["name"])
        return rm.CollectionExistence(exists=self.client.collection_exists(name))

    async def create_collection(self, request: Request) -> Any:
        name = str(request.path_params["name"])
        body = _parse(rm.CreateCollection, await _body(request))
        if self.client.collection_exists(name):
            raise ApiError(409, f"Wrong input: Collection `{name}` already exists!")
        return self.client.create_collection(
            name,
            vectors_config=body.vectors,
            sparse_vectors_config=body.sparse_vectors,
            metadata=body.metadata,
        )

    async def update_collection(self, request: Request) -> Any:
        name = self._collection(request)
        body = _parse(rm.UpdateCollection, await _body(request))
        return self.client.update_collection(
            name,
            vectors_config=body.vectors,
            sparse_vectors_config=body.sparse_vectors,
            metadata=body.metadata,
        )

    async def delete_collection(self, request: Request) -> Any:
        return self.client.delete_collection(str(request.path_params["name"]))

    # ---- aliases -----------------------------------------------------------------------
    async def change_aliases(self, request: Request) -> Any:
        body = _parse(rm.ChangeAliasesOperation, await _body(request))
        return self.client.update_collection_aliases(change_aliases_operations=body.actions)

    async def list_aliases(self, request: Request) -> Any:
        return self.client.get_aliases()

    async def collection_aliases(self, request: Request) -> Any:
        return self.client.get_collection_aliases(self._collection(request))

    # ---- payload indexes ---------------------------------------------------------------
    async def create_index(self, request: Request) -> Any:
        name = self._collection(request)
        body = _parse(rm.CreateFieldIndex, await _body(request))
        schema = body.field_schema
        if isinstance(schema, rm.PayloadSchemaType) or schema is None:
            with warnings.catch_warnings():  # "payload indexes have no effect in local mode"
                warnings.simplefilter("ignore", UserWarning)
                return self.client.create_payload_index(
                    name, field_name=body.field_name, field_schema=schema
                )
        # Parametrised index schemas only matter to a server's query planner.
        return rm.UpdateResult(operation_id=0, status=rm.UpdateStatus.COMPLETED)

    # ---- points ------------------------------------------------------------------------
    async def upsert(self, request: Request) -> Any:
        name = self._collection(request)
        body = _parse_adapter(_POINTS, await _body(request))
        if isinstance(body, rm.PointsBatch):
            return self.client.upsert(name, points=body.batch, update_filter=body.update_filter)
        return self.client.upsert(name, points=body.points, update_filter=body.update_filter)

    async def retrieve(self, request: Request) -> Any:
        name = self._collection(request)
        body = _parse(rm.PointRequest, await _body(request))
        return self.client.retrieve(
            name,
            ids=body.ids,
            with_payload=True if body.with_payload is None else body.with_payload,
            with_vectors=False if body.with_vector is None else body.with_vector,
        )

    async def delete_points(self, request: Request) -> Any:
        name = self._collection(request)
        selector = _parse_adapter(_SELECTOR, await _body(request))
        return self.client.delete(name, points_selector=selector)

    async def count(self, request: Request) -> Any:
        name = self._collection(request)
        body = _parse(rm.CountRequest, await _body(request))
        return self.client.count(name, count_filter=body.filter, exact=True)

    async def scroll(self, request: Request) -> Any:
        name = self._collection(request)
        body = _parse(rm.ScrollRequest, await _body(request))
        points, next_offset = self.client.scroll(
            name,
            scroll_filter=body.filter,
            limit=body.limit or 10,
            offset=body.offset,
            order_by=body.order_by,
            with_payload=True if body.with_payload is None else body.with_payload,
            with_vectors=False if body.with_vector is None else body.with_vector,
        )
        return rm.ScrollResult(points=points, next_page_offset=next_offset)

    async def query(self, request: Request) -> Any:
        name = self._collection(request)
        body = _parse(rm.QueryRequest, await _body(request))
        return self.client.query_points(
            name,
            query=body.query,
            using=body.using,
            prefetch=body.prefetch,
            query_filter=body.filter,
            search_params=body.params,
            limit=body.limit or 10,
            offset=body.offset,
            with_payload=True if body.with_payload is None else body.with_payload,
            with_vectors=False if body.with_vector is None else body.with_vector,
            score_threshold=body.score_threshold,
            lookup_from=body.lookup_from,
        )

    async def query_batch(self, request: Request) -> Any:
        name = self._collection(request)
        body = _parse(rm.QueryRequestBatch, await _body(request))
        return self.client.query_batch_points(name, requests=body.searches)


def create_app(path: Path) -> Starlette:
    """The stand-in server over the local-mode folder ``path`` (created when missing)."""
    path.mkdir(parents=True, exist_ok=True)
    client = QdrantClient(path=str(path))
    api = LocalQdrantApi(client)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        client.close()

    app = Starlette(routes=api.routes(), lifespan=lifespan)
    app.state.client = client
    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class QdrantRestServer:
    """The stand-in run as a subprocess on ``127.0.0.1:port`` over ``path``.

    ``env`` is the subprocess's environment (default: this process's); ``log_path``
    receives its output.
    """

    def __init__(
        self,
        path: Path,
        *,
        port: int | None = None,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.path = path
        self.port = port or free_port()
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The command line that runs this server (for a caller's own process supervisor)."""
        return [sys.executable, __file__, "--path", str(self.path), "--port", str(self.port)]

    def start(self, timeout_s: float = 60.0) -> QdrantRestServer:
        out = self.log_path.open("ab") if self.log_path is not None else subprocess.DEVNULL
        env = dict(self.env if self.env is not None else os.environ)
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("MKL_NUM_THREADS", "1")
        try:
            self.proc = subprocess.Popen(
                self.command(),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        finally:
            if not isinstance(out, int):
                out.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the Qdrant REST stand-in exited with status {self.proc.returncode}"
                    + (f" (log: {self.log_path})" if self.log_path else "")
                )
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the Qdrant REST stand-in did not answer in {timeout_s} s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> QdrantRestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, required=True, help="local-mode folder to own")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6333)
    args = parser.parse_args(argv)
    uvicorn.run(create_app(args.path), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
