"""Redis redelivery of a dead worker's task, with the transport options storycue sets.

kombu's Redis transport redelivers an unacknowledged message once it is older than the
visibility timeout, in a sweep guarded by a Redis lock. A worker killed inside that sweep
leaves the lock behind until it expires; with kombu's default (300 s) no worker could
redeliver anything for five minutes. This runs the real sweep against the real Redis with
a lock left by a "dead" worker.
"""

from __future__ import annotations

import time

import pytest
from kombu import Connection, Exchange, Queue

from storycue.config import QueueSettings, Settings
from storycue.runtime.celery_app import create_celery_app

QUEUE = "storycue-redelivery-probe"


@pytest.mark.parametrize("broker_url", ["redis"], indirect=True)
def test_a_lock_left_by_a_killed_worker_delays_redelivery_only_briefly(broker_url: str) -> None:
    url = broker_url.rsplit("/", 1)[0] + "/13"  # a database of its own: the lock is global
    settings = Settings(
        queue=QueueSettings(execution="celery", broker_url=url, visibility_timeout_s=2)
    )
    app = create_celery_app(settings)
    opts = dict(app.conf.broker_transport_options)
    lock_s = float(opts["unacked_mutex_expire"])
    assert lock_s <= 10
    queue = Queue(QUEUE, Exchange(QUEUE, type="direct"), routing_key=QUEUE)
    with (
        Connection(url, transport_options=opts) as conn,
        Connection(url, transport_options=opts) as dead_conn,
    ):
        live = conn.channel()
        live.client.flushdb()
        try:
            conn.Producer(live).publish({"n": 1}, exchange=queue.exchange, routing_key=QUEUE,
                                        declare=[queue])  # fmt: skip
            # a worker takes the message and dies before acknowledging it ...
            dead = dead_conn.channel()
            taken = dead.basic_get(QUEUE, no_ack=False)
            assert taken is not None
            assert live.client.zcard(live.unacked_index_key) == 1
            # ... in the middle of a restore sweep: its lock stays until it expires
            live.client.set(live.unacked_mutex_key, "killed-worker", px=int(lock_s * 1000))

            start = time.monotonic()
            again = None
            while again is None and time.monotonic() - start < lock_s + 15:
                live.qos.restore_visible(num=10, interval=1)
                again = live.basic_get(QUEUE, no_ack=True)
                if again is None:
                    time.sleep(0.2)
            waited = time.monotonic() - start
            assert again is not None, f"not redelivered within {waited:.1f} s"
            assert again.decode() == {"n": 1}
            # not before the lock expired, and not much after (the visibility timeout is
            # shorter than the lock here)
            assert lock_s - 0.5 <= waited <= lock_s + 5
        finally:
            live.client.flushdb()
            app.close()
