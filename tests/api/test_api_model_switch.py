"""Downtime-free model switches through the API (embedded mode: SQLite, Qdrant Edge).

``PUT /v1/catalogues/{c}/model`` records the new model as pending and starts a re-embed
job; searches keep using the old model until that job succeeds. To see the in-between
state deterministically, this module's gateway dispatches jobs to :class:`HeldDispatcher`,
which keeps them queued until the test runs them (with the real job functions, in the
test's thread) instead of racing a worker thread.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apigw import Gateway, make_settings
from fastapi.testclient import TestClient

from storycue.api import create_app
from storycue.audio.synthetic import synthesise_clips
from storycue.context import close_contexts, get_context
from storycue.identity import ModelIdentity
from storycue.jobs.dispatch import JobDispatcher
from storycue.jobs.switch import catalogue_alias
from storycue.jobs.tasks import run_job
from storycue.models.checkpoints import checkpoint_info, resolve_checkpoint
from storycue.storage.factory import close_vector_stores
from storycue.storage.jobs import Job
from storycue.storage.vectors import SearchFilter

#: The default: the newest shipped ``va-regression``.
OLD: ModelIdentity = checkpoint_info(resolve_checkpoint("va-regression")).identity
# Another text encoder (the pretrained one) and backbone: a switch changes both.
NEW = ModelIdentity(name="va-regression", version="1.0.0", dim=2)
STORY = (
    "The sun rose over the meadow and the children ran laughing to the river.\n\n"
    "Then the storm came, thunder cracked and everyone screamed in terror."
)


class HeldDispatcher:
    """A :class:`JobDispatcher` that holds dispatched jobs until :meth:`run_all`."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.held: list[str] = []

    def dispatch(self, job: Job) -> None:
        self.held.append(job.id)

    def cancel(self, job_id: str) -> None:
        pass  # the database records the cancel; run_job then skips the job

    def run_all(self, rt: Any, tenant: str) -> None:
        held, self.held = self.held, []
        for job_id in held:
            run_job(rt.jobs.require(tenant, job_id), self.settings)


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, text_encoder: Any, base_text_encoder: Any
) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("switch")
    music = root / "music"
    clips = synthesise_clips(music, seconds=3.0)
    settings = make_settings(root, music)
    rt = get_context(settings)
    rt.load_model().use_text_encoder(text_encoder)
    rt.load_model_version(NEW.name, NEW.version).use_text_encoder(base_text_encoder)
    dispatcher = HeldDispatcher(settings)
    assert isinstance(dispatcher, JobDispatcher)
    client = TestClient(create_app(settings, dispatcher))
    keys = {"t": rt.keys.create("t", "tests")[1]}
    gateway = Gateway(client, settings, rt, dispatcher, keys, music, root)  # type: ignore[arg-type]
    gateway.clips = clips  # type: ignore[attr-defined]
    try:
        yield gateway
    finally:
        client.close()
        close_contexts()
        close_vector_stores()


def held(gw: Gateway) -> HeldDispatcher:
    d = gw.dispatcher
    assert isinstance(d, HeldDispatcher)
    return d


def run_held(gw: Gateway) -> None:
    held(gw).run_all(gw.context, "t")


def ingest(gw: Gateway, catalogue: str, paths: list[Path]) -> None:
    """A catalogue with ``paths`` ingested under its active model."""
    h = gw.h("t")
    c = gw.client
    assert c.post("/v1/catalogues", json={"name": catalogue}, headers=h).status_code == 201
    tracks = [{"uri": str(p), "title": p.stem} for p in paths]
    r = c.post(f"/v1/catalogues/{catalogue}/tracks", json={"tracks": tracks}, headers=h)
    assert r.status_code == 201, r.text
    r = c.post(f"/v1/catalogues/{catalogue}/ingest", headers=h)
    assert r.status_code == 202, r.text
    run_held(gw)
    assert c.get(f"/v1/jobs/{r.json()['id']}", headers=h).json()["state"] == "succeeded"


def ref(ident: ModelIdentity) -> dict[str, Any]:
    return {"name": ident.name, "version": ident.version, "dim": ident.dim}


