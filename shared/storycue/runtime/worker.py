"""Start a Celery worker of one kind: ``python -m storycue.runtime.worker text|audio|train``.

Every setting comes from the environment (``STORYCUE_*``). The worker consumes its kind's
queue with a thread pool (``--concurrency`` tasks at once; their encoder calls share
micro-batches, :mod:`storycue.models.batching`), on the device of ``STORYCUE_DEVICE``.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Sequence

from storycue.config import Settings, get_settings
from storycue.log import configure_logging, get_logger
from storycue.runtime.celery_app import create_celery_app
from storycue.runtime.names import QUEUE_AUDIO, QUEUE_TEXT, QUEUES

log = get_logger(__name__)


def warm_up(settings: Settings, queues: Sequence[str]) -> None:
    """Load the default model, put micro-batchers in front of the encoders it uses and run
    each encoder once, so that the first task does not pay for loading and kernel set-up."""
    from storycue.context import get_context
    from storycue.models.batching import install_batching

    text, audio = QUEUE_TEXT in queues, QUEUE_AUDIO in queues
    if not (text or audio):
        return
    model = get_context(settings).load_model()
    install_batching(model, settings, text=text, audio=audio)
    model.warm_up(text=text, audio=audio)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="storycue-worker", description=__doc__)
    parser.add_argument("queues", nargs="+", choices=QUEUES, help="queue(s) to consume")
    parser.add_argument("--concurrency", type=int, default=2, help="tasks run at once")
    parser.add_argument("--name", default=None, help="worker node name")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from storycue.metrics import start_metrics_server_if_enabled

    start_metrics_server_if_enabled(settings.metrics_port)  # probes and Prometheus scrape it
    warm_up(settings, args.queues)
    app = create_celery_app(settings)
    name = args.name or f"{'+'.join(args.queues)}@{socket.gethostname()}-{os.getpid()}"
    log.info("worker_starting", queues=args.queues, concurrency=args.concurrency, name=name)
    app.worker_main(
        [
            "worker",
            "--queues",
            ",".join(args.queues),
            "--pool",
            "threads",
            "--concurrency",
            str(args.concurrency),
            "--hostname",
            name,
            "--loglevel",
            settings.log_level,
            "--without-gossip",
            "--without-mingle",
        ]
    )


if __name__ == "__main__":
    main()
