"""Loading the musicnn backbones and embedding whole tracks with them.

The weights are the TensorFlow checkpoints shipped in the ``musicnn`` 0.1.0 wheel (folders
``MTT_musicnn``, ``MSD_musicnn``, ``MTT_vgg``, ``MSD_vgg`` inside the package), read with
:mod:`storycue.models.musicnn.checkpoint` — TensorFlow is never imported. The folder holding
them is ``weights_dir`` when given, else ``Settings.musicnn_weights_dir``
(``STORYCUE_MUSICNN_WEIGHTS_DIR``), else the installed ``musicnn`` package's folder.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from storycue.audio.mel import N_MELS, PATCH_FRAMES, MelFrontend, PatchPolicy
from storycue.config import Settings, get_settings
from storycue.errors import ConfigurationError, InvalidInputError, ModelNotFoundError
from storycue.log import get_logger
from storycue.metrics import observe_batch, record_model_load, time_stage
from storycue.models.base import MODEL_LOAD_LOCK
from storycue.models.finetuned import EncoderDelta, base_of, find_delta, is_finetuned_name
from storycue.models.musicnn.checkpoint import read_bundle
from storycue.models.musicnn.nets import MusicnnNet, VggNet
from storycue.models.precision import Precision, PrecisionGate, autocast

log = get_logger(__name__)

#: Version string of the weights (the musicnn wheel they ship in).
MUSICNN_VERSION = "musicnn-0.1.0"

# Tag vocabularies of musicnn 0.1.0 (musicnn/configuration.py, ISC licence), in output order.
MTT_LABELS: tuple[str, ...] = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
    "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male",
    "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman",
    "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice",
    "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello", "no voice",
    "weird", "country", "metal", "female voice", "choral",
)  # fmt: skip
MSD_LABELS: tuple[str, ...] = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists",
    "classic rock", "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill",
    "instrumental", "punk", "oldies", "blues", "hard rock", "ambient", "acoustic",
    "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
    "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock",
    "60s", "rnb", "indie pop", "sad", "House", "happy",
)  # fmt: skip


@dataclass(frozen=True)
class BackboneSpec:
    """What one named backbone is: its architecture and the tags it was trained on."""

    name: str
    arch: Literal["musicnn", "vgg"]
    dataset: Literal["MTT", "MSD"]
    labels: tuple[str, ...]

    @property
    def feature_dims(self) -> dict[str, int]:
        """Per-patch output sizes of :meth:`MusicnnBackbone.forward_patches`."""
        if self.arch == "musicnn":
            return {"tags": 50, "mean_pool": 753, "max_pool": 753, "penultimate": 200}
        return {"tags": 50, "pool5": 256}


#: The four backbones of the musicnn wheel, by name.
BACKBONES: dict[str, BackboneSpec] = {
    "MTT_musicnn": BackboneSpec("MTT_musicnn", "musicnn", "MTT", MTT_LABELS),
    "MSD_musicnn": BackboneSpec("MSD_musicnn", "musicnn", "MSD", MSD_LABELS),
    "MTT_vgg": BackboneSpec("MTT_vgg", "vgg", "MTT", MTT_LABELS),
    "MSD_vgg": BackboneSpec("MSD_vgg", "vgg", "MSD", MSD_LABELS),
}

#: Patches per network call on CPU (bounds peak memory to a few hundred MB).
_CPU_MICRO_BATCH = 16

#: Synthetic log-mel patches of the precision probe (see :mod:`storycue.models.precision`).
_PROBE_PATCHES = 3
_PROBE_SEED = 1234

_INSTALL_HINT = (
    "install the weights with `pip install --no-deps musicnn==0.1.0` (only its files are "
    "needed, not TensorFlow) or set STORYCUE_MUSICNN_WEIGHTS_DIR to the folder holding the "
    "MTT_musicnn/, MSD_musicnn/, MTT_vgg/ and MSD_vgg/ checkpoint folders"
)


def resolve_weights_dir(
    weights_dir: Path | str | None = None, settings: Settings | None = None
) -> Path:
    """The folder holding the checkpoint folders, or :class:`ConfigurationError` saying how
    to get them. Never imports TensorFlow (``musicnn/__init__.py`` is not even executed)."""
    if weights_dir is None:
        weights_dir = (settings or get_settings()).musicnn_weights_dir
    if weights_dir is not None:
        path = Path(weights_dir).expanduser()
        if not path.is_dir():
            raise ConfigurationError(
                f"musicnn weights folder {path} does not exist; {_INSTALL_HINT}"
            )
        return path.resolve()
    spec = importlib.util.find_spec("musicnn")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        if (Path(loc) / "MTT_musicnn" / ".index").is_file():
            return Path(loc).resolve()
    raise ConfigurationError(f"the musicnn weights were not found; {_INSTALL_HINT}")


class MusicnnBackbone:
    """One loaded musicnn/VGG network plus its mel front end, ready for inference.

    Build it with :func:`load_backbone`. Thread-safe for concurrent inference (eval mode,
    no state changes under ``torch.inference_mode``).

    The network *and* the mel front end live on ``device``: :class:`MelFrontend`'s window
    and filterbank buffers are moved there with the network, and its methods move the
    waveform to those buffers' device, so on CUDA the STFT and mel projection run on the GPU
    and only the waveform crosses from the host.

    ``precision`` (default ``Settings.precision``) sets the autocast dtype of the network's
    forward pass, accepted only after a probe on first use (:attr:`precision_gate`, see
    :mod:`storycue.models.precision`); the mel front end and the pooling over patches stay
    float32, and every output is returned as float32.
    """

    def __init__(
        self, spec: BackboneSpec, net: nn.Module, *, device: str, weights_dir: Path,
        settings: Settings | None = None, precision: Precision | None = None,
    ) -> None:  # fmt: skip
        self.spec = spec
        self.name = spec.name
        self.version = MUSICNN_VERSION
        self.labels = spec.labels
        self.device = torch.device(device)
        self.weights_dir = weights_dir
        self._settings = settings
        self.net = net.to(self.device).eval()
        self.mel = MelFrontend().to(self.device).eval()
        self.precision_gate = PrecisionGate(
            precision or (settings or get_settings()).precision, self.device, model=self.name
        )

    @property
    def feature_dims(self) -> dict[str, int]:
        """Sizes of every key :meth:`embed_waveform` returns (per-patch keys + ``*_max``)."""
        dims = dict(self.spec.feature_dims)
        dims["tags_max"] = dims["tags"]
        return dims

    @property
    def identity(self) -> str:
        """``"<name>@<version>"``, e.g. ``"MTT_musicnn@musicnn-0.1.0"``."""
        return f"{self.name}@{self.version}"

    def forward_patches(self, patches: Tensor) -> dict[str, Tensor]:
        """Outputs for log-mel patches ``[N, 187, 96]`` (float32; on any device).

        musicnn: ``tags`` (50, sigmoid), ``mean_pool`` (753), ``max_pool`` (753),
        ``penultimate`` (200). VGG: ``tags`` and ``pool5`` (256 = 2×1×128 flattened NHWC).
        Each is ``[N, dim]`` on the backbone's device.
        """
        if patches.dim() != 3 or patches.shape[2] != N_MELS:
            raise InvalidInputError(
                f"{self.name} expects log-mel patches [N, {PATCH_FRAMES}, {N_MELS}], got "
                f"{tuple(patches.shape)}"
            )
        if self.spec.arch == "vgg" and patches.shape[1] != PATCH_FRAMES:
            raise InvalidInputError(
                f"{self.name} (VGG) only accepts {PATCH_FRAMES}-frame patches, "
                f"got {patches.shape[1]}"
            )
        dtype = self.precision_gate.dtype(self._probe)
        return self._run(patches.to(device=self.device, dtype=torch.float32), dtype)

    def _run(self, x: Tensor, dtype: torch.dtype | None) -> dict[str, Tensor]:
        """The network on float32 patches ``x`` under ``autocast(dtype)``; float32 outputs."""
        # On CPU, run at most _CPU_MICRO_BATCH patches at once: the first layers' maps are
        # ~10 MB per patch (plus the convolution's workspace), the speed is the same.
        step = _CPU_MICRO_BATCH if self.device.type == "cpu" else max(1, x.shape[0])
        outs: list[dict[str, Tensor]] = []
        with torch.inference_mode():
            for i in range(0, max(1, x.shape[0]), step):
                with autocast(self.device, dtype):
                    out = self.net(x[i : i + step])
                outs.append({k: v.float() for k, v in out.items() if k != "logits"})
        if len(outs) == 1:
            return outs[0]
        return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}

    def _probe(self, dtype: torch.dtype | None) -> Tensor:
        """Precision probe: fixed synthetic log-mel patches (seeded, in the range of real
        ``log10(10000·mel + 1)`` values), every output averaged over the patches and
        L2-normalised, concatenated."""
        gen = torch.Generator().manual_seed(_PROBE_SEED)
        x = 4.0 * torch.rand(_PROBE_PATCHES, PATCH_FRAMES, N_MELS, generator=gen)
        out = self._run(x.to(self.device), dtype)
        return torch.cat([F.normalize(out[k].mean(dim=0), dim=0) for k in sorted(out)])

    def _batch_size(self) -> int:
        return (self._settings or get_settings()).batch.audio_patches

    def embed_waveform(
        self, wave16k: np.ndarray, *, policy: PatchPolicy = "track", batch_size: int | None = None
    ) -> dict[str, np.ndarray]:
        """Whole-track features of a mono 16 kHz waveform, float32 numpy vectors.

        The log-mel of the whole clip is computed once (in blocks, bounding memory), cut into
        3 s patches (``policy``, see :mod:`storycue.audio.mel`: by default short clips are
        repeat-padded to one patch and a tail of ≥1.5 s adds a final patch), run through the
        network ``batch_size`` patches at a time (default ``Settings.batch.audio_patches``),
        and each output is averaged over all patches. ``tags_max`` is the per-tag maximum.
        """
        arr = np.asarray(wave16k)
        if arr.ndim != 1:
            raise InvalidInputError(
                f"embed_waveform expects a mono 1-D waveform, got shape {arr.shape}; "
                "decode with storycue.audio.decode.load_audio (downmixes to mono)"
            )
        if arr.size == 0:
            raise InvalidInputError("embed_waveform got an empty waveform")
        if not np.issubdtype(arr.dtype, np.floating):
            raise InvalidInputError(f"embed_waveform expects float samples, got {arr.dtype}")
        if not np.isfinite(arr).all():
            raise InvalidInputError("embed_waveform got NaN or infinite samples")
        bs = batch_size or self._batch_size()
        with torch.inference_mode():
            wave = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
            with time_stage("mel"):
                logmel = self.mel.logmel_long(wave)
                patches = MelFrontend.patches(logmel, policy=policy)
            if patches.shape[0] == 0:
                raise InvalidInputError(
                    f"clip too short for policy {policy!r}: {logmel.shape[0]} frames, "
                    f"fewer than one {PATCH_FRAMES}-frame patch"
                )
        # The backbone stage ends when the results are on the host (a GPU has finished).
        with time_stage("backbone"), torch.inference_mode():
            pool = PatchPool()
            for i in range(0, patches.shape[0], bs):
                batch = patches[i : i + bs]
                observe_batch("audio_patches", int(batch.shape[0]))
                pool.add(self.forward_patches(batch))
            return pool.result()

    def __repr__(self) -> str:
        return (
            f"MusicnnBackbone(name={self.name!r}, version={self.version!r}, device={self.device})"
        )


class PatchPool:
    """A clip's per-patch backbone outputs pooled batch by batch: the mean of every output
    over the clip's patches, and the maximum of the tags (``tags_max``)."""

    def __init__(self) -> None:
        self._sums: dict[str, Tensor] = {}
        self._tags_max: Tensor | None = None
        self._patches = 0

    def add(self, out: Mapping[str, Tensor]) -> None:
        """Pool one batch of :meth:`MusicnnBackbone.forward_patches` outputs."""
        for k, v in out.items():
            s = v.sum(dim=0)
            self._sums[k] = self._sums[k] + s if k in self._sums else s
        m = out["tags"].amax(dim=0)
        self._tags_max = m if self._tags_max is None else torch.maximum(self._tags_max, m)
        self._patches += int(out["tags"].shape[0])

    def result(self) -> dict[str, np.ndarray]:
        """The pooled features (float32, on the host)."""
        if self._tags_max is None:
            raise InvalidInputError("no patches were pooled")
        out = {k: (v / self._patches).float().cpu().numpy() for k, v in self._sums.items()}
        out["tags_max"] = self._tags_max.float().cpu().numpy()
        return out