def catalogue(gw: Gateway, name: str) -> dict[str, Any]:
    r = gw.client.get(f"/v1/catalogues/{name}", headers=gw.h("t"))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def search(gw: Gateway, name: str) -> dict[str, Any]:
    r = gw.client.post(
        "/v1/search", json={"text": STORY, "top_k": 3, "catalogue": name}, headers=gw.h("t")
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert all(seg["tracks"] for seg in body["segments"])
    return body


def put_model(gw: Gateway, name: str, ident: ModelIdentity) -> dict[str, Any]:
    r = gw.client.put(
        f"/v1/catalogues/{name}/model",
        json={"name": ident.name, "version": ident.version},
        headers=gw.h("t"),
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def alias_of(gw: Gateway, name: str) -> ModelIdentity | None:
    cat = gw.context.tenancy.catalogue("t", name)
    return gw.context.vectors.resolve_alias(catalogue_alias(cat.id))


def test_searches_use_the_old_model_until_the_reembed_job_succeeds(gw: Gateway) -> None:
    clips: list[Path] = gw.clips  # type: ignore[attr-defined]
    ingest(gw, "switch", clips[:3])
    before = catalogue(gw, "switch")
    assert before["model"] == ref(OLD) and before["model_is_default"]
    assert before["pending_model"] is None and before["reembed_job_id"] is None
    assert search(gw, "switch")["model"]["version"] == OLD.version
    assert alias_of(gw, "switch") == OLD  # set by the first ingest job

    body = put_model(gw, "switch", NEW)
    job = body["reembed_job"]
    assert job is not None and job["state"] == "queued" and job["kind"] == "ingest"
    assert job["model"]["version"] == NEW.version
    assert job["progress"]["total"] == 3
    for cat in (body["catalogue"], catalogue(gw, "switch")):
        assert cat["model"] == ref(OLD)  # still serving the old model
        assert cat["pending_model"] == ref(NEW)
        assert cat["reembed_job_id"] == job["id"]
    old_sheet = search(gw, "switch")
    assert old_sheet["model"]["version"] == OLD.version
    assert alias_of(gw, "switch") == OLD

    again = put_model(gw, "switch", NEW)  # the pending model again: the same switch
    assert again["reembed_job"]["id"] == job["id"]
    assert held(gw).held == [job["id"]]

    run_held(gw)
    done = gw.client.get(f"/v1/jobs/{job['id']}", headers=gw.h("t")).json()
    assert done["state"] == "succeeded", done
    after = catalogue(gw, "switch")
    assert after["model"] == ref(NEW) and not after["model_is_default"]
    assert after["pending_model"] is None and after["reembed_job_id"] is None
    new_sheet = search(gw, "switch")
    assert new_sheet["model"]["version"] == NEW.version
    titles = {t["title"] for s in new_sheet["segments"] for t in s["tracks"]}
    assert titles <= {p.stem for p in clips[:3]}
    assert alias_of(gw, "switch") == NEW
    cat_id = gw.context.tenancy.catalogue("t", "switch").id
    assert gw.context.vectors.count(NEW, SearchFilter(catalogue_ids=[cat_id])) == 3

    noop = put_model(gw, "switch", NEW)  # the active model: nothing to do
    assert noop["reembed_job"] is None and noop["catalogue"]["model"] == ref(NEW)
    assert held(gw).held == []

    r = gw.client.delete("/v1/catalogues/switch", headers=gw.h("t"))
    assert r.status_code == 204
    assert gw.context.vectors.resolve_alias(catalogue_alias(cat_id)) is None


def test_a_failed_reembed_keeps_the_old_model(gw: Gateway) -> None:
    clips: list[Path] = gw.clips  # type: ignore[attr-defined]
    copy = gw.music / "fragile.wav"
    shutil.copy(clips[0], copy)
    ingest(gw, "fragile", [copy, clips[1]])
    body = put_model(gw, "fragile", NEW)
    job = body["reembed_job"]
    assert job is not None and body["catalogue"]["pending_model"] == ref(NEW)
    copy.unlink()  # one track can no longer be embedded

    run_held(gw)
    done = gw.client.get(f"/v1/jobs/{job['id']}", headers=gw.h("t")).json()
    assert done["state"] == "failed"
    assert done["error"]["code"] == "reembed_incomplete"
    after = catalogue(gw, "fragile")
    assert after["model"] == ref(OLD)
    assert after["pending_model"] is None and after["reembed_job_id"] is None
    assert search(gw, "fragile")["model"]["version"] == OLD.version
    assert alias_of(gw, "fragile") == OLD


def test_a_cancelled_or_dropped_switch_keeps_the_old_model(gw: Gateway) -> None:
    clips: list[Path] = gw.clips  # type: ignore[attr-defined]
    ingest(gw, "cancel", clips[1:3])
    h = gw.h("t")
    first = put_model(gw, "cancel", NEW)["reembed_job"]
    r = gw.client.post(f"/v1/jobs/{first['id']}/cancel", headers=h)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    cat = catalogue(gw, "cancel")
    assert cat["model"] == ref(OLD) and cat["pending_model"] is None

    # PUT of the active model while a switch is pending drops the switch
    second = put_model(gw, "cancel", NEW)["reembed_job"]
    assert second["id"] != first["id"]
    back = put_model(gw, "cancel", OLD)
    assert back["reembed_job"] is None
    assert back["catalogue"]["model"] == ref(OLD) and back["catalogue"]["pending_model"] is None
    assert gw.client.get(f"/v1/jobs/{second['id']}", headers=h).json()["state"] == "cancelled"

    run_held(gw)  # the cancelled jobs do nothing
    cat = catalogue(gw, "cancel")
    assert cat["model"] == ref(OLD) and cat["pending_model"] is None
    assert search(gw, "cancel")["model"]["version"] == OLD.version
    assert alias_of(gw, "cancel") == OLD


def test_a_replaced_switch_job_does_not_promote(gw: Gateway) -> None:
    """A re-embed job that no longer owns the switch (replaced) cancels itself."""
    clips: list[Path] = gw.clips  # type: ignore[attr-defined]
    ingest(gw, "replace", clips[:2])
    rt = gw.context
    cat_id = rt.tenancy.catalogue("t", "replace").id
    first = put_model(gw, "replace", NEW)["reembed_job"]
    old_rec = rt.tenancy.model_switch("t", cat_id).active
    assert old_rec is not None
    # the switch is replaced behind the first job's back (what a concurrent PUT does)
    second = rt.jobs.create(
        "t", "ingest", {"catalogue": "replace", "reembed": True}, total=0, catalogue_id=cat_id
    )
    pending = rt.tenancy.model_switch("t", cat_id).pending
    assert pending is not None
    replaced = rt.tenancy.begin_switch(
        "t", cat_id, active_model_id=old_rec.id, pending_model_id=pending.id, job_id=second.id
    )
    assert replaced == first["id"]
    run_held(gw)  # runs the first job only (the second was never dispatched)
    job = gw.client.get(f"/v1/jobs/{first['id']}", headers=gw.h("t")).json()
    assert job["state"] == "cancelled"
    sw = rt.tenancy.model_switch("t", cat_id)
    assert sw.active == old_rec and sw.job_id == second.id
    run_job(rt.jobs.require("t", second.id), gw.settings)
    sw = rt.tenancy.model_switch("t", cat_id)
    assert sw.active is not None and sw.active.identity == NEW and sw.pending is None
    assert alias_of(gw, "replace") == NEW


def test_searches_cache_the_catalogue_model_and_every_change_here_invalidates_it(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Searches reuse the resolved model; with a TTL far longer than the test, a promotion,
    a ``PUT .../model`` or a deletion in this process must still be seen at once."""
    monkeypatch.setattr("storycue.context.CATALOGUE_MODEL_TTL_S", 3600.0)
    clips: list[Path] = gw.clips  # type: ignore[attr-defined]
    rt = gw.context
    ingest(gw, "cached", clips[:2])
    cat_id = rt.tenancy.catalogue("t", "cached").id
    assert search(gw, "cached")["model"]["version"] == OLD.version
    # a change the process is not told about (another process's) is seen after the TTL
    new_id = rt.register(rt.load_model_version(NEW.name, NEW.version)).id
    old_id = rt.register(rt.load_model()).id
    rt.tenancy.set_active_model("t", cat_id, new_id)
    assert search(gw, "cached")["model"]["version"] == OLD.version  # cached
    rt.forget_catalogue_model("t", cat_id)
    rt.tenancy.set_active_model("t", cat_id, old_id)
    assert search(gw, "cached")["model"]["version"] == OLD.version
    # switch promotion (the re-embed job, run in this process)
    job = put_model(gw, "cached", NEW)["reembed_job"]
    assert job is not None
    assert search(gw, "cached")["model"]["version"] == OLD.version
    run_held(gw)
    assert search(gw, "cached")["model"]["version"] == NEW.version
    # PUT of a model every track already has: active at once
    assert put_model(gw, "cached", OLD)["reembed_job"] is None
    assert search(gw, "cached")["model"]["version"] == OLD.version
    assert put_model(gw, "cached", NEW)["reembed_job"] is None
    assert search(gw, "cached")["model"]["version"] == NEW.version
    # deletion
    assert gw.client.delete("/v1/catalogues/cached", headers=gw.h("t")).status_code == 204
    assert ("t", cat_id) not in rt._model_cache
    r = gw.client.post(
        "/v1/search", json={"text": STORY, "top_k": 3, "catalogue": "cached"}, headers=gw.h("t")
    )
    assert r.status_code == 404
