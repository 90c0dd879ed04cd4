"""The distributed runtime: the Celery app and tasks, the Celery job dispatcher, and the
micro-batching of encoder calls in the GPU workers.

Import the submodules directly (``storycue.runtime.celery_app``, ``.dispatcher``,
``.batching``, ``.tasks``): importing this package loads nothing heavy.
"""