_cache: dict[tuple[str, str, str, str], MusicnnBackbone] = {}
_cache_lock = threading.Lock()


def load_backbone(
    name: str = "MTT_musicnn",
    *,
    weights_dir: Path | str | None = None,
    device: str | None = None,
    settings: Settings | None = None,
    precision: Precision | None = None,
    cached: bool = True,
) -> MusicnnBackbone:
    """The backbone ``name`` (one of :data:`BACKBONES`), loaded once per
    ``(name, weights_dir, device, precision)`` and cached; concurrent callers wait for one load.
    ``cached=False`` builds a private copy that nobody else shares (for fine-tuning, which
    changes the network in place).

    ``device`` defaults to ``Settings.torch_device()`` (CUDA when present under ``auto``);
    the mel front end runs there too. ``precision`` defaults to ``Settings.precision``.
    Raises :class:`ModelNotFoundError` for an unknown name, :class:`ConfigurationError` when
    the weights are missing.
    """
    if not is_finetuned_name(name) and name not in BACKBONES:
        raise ModelNotFoundError(
            f"unknown audio backbone {name!r}; choose one of {', '.join(BACKBONES)} "
            "or a fine-tuned one (<base>+ft-<digest>)"
        )
    settings = settings or get_settings()
    wdir = resolve_weights_dir(weights_dir, settings)
    dev = str(torch.device(device or settings.torch_device()))
    prec: Precision = precision or settings.precision
    if cached and is_finetuned_name(name):
        # A cache hit by name must not re-read (and re-hash) the delta file on every call.
        with _cache_lock:
            hit = _cache.get((name, str(wdir), dev, prec))
        if hit is not None:
            return hit
    delta: EncoderDelta | None = None
    if is_finetuned_name(name):
        # A fine-tuned backbone: its base's network with the delta's tensors applied.
        delta = find_delta(name, "audio", settings)
        name = delta.name
    if base_of(name) not in BACKBONES:
        raise ModelNotFoundError(
            f"unknown audio backbone {name!r}; choose one of {', '.join(BACKBONES)} "
            "or a fine-tuned one (<base>+ft-<digest>)"
        )
    key = (name, str(wdir), dev, prec)
    with _cache_lock:
        if cached and key in _cache:
            return _cache[key]
    with MODEL_LOAD_LOCK:  # one load at a time in the process (storycue.models.base)
        with _cache_lock:
            if cached and key in _cache:
                return _cache[key]
        spec = BACKBONES[base_of(name)]
        ckpt = wdir / spec.name
        if not (ckpt / ".index").is_file():
            raise ConfigurationError(f"checkpoint {ckpt}/.index not found; {_INSTALL_HINT}")
        t0 = time.perf_counter()
        net: MusicnnNet | VggNet = MusicnnNet() if spec.arch == "musicnn" else VggNet()
        net.load_tf_weights(read_bundle(str(ckpt) + "/"))
        if delta is not None:
            delta.apply(net)
            spec = replace(spec, name=delta.name)
        backbone = MusicnnBackbone(
            spec, net, device=dev, weights_dir=wdir, settings=settings, precision=prec
        )
        seconds = time.perf_counter() - t0
        record_model_load("audio_backbone", name, seconds)
        log.info("backbone_loaded", name=name, device=dev, seconds=round(seconds, 3))
        if cached:
            with _cache_lock:
                _cache[key] = backbone
        return backbone


def clear_backbone_cache() -> None:
    """Forget every cached backbone (tests; freeing GPU memory)."""
    with _cache_lock:
        _cache.clear()
