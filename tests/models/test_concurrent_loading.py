"""Model loading is safe under concurrency: in a fresh process, thirteen threads load every
kind of model at the same instant (private text encoders as training jobs build them, the
ONNX encoder, the frozen base encoder, the search path's emotion model, audio backbones)
and every call succeeds with the same vectors as its twins.

Without one process-wide load lock (``storycue.models.base.MODEL_LOAD_LOCK``) this script
failed 10 of its 13 calls on every run (``ImportError: cannot import name 'AutoModel' from
'transformers'`` and ``Cannot copy out of meta tensor``), the gateway's 500s of issue 14.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("concurrent_load.py")


def test_every_model_loads_once_safely_when_all_threads_ask_at_once(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "STORYCUE_HOME": str(tmp_path / "home"),  # a cold ONNX export cache too
        "STORYCUE_LOG_LEVEL": "warning",
    }
    done = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["errors"] == []
    assert report["counts"] == {
        "backbone": 2,
        "base_encoder": 2,
        "onnx_encoder": 2,
        "private_encoder": 4,
        "search_path": 3,
    }
    assert set(report["distinct"].values()) == {1}, report["distinct"]
