"""Downtime-free model switches of a catalogue, and the catalogue's vector alias.

``PUT /v1/catalogues/{c}/model`` records the new model as *pending* beside the active one
and starts a re-embed job (an ingest job with ``reembed=True``). Searches keep using the
active model (PostgreSQL/SQLite is the source of truth) until that job has embedded every
track under the new model; then the pending model is promoted with a compare-and-set on
the job id, and the catalogue's vector alias (:func:`catalogue_alias`) is switched to the
new collection in one alias operation. A re-embed that fails or is cancelled drops the
pending model; the active one never changes.

:func:`settle_switch` resolves a switch whose job finished without the worker settling
it (a queued job cancelled through the API, a worker lost between finishing and
promoting): the gateway calls it before reading or changing a catalogue's model.
"""

from __future__ import annotations

import contextlib

from storycue.context import ProcessContext
from storycue.identity import ModelIdentity
from storycue.log import get_logger
from storycue.storage.jobs import InvalidTransitionError
from storycue.storage.records import ModelRecord
from storycue.storage.tenancy import ModelSwitch

log = get_logger(__name__)

#: Prefix of the per-catalogue vector alias.
ALIAS_PREFIX = "storycue-cat-"


def catalogue_alias(catalogue_id: int) -> str:
    """The vector-store alias of a catalogue: ``storycue-cat-<catalogue id>``."""
    return f"{ALIAS_PREFIX}{int(catalogue_id)}"


def sync_alias(rt: ProcessContext, catalogue_id: int, identity: ModelIdentity) -> None:
    """Point the catalogue's alias at ``identity``'s collection (when it does not already).

    The alias is for external readers of Qdrant; storycue never reads through it, so a
    vector-store error here is logged, not raised (the next promotion or ingest job of the
    catalogue sets it again).
    """
    alias = catalogue_alias(catalogue_id)
    try:
        if rt.vectors.resolve_alias(alias) != identity:
            rt.vectors.set_alias(alias, identity)
    except Exception as exc:  # the database already holds the truth; never fail for this
        log.warning("catalogue alias not updated", alias=alias, model=identity.key, error=str(exc))


def drop_alias(rt: ProcessContext, catalogue_id: int) -> None:
    """Delete the catalogue's alias (its collections stay); errors are logged."""
    alias = catalogue_alias(catalogue_id)
    try:
        rt.vectors.delete_alias(alias)
    except Exception as exc:  # see sync_alias
        log.warning("catalogue alias not deleted", alias=alias, error=str(exc))


def promote(rt: ProcessContext, tenant: str, catalogue_id: int, job_id: str) -> ModelRecord | None:
    """Promote the pending model if ``job_id`` is still the switch's job, then switch the
    alias; the newly active model, or ``None`` when this job no longer owns the switch."""
    rec = rt.tenancy.promote_pending(tenant, catalogue_id, job_id)
    if rec is not None:
        rt.forget_catalogue_model(tenant, catalogue_id)
        sync_alias(rt, catalogue_id, rec.identity)
    return rec


def abandon(rt: ProcessContext, tenant: str, job_id: str | None) -> None:
    """Cancel a replaced switch's re-embed job (a finished one is left alone)."""
    if job_id is None:
        return
    with contextlib.suppress(InvalidTransitionError):
        rt.jobs.request_cancel(tenant, job_id)


def settle_switch(rt: ProcessContext, tenant: str, catalogue_id: int) -> ModelSwitch:
    """The catalogue's switch after resolving one whose job has finished: promoted when
    the job succeeded, dropped when it failed, was cancelled or is gone."""
    sw = rt.tenancy.model_switch(tenant, catalogue_id)
    if sw.job_id is None:
        return sw
    job = rt.jobs.get(tenant, sw.job_id)
    if job is None or job.state in ("failed", "cancelled"):
        rt.tenancy.clear_pending(tenant, catalogue_id, sw.job_id)
    elif job.state == "succeeded":
        promote(rt, tenant, catalogue_id, sw.job_id)
    else:
        return sw
    return rt.tenancy.model_switch(tenant, catalogue_id)
