"""The names the Celery app, its tasks and their senders share: queues, tasks, routes.

One queue per worker kind::

    text   bulk match chunks (text encoder + vector search)      -> text-worker
    audio  ingest jobs and single-track ingest (musicnn)          -> audio-worker
    train  evaluation and training jobs                           -> trainer
"""

from __future__ import annotations

from collections.abc import Mapping

QUEUE_TEXT = "text"
QUEUE_AUDIO = "audio"
QUEUE_TRAIN = "train"
#: Every work queue, one per worker kind.
QUEUES: tuple[str, ...] = (QUEUE_TEXT, QUEUE_AUDIO, QUEUE_TRAIN)
#: Where task messages go after their last failed try.
QUEUE_DEAD_LETTER = "storycue.dead_letter"

TASK_MATCH_CHUNK = "storycue.match_chunk"
TASK_INGEST_JOB = "storycue.ingest_job"
TASK_INGEST_TRACK = "storycue.ingest_track"
TASK_EVALUATE_JOB = "storycue.evaluate_job"
TASK_TRAIN_JOB = "storycue.train_job"
TASK_PING = "storycue.ping"

#: Which queue each task goes to.
TASK_ROUTES: Mapping[str, str] = {
    TASK_MATCH_CHUNK: QUEUE_TEXT,
    TASK_INGEST_JOB: QUEUE_AUDIO,
    TASK_INGEST_TRACK: QUEUE_AUDIO,
    TASK_EVALUATE_JOB: QUEUE_TRAIN,
    TASK_TRAIN_JOB: QUEUE_TRAIN,
}
