"""Fine-tuning the pretrained encoders on the emotion data (the GPU option).

By default every family trains small heads on *frozen* encoder features. Fine-tuning
changes the encoders themselves, end to end, on an emotion objective that serves every
family, and stores the result as an encoder delta (:mod:`storycue.models.finetuned`):

* **text** (:func:`finetune_text`): the transformer's top ``layers`` layers (every layer with
  ``layers=-1``, the full fine-tuning) plus a temporary head, trained on the labelled texts
  (ISEAR, GoEmotions-Ekman) with cross-entropy over the union of their labels and on every
  text with a valence-arousal target (the NRC position of its label, EmoBank's ratings)
  with weighted MSE; early stopping on the balanced accuracy of the validation sources;
* **audio** (:func:`finetune_audio`): every layer of the musicnn/VGG network plus a head on
  its pooled features, trained on random 3 s crops of the 4Q training clips with
  cross-entropy over quadrants and MSE to the clips' valence-arousal targets; early stopping
  on clip-level quadrant accuracy (logits averaged over the clip's patches) on validation.

A family is then trained as usual on the features of the fine-tuned encoders
(``storycue train FAMILY --text-encoder <name> --audio-backbone <name>``, or
``--finetune`` to do both steps at once), so the temporary heads are thrown away and the
checkpoint records the fine-tuned encoders' names. The features are computed from the
*stored* (half-precision) delta, never from the in-memory float32 weights, so what the heads
train on is exactly what inference will compute.

Both loops run anywhere; on CPU they are slow (minutes per epoch for text), which is why
they are options for GPU machines. :class:`MelBank` holds log-mel crops of clips so audio
fine-tuning can run on a machine that has no copy of the audio (``storycue finetune
export-mels``).
"""

from __future__ import annotations

import copy
import math
import platform
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from storycue.data.textsets import RATED_SOURCES
from storycue.errors import InvalidInputError
from storycue.log import get_logger
from storycue.models.finetuned import EncoderDelta, is_finetuned_name, make_delta

log = get_logger(__name__)

Progress = Callable[[str, int, int], None]
_LAYER_RE = re.compile(r"(?:^|\.)(?:layer|layers)\.(\d+)\.")
#: Quadrant order of the audio head's classes.
QUADRANT_ORDER = ("Q1", "Q2", "Q3", "Q4")


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def _versions() -> dict[str, str]:
    out = {"torch": torch.__version__, "python": platform.python_version()}
    try:
        import transformers

        out["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover - a dependency
        pass
    return out


def _autocast(device: torch.device, amp: bool) -> Any:
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def _delta_info(
    objective: str,
    config: dict[str, Any],
    history: list[dict[str, float]],
    best_epoch: int,
    data_info: dict[str, Any] | None,
    device: torch.device,
    **extra: Any,
) -> dict[str, Any]:
    """What a delta records about its training: objective, configuration, the best
    epoch's validation metrics (``history[best_epoch - 1]``), the history, data, device."""
    best = {k: v for k, v in history[best_epoch - 1].items() if k != "seconds"}
    return {
        "created": _now(),
        "objective": objective,
        "config": config,
        **extra,
        "metrics": best,
        "history": history,
        "data": dict(data_info or {}),
        "device": str(device),
        "versions": _versions(),
    }


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    classes = np.unique(y)
    if classes.size == 0:
        return float("nan")
    return float(np.mean([np.mean(pred[y == c] == c) for c in classes]))


# ---- text ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TextFinetuneConfig:
    """Hyper-parameters of text-encoder fine-tuning (recorded in the delta)."""

    #: Top transformer layers to train; ``-1`` trains every layer (full fine-tuning).
    layers: int = -1
    train_embeddings: bool = False
    epochs: int = 6
    patience: int = 2
    lr: float = 4e-5
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    batch_size: int = 64
    max_tokens: int = 128
    #: Weight of the valence-arousal MSE against the label cross-entropy.
    va_weight: float = 5.0
    label_smoothing: float = 0.05
    dropout: float = 0.1
    validation_sources: tuple[str, ...] = ("isear",)
    #: Weight of the MSE on *standardised* continuous ratings (texts of
    #: ``rating_sources``, e.g. EmoBank's valence and arousal), read by an output of their
    #: own. Label positions and ratings live on different scales (EmoBank's sentences sit
    #: within a few hundredths of the neutral point once rescaled to [0, 1]), so inside the
    #: plain VA MSE the ratings barely move the encoder; standardising them gives prose its
    #: own say. 0 (the default) turns the output off. Every rated source by default, so
    #: EmoBank's joined passages (source ``emobank-passages``), when trained on, teach the
    #: encoder how a paragraph reads through the same output.
    rating_weight: float = 0.0
    rating_sources: tuple[str, ...] = RATED_SOURCES
    #: ``labels``: early-stop on the mean balanced accuracy of ``validation_sources``;
    #: ``labels+ratings``: on its mean with the mean Pearson correlation (valence, arousal)
    #: of the rating output on the validation texts of ``rating_sources``.
    selection: Literal["labels", "labels+ratings"] = "labels"
    #: L2-normalise the pooled features before the temporary heads, as the encoder's
    #: features are normalised for every family's heads: fine-tuning then shapes exactly
    #: what the heads will read (a sentence's intensity must show in its direction).
    normalize: bool = False
    #: Cap on the training texts of each source (e.g. GoEmotions' 43k on a CPU); ``None``:
    #: all. Applied before ``max_examples``.
    max_per_source: int | None = None
    #: Cap on training examples (quick runs, tests); ``None`` uses them all.
    max_examples: int | None = None
    #: Cap on validation examples, drawn from the validation sources; ``None``: all.
    max_validation: int | None = None
    seed: int = 0
    #: bf16 autocast on CUDA (weights and optimiser stay float32).
    amp: bool = True

    def check(self) -> None:
        if self.layers == 0 or self.layers < -1:
            raise InvalidInputError("layers must be -1 (all) or a positive number of layers")
        if self.epochs < 1 or self.batch_size < 1 or self.max_tokens < 8:
            raise InvalidInputError("epochs and batch_size must be >= 1, max_tokens >= 8")
        if not (self.lr > 0 and self.head_lr > 0):
            raise InvalidInputError("learning rates must be positive")
        if self.va_weight < 0 or self.rating_weight < 0:
            raise InvalidInputError("va_weight and rating_weight must be >= 0")
        if self.selection == "labels+ratings" and self.rating_weight == 0:
            raise InvalidInputError("selection 'labels+ratings' needs rating_weight > 0")
        if self.max_per_source is not None and self.max_per_source < 1:
            raise InvalidInputError("max_per_source must be >= 1")


@dataclass
class TextExamples:
    """Texts with an optional label (``""`` = none), a VA target (NaN = none) and a weight."""

    texts: list[str]
    labels: list[str]
    sources: list[str]
    va: np.ndarray
    weights: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.texts)
        self.va = np.asarray(self.va, np.float32).reshape(-1, 2)
        self.weights = np.asarray(self.weights, np.float32).reshape(-1)
        sizes = {len(self.labels), len(self.sources), self.va.shape[0], len(self.weights)}
        if sizes != {n}:
            raise InvalidInputError("text examples: texts, labels, sources, VA and weights differ")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: Sequence[int] | np.ndarray) -> TextExamples:
        """The examples at ``idx``, in that order."""
        rows = np.asarray(idx, np.int64)
        return TextExamples([self.texts[i] for i in rows], [self.labels[i] for i in rows],
                            [self.sources[i] for i in rows], self.va[rows],
                            self.weights[rows])  # fmt: skip

    @classmethod
    def from_text_set(cls, tset: Any) -> TextExamples:
        """From :class:`storycue.training.va.TextSet`."""
        return cls(list(tset.texts), list(tset.labels), list(tset.source), tset.targets,
                   tset.weights)  # fmt: skip


@dataclass
class FinetuneResult:
    delta: EncoderDelta
    metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)


class _TextTuner(nn.Module):
    def __init__(self, model: nn.Module, dim: int, n_labels: int, dropout: float,
                 pooling: str, normalize: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.model = model
        self.pooling = pooling
        self.normalize = normalize
        self.drop = nn.Dropout(dropout)
        self.cls = nn.Linear(dim, n_labels)
        self.va = nn.Linear(dim, 2)
        self.rating = nn.Linear(dim, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[
            torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            m = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        if self.normalize:
            # Scaled back to about the raw features' norm so the heads' learning rates fit.
            pooled = F.normalize(pooled.float(), dim=-1) * math.sqrt(pooled.shape[-1])
        z = self.drop(pooled)
        return self.cls(z), torch.sigmoid(self.va(z)), self.rating(z)


def trainable_text_params(model: nn.Module, layers: int, train_embeddings: bool) -> set[str]:
    """Names of the parameters fine-tuning trains: the top ``layers`` transformer layers
    (all with ``-1``), the embeddings when asked; never the unused pooler."""
    names = [n for n, _ in model.named_parameters()]
    idx = {n: int(m.group(1)) for n in names if (m := _LAYER_RE.search(n))}
    if not idx:
        raise InvalidInputError("cannot find the transformer layers of this text encoder")
    n_layers = max(idx.values()) + 1
    if layers > n_layers:
        raise InvalidInputError(f"the encoder has {n_layers} layers; cannot train {layers}")
    first = 0 if layers == -1 else n_layers - layers
    keep = {n for n, i in idx.items() if i >= first}
    if layers == -1:
        # Layer norms / projections outside the numbered layers (not the pooler).
        keep |= {n for n in names if n not in idx and "embeddings" not in n and "pooler" not in n}
    if train_embeddings:
        keep |= {n for n in names if "embeddings" in n}
    return keep


def finetune_text(
    encoder: Any,
    train: TextExamples,
    validation: TextExamples,
    config: TextFinetuneConfig | None = None,
    *,
    data_info: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> FinetuneResult:
    """Fine-tune ``encoder`` (a PyTorch :class:`~storycue.models.text.TextEncoder` of a
    pretrained model) and return the delta of the trained tensors (half precision).

    The encoder's model is trained in place and left holding the stored (rounded) weights.
    """
    cfg = config or TextFinetuneConfig()
    cfg.check()
    if getattr(encoder, "backend", "torch") != "torch":
        raise InvalidInputError("fine-tuning needs the PyTorch text backend, not ONNX")
    init = getattr(encoder, "delta", None)
    if is_finetuned_name(encoder.name) and init is None:
        raise InvalidInputError(f"{encoder.name} names a delta that is not loaded")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if cfg.max_per_source is not None:
        src = np.asarray(train.sources)
        keep_rows: list[np.ndarray] = []
        for name in sorted(set(train.sources)):
            rows = np.flatnonzero(src == name)
            if rows.size > cfg.max_per_source:
                rows = rng.choice(rows, cfg.max_per_source, replace=False)
            keep_rows.append(rows)
        train = train.subset(np.sort(np.concatenate(keep_rows)))
    if cfg.max_examples is not None and len(train) > cfg.max_examples:
        train = train.subset(np.sort(rng.choice(len(train), cfg.max_examples, replace=False)))
    if cfg.max_validation is not None and len(validation) > cfg.max_validation:
        pool = np.flatnonzero(np.isin(np.asarray(validation.sources), cfg.validation_sources))
        pool = pool if pool.size else np.arange(len(validation))
        keep = np.sort(rng.choice(pool, min(cfg.max_validation, pool.size), replace=False))
        validation = validation.subset(keep)
    labels = sorted({lab for lab in train.labels if lab})
    if not labels:
        raise InvalidInputError("text fine-tuning needs labelled training texts")
    lab_index = {lab: i for i, lab in enumerate(labels)}
    val_sources = [s for s in cfg.validation_sources if s in set(validation.sources)]
    if not val_sources:
        raise InvalidInputError(
            f"no validation texts from {list(cfg.validation_sources)}; cannot early-stop"
        )

    loaded = encoder.model()
    model: nn.Module = loaded.model
    model.float()  # train in float32 whatever the checkpoint's dtype (autocast does the rest)
    tok = loaded.tokenizer
    device: torch.device = loaded.device
    dim = int(loaded.model.config.hidden_size)
    trained = trainable_text_params(model, cfg.layers, cfg.train_embeddings)
    for n, p in model.named_parameters():
        p.requires_grad_(n in trained)
    tuner = _TextTuner(model, dim, len(labels), cfg.dropout, encoder.pooling,
                       cfg.normalize).to(device)  # fmt: skip

    def tokenize(texts: Sequence[str]) -> list[list[int]]:
        ids: list[list[int]] = tok(
            list(texts),
            add_special_tokens=True,
            truncation=True,
            max_length=cfg.max_tokens,
            verbose=False,
        )["input_ids"]
        return ids  # fmt: skip

    tr_ids, va_ids = tokenize(train.texts), tokenize(validation.texts)
    y_tr = np.asarray([lab_index.get(lab, -100) for lab in train.labels], np.int64)
    y_va = np.asarray([lab_index.get(lab, -100) for lab in validation.labels], np.int64)
    va_tr = np.nan_to_num(train.va, nan=0.5)
    has_va_tr = np.isfinite(train.va).all(axis=1).astype(np.float32) * train.weights
    # Continuous ratings, standardised with the training texts' mean and spread.
    rated_tr = np.isin(np.asarray(train.sources), cfg.rating_sources) & np.isfinite(train.va).all(
        axis=1
    )
    rated_va = np.isin(np.asarray(validation.sources), cfg.rating_sources) & np.isfinite(
        validation.va
    ).all(axis=1)
    if cfg.rating_weight > 0 and not rated_tr.any():
        raise InvalidInputError(
            f"rating_weight > 0 but no training texts from {cfg.rating_sources}"
        )
    if cfg.selection == "labels+ratings" and rated_va.sum() < 3:
        raise InvalidInputError(f"no validation texts from {cfg.rating_sources} to select on")
    r_mean = train.va[rated_tr].mean(axis=0) if rated_tr.any() else np.full(2, 0.5, np.float32)
    r_std = train.va[rated_tr].std(axis=0) + 1e-6 if rated_tr.any() else np.ones(2, np.float32)
    z_tr = np.where(rated_tr[:, None], (va_tr - r_mean) / r_std, 0.0).astype(np.float32)
    w_rating_tr = rated_tr.astype(np.float32)
    counts = np.bincount(y_tr[y_tr >= 0], minlength=len(labels)).astype(np.float64)
    class_w = 1.0 / np.sqrt(np.maximum(counts, 1.0))
    class_w = class_w / (class_w * counts).sum() * counts.sum()
    ce = nn.CrossEntropyLoss(
        weight=torch.tensor(class_w, dtype=torch.float32, device=device),
        ignore_index=-100,
        label_smoothing=cfg.label_smoothing,
    )
    enc_params = [p for n, p in model.named_parameters() if n in trained]
    head_params = [*tuner.cls.parameters(), *tuner.va.parameters(), *tuner.rating.parameters()]
    opt = torch.optim.AdamW(
        [{"params": enc_params, "lr": cfg.lr}, {"params": head_params, "lr": cfg.head_lr}],
        weight_decay=cfg.weight_decay,
    )
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warm = max(1, int(cfg.warmup_fraction * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )

    def batch(ids: list[list[int]], idx: np.ndarray) -> dict[str, torch.Tensor]:
        enc = tok.pad({"input_ids": [ids[int(i)] for i in idx]}, padding=True,
                      return_tensors="pt")  # fmt: skip
        return {"input_ids": enc["input_ids"].to(device),
                "attention_mask": enc["attention_mask"].to(device)}  # fmt: skip

    def evaluate() -> dict[str, float]:
        tuner.eval()
        order = np.argsort([len(x) for x in va_ids], kind="stable")
        logits = np.zeros((len(validation), len(labels)), np.float32)
        vas = np.zeros((len(validation), 2), np.float32)
        ratings = np.zeros((len(validation), 2), np.float32)
        with torch.no_grad():
            for s in range(0, len(order), cfg.batch_size * 2):
                idx = order[s : s + cfg.batch_size * 2]
                with _autocast(device, cfg.amp):
                    lo, v, r = tuner(**batch(va_ids, idx))
                logits[idx] = lo.float().cpu().numpy()
                vas[idx] = v.float().cpu().numpy()
                ratings[idx] = r.float().cpu().numpy()
        out: dict[str, float] = {}
        accs = []
        for src in val_sources:
            rows = np.flatnonzero((np.asarray(validation.sources) == src) & (y_va >= 0))
            src_labels = sorted({int(y_va[i]) for i in rows})
            if rows.size == 0:
                continue
            sub = logits[np.ix_(rows, np.asarray(src_labels, np.int64))]
            pred = np.asarray(src_labels)[sub.argmax(axis=1)]
            acc = _balanced_accuracy(y_va[rows], pred)
            out[f"{src}_balanced_accuracy"] = acc
            out[f"{src}_accuracy"] = float(np.mean(pred == y_va[rows]))
            accs.append(acc)
        ok = np.isfinite(validation.va).all(axis=1)
        if ok.any():
            out["va_mse"] = float(np.mean((vas[ok] - validation.va[ok]) ** 2))
        label_score = float(np.mean(accs))
        if rated_va.sum() >= 3 and cfg.rating_weight > 0:
            for d, axis in enumerate(("valence", "arousal")):
                out[f"rating_{axis}_pearson"] = float(
                    np.corrcoef(ratings[rated_va, d], validation.va[rated_va, d])[0, 1]
                )
        if cfg.selection == "labels+ratings":
            rating_score = 0.5 * (out["rating_valence_pearson"] + out["rating_arousal_pearson"])
            out["score"] = 0.5 * (label_score + rating_score)
        else:
            out["score"] = label_score
        return out

    best_score, best_epoch, bad = -1.0, -1, 0
    best_state: dict[str, torch.Tensor] = {}
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        tuner.train()
        # Length-bucketed shuffling: shuffle, then sort within chunks of 50 batches.
        perm = rng.permutation(len(train))
        chunk = cfg.batch_size * 50
        batches: list[np.ndarray] = []
        for s in range(0, len(perm), chunk):
            part = perm[s : s + chunk]
            part = part[np.argsort([len(tr_ids[int(i)]) for i in part], kind="stable")]
            batches.extend(
                part[b : b + cfg.batch_size] for b in range(0, len(part), cfg.batch_size)
            )
        rng.shuffle(cast(Any, batches))  # a list of index arrays (numpy's stubs vary)
        run_loss = 0.0
        for step, idx in enumerate(batches):
            inputs = batch(tr_ids, idx)
            yl = torch.from_numpy(y_tr[idx]).to(device)
            yv = torch.from_numpy(va_tr[idx]).to(device)
            wv = torch.from_numpy(has_va_tr[idx]).to(device)
            with _autocast(device, cfg.amp):
                logits, va, rating = tuner(**inputs)
            loss_va = (((va.float() - yv) ** 2).mean(1) * wv).sum() / wv.sum().clamp(min=1e-9)
            loss = cfg.va_weight * loss_va
            if cfg.rating_weight > 0 and bool(w_rating_tr[idx].any()):
                zr = torch.from_numpy(z_tr[idx]).to(device)
                wr = torch.from_numpy(w_rating_tr[idx]).to(device)
                loss_r = (((rating.float() - zr) ** 2).mean(1) * wr).sum() / wr.sum()
                loss = loss + cfg.rating_weight * loss_r
            if bool((yl >= 0).any()):
                loss = loss + ce(logits.float(), yl)
            opt.zero_grad(set_to_none=True)
            cast(Any, loss).backward()  # torch types backward() in some releases only
            torch.nn.utils.clip_grad_norm_(enc_params + head_params, 1.0)
            opt.step()
            sched.step()
            run_loss += float(loss.detach())
            if progress is not None and (step % 20 == 0 or step == len(batches) - 1):
                progress(f"fine-tuning text, epoch {epoch + 1}/{cfg.epochs}", step + 1,
                         len(batches))  # fmt: skip
        metrics = evaluate()
        metrics.update(epoch=epoch + 1, train_loss=run_loss / max(1, len(batches)),
                       seconds=time.perf_counter() - t0)  # fmt: skip
        history.append(metrics)
        log.info("text_finetune_epoch", **{k: round(v, 4) for k, v in metrics.items()})
        if metrics["score"] > best_score:
            best_score, best_epoch, bad = metrics["score"], epoch + 1, 0
            best_state = {n: p.detach().cpu().clone() for n, p in model.named_parameters()
                          if n in trained}  # fmt: skip
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    with torch.no_grad():
        params = dict(model.named_parameters())
        for n, v in best_state.items():
            params[n].copy_(v.to(params[n].device))
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    objective = "label cross-entropy + valence-arousal MSE"
    if cfg.rating_weight > 0:
        # the rated sources this run actually trained on, not every one it would accept
        trained_on = set(train.sources)
        rated = [src for src in cfg.rating_sources if src in trained_on]
        objective += f" + standardised {'/'.join(rated)} rating MSE"
    extra: dict[str, Any] = {}
    stored = set(trained)
    if init is not None:
        # A warm start: the new delta holds every tensor the old one changed, so it still
        # applies to the same pretrained base on its own.
        extra["initialised_from"] = init.name
        stored |= set(init.tensors)
    info = _delta_info(
        objective, asdict(cfg), history, best_epoch,
        data_info, device, labels=labels, trained_tensors=len(trained),
        examples={"train": len(train), "validation": len(validation)}, **extra,
    )  # fmt: skip
    best_metrics: dict[str, Any] = info["metrics"]
    base = init.base if init is not None else encoder.name
    delta = make_delta("text", base, model, stored, info=info)
    delta.apply(model)  # the model now holds exactly the stored, rounded weights
    # The encoder object now *is* the fine-tuned encoder: rename it, so features it computes
    # are never cached or recorded under the pretrained base's name.
    encoder.delta = delta
    encoder.name = delta.name
    log.info("text_finetune_done", name=delta.name, best_epoch=best_epoch,
             score=round(best_score, 4), params=delta.n_params)  # fmt: skip
    return FinetuneResult(delta=delta, metrics=best_metrics, history=history)


# ---- audio ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class AudioFinetuneConfig:
    """Hyper-parameters of audio-backbone fine-tuning (recorded in the delta)."""

    epochs: int = 40
    patience: int = 8
    lr: float = 1e-4
    head_lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 32
    #: Random 3 s crops drawn from each training clip per epoch.
    crops_per_clip: int = 4
    va_weight: float = 5.0
    dropout: float = 0.5
    #: Backbone outputs the head reads (as the families' default audio features).
    features: tuple[str, ...] = ("penultimate", "mean_pool", "max_pool")
    max_clips: int | None = None
    seed: int = 0
    amp: bool = True

    def check(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.crops_per_clip < 1:
            raise InvalidInputError("epochs, batch_size and crops_per_clip must be >= 1")


@dataclass
class MelBank:
    """Log-mel spectrograms ``(frames, 96)`` of clips with quadrant and VA targets.

    Saved as an ``.npz`` with the log-mels quantised to 8 bits (a lossy transport format
    for fine-tuning on a machine without the audio); loaded back as float32.
    """

    mels: list[np.ndarray]
    quadrants: list[str]
    va: np.ndarray
    song_ids: list[str]
    part: list[str]

    def __post_init__(self) -> None:
        self.va = np.asarray(self.va, np.float32).reshape(-1, 2)
        n = len(self.mels)
        sizes = {len(self.quadrants), self.va.shape[0], len(self.song_ids), len(self.part)}
        if sizes != {n}:
            raise InvalidInputError("mel bank: mels, quadrants, VA, ids and parts differ")
        bad = sorted({q for q in self.quadrants if q not in QUADRANT_ORDER})
        if bad:
            raise InvalidInputError(f"mel bank: unknown quadrants {bad}")

    def select(self, part: str) -> MelBank:
        """The clips of split part ``part``."""
        return self.subset([i for i, p in enumerate(self.part) if p == part])

    def subset(self, idx: Sequence[int]) -> MelBank:
        """The clips at ``idx``, in that order."""
        rows = [int(i) for i in idx]
        return MelBank([self.mels[i] for i in rows], [self.quadrants[i] for i in rows],
                       self.va[rows], [self.song_ids[i] for i in rows],
                       [self.part[i] for i in rows])  # fmt: skip

    def __len__(self) -> int:
        return len(self.mels)

    def save(self, path: Path, *, max_frames: int | None = None) -> Path:
        """Write the bank, each clip cut to its central ``max_frames`` frames if given."""
        mels = [_centre(m, max_frames) for m in self.mels]
        hi = float(max(float(m.max()) for m in mels)) if mels else 1.0
        scale = hi / 255.0 if hi > 0 else 1.0
        lengths = np.asarray([m.shape[0] for m in mels], np.int64)
        flat = np.concatenate(mels) if mels else np.zeros((0, 96), np.float32)
        q = np.clip(np.rint(flat / scale), 0, 255).astype(np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, q=q, scale=np.float32(scale), lengths=lengths, va=self.va,
                 quadrants=np.asarray(self.quadrants), song_ids=np.asarray(self.song_ids),
                 part=np.asarray(self.part))  # fmt: skip
        return path

    @classmethod
    def load(cls, path: Path) -> MelBank:
        import zipfile

        if not path.is_file() or not zipfile.is_zipfile(path):
            raise InvalidInputError(f"{path} is not a mel bank (not an .npz archive)")
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{path} is not a mel bank: {exc}") from exc
        with z:
            need = {"q", "scale", "lengths", "va", "quadrants", "song_ids", "part"}
            if not need <= set(z.files):
                raise InvalidInputError(f"{path} is not a mel bank (missing {need - set(z.files)})")
            flat = z["q"].astype(np.float32) * float(z["scale"])
            ends = np.cumsum(z["lengths"])
            mels = np.split(flat, ends[:-1]) if len(ends) else []
            return cls([np.ascontiguousarray(m) for m in mels], [str(x) for x in z["quadrants"]],
                       z["va"], [str(x) for x in z["song_ids"]],
                       [str(x) for x in z["part"]])  # fmt: skip


def _centre(m: np.ndarray, frames: int | None) -> np.ndarray:
    if frames is None or m.shape[0] <= frames:
        out: np.ndarray = np.asarray(m, np.float32)
        return out
    s = (m.shape[0] - frames) // 2
    cut: np.ndarray = np.asarray(m[s : s + frames], np.float32)
    return cut


def build_mel_bank(
    records: Sequence[Any],
    parts: Sequence[str],
    va: np.ndarray,
    *,
    progress: Progress | None = None,
) -> MelBank:
    """Log-mels of 4Q ``records`` (decoded, resampled to 16 kHz, musicnn's front end)."""
    from storycue.audio.decode import load_audio
    from storycue.audio.mel import MelFrontend
    from storycue.errors import AudioDecodeError

    front = MelFrontend().eval()
    mels: list[np.ndarray] = []
    keep: list[int] = []
    for i, rec in enumerate(records):
        try:
            wave = load_audio(rec.audio_path).waveform
        except AudioDecodeError as exc:
            log.warning("mel_bank_clip_skipped", song=rec.song_id, error=str(exc))
            continue
        with torch.inference_mode():
            mel = front.logmel_long(torch.from_numpy(np.ascontiguousarray(wave, np.float32)))
        mels.append(mel.cpu().numpy().astype(np.float32))
        keep.append(i)
        if progress is not None:
            progress("4Q log-mels", i + 1, len(records))
    return MelBank(mels, [records[i].quadrant for i in keep], np.asarray(va)[keep],
                   [records[i].song_id for i in keep], [parts[i] for i in keep])  # fmt: skip


class _AudioTuner(nn.Module):
    def __init__(self, net: nn.Module, in_dim: int, features: Sequence[str],
                 dropout: float) -> None:  # fmt: skip
        super().__init__()
        self.net = net
        self.features = list(features)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(in_dim)
        self.cls = nn.Linear(in_dim, len(QUADRANT_ORDER))
        self.va = nn.Linear(in_dim, 2)

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(patches)
        z = self.drop(self.norm(torch.cat([out[k].float() for k in self.features], dim=1)))
        return self.cls(z), torch.sigmoid(self.va(z))


def _patches(mel: np.ndarray, frames: int) -> np.ndarray:
    """Non-overlapping ``frames``-long patches covering the clip (repeat-padded if short)."""
    if mel.shape[0] < frames:
        mel = np.tile(mel, (math.ceil(frames / max(1, mel.shape[0])), 1))[:frames]
    n = mel.shape[0] // frames
    return mel[: n * frames].reshape(n, frames, mel.shape[1])


def finetune_audio(
    backbone: Any,
    bank: MelBank,
    config: AudioFinetuneConfig | None = None,
    *,
    data_info: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> FinetuneResult:
    """Fine-tune every layer of ``backbone`` (a :class:`MusicnnBackbone`) on ``bank``'s
    ``train`` clips, early-stopping on its ``validation`` clips; returns the delta of the
    whole network (float32: the network is small). The backbone is left holding it."""
    from storycue.audio.mel import PATCH_FRAMES

    cfg = config or AudioFinetuneConfig()
    cfg.check()
    if is_finetuned_name(backbone.name):
        raise InvalidInputError(f"{backbone.name} is already fine-tuned; fine-tune its base")
    dims = backbone.spec.feature_dims
    missing = [f for f in cfg.features if f not in dims]
    if missing:
        raise InvalidInputError(f"{backbone.name} has no outputs {missing}; has {sorted(dims)}")
    train, val = bank.select("train"), bank.select("validation")
    if len(train) == 0 or len(val) == 0:
        raise InvalidInputError("audio fine-tuning needs train and validation clips")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if cfg.max_clips is not None and len(train) > cfg.max_clips:
        train = train.subset(sorted(rng.choice(len(train), cfg.max_clips, replace=False)))
    device: torch.device = backbone.device
    net: nn.Module = backbone.net
    in_dim = int(sum(dims[f] for f in cfg.features))
    tuner = _AudioTuner(net, in_dim, cfg.features, cfg.dropout).to(device)
    q_index = {q: i for i, q in enumerate(QUADRANT_ORDER)}
    y_tr = np.asarray([q_index[q] for q in train.quadrants], np.int64)
    y_va = np.asarray([q_index[q] for q in val.quadrants], np.int64)
    head_params = [p for n, p in tuner.named_parameters() if not n.startswith("net.")]
    opt = torch.optim.AdamW(
        [{"params": list(net.parameters()), "lr": cfg.lr},
         {"params": head_params, "lr": cfg.head_lr}],
        weight_decay=cfg.weight_decay,
    )  # fmt: skip
    val_patches = [_patches(m, PATCH_FRAMES) for m in val.mels]

    def crop(m: np.ndarray) -> np.ndarray:
        if m.shape[0] <= PATCH_FRAMES:
            first: np.ndarray = _patches(m, PATCH_FRAMES)[0]
            return first
        s = int(rng.integers(0, m.shape[0] - PATCH_FRAMES + 1))
        return m[s : s + PATCH_FRAMES]

    def evaluate() -> dict[str, float]:
        tuner.eval()
        preds: list[int] = []
        loss = 0.0
        with torch.no_grad():
            for i, p in enumerate(val_patches):
                x = torch.from_numpy(p).to(device)
                with _autocast(device, cfg.amp):
                    logits, _ = tuner(x)
                mean_logits = logits.float().mean(0)
                preds.append(int(mean_logits.argmax()))
                loss += float(
                    F.cross_entropy(mean_logits[None], torch.tensor([y_va[i]], device=device))
                )
        acc = float(np.mean(np.asarray(preds) == y_va))
        return {"quadrant_accuracy": acc,
                "balanced_accuracy": _balanced_accuracy(y_va, np.asarray(preds)),
                "val_loss": loss / len(val_patches), "score": acc}  # fmt: skip

    history: list[dict[str, float]] = []
    best_score, best_epoch, bad = -1.0, 1, 0
    best_state = copy.deepcopy({k: v.cpu() for k, v in net.state_dict().items()})
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        tuner.train()
        items = np.repeat(np.arange(len(train)), cfg.crops_per_clip)
        rng.shuffle(items)
        run = 0.0
        n_batches = math.ceil(len(items) / cfg.batch_size)
        for b in range(n_batches):
            idx = items[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            x = torch.from_numpy(np.stack([crop(train.mels[i]) for i in idx])).to(device)
            yl = torch.from_numpy(y_tr[idx]).to(device)
            yv = torch.from_numpy(train.va[idx]).to(device)
            with _autocast(device, cfg.amp):
                logits, va = tuner(x)
            loss = F.cross_entropy(logits.float(), yl) + cfg.va_weight * F.mse_loss(va.float(), yv)
            opt.zero_grad(set_to_none=True)
            cast(Any, loss).backward()  # torch types backward() in some releases only
            torch.nn.utils.clip_grad_norm_(tuner.parameters(), 5.0)
            opt.step()
            run += float(loss.detach())
            if progress is not None and (b % 10 == 0 or b == n_batches - 1):
                progress(f"fine-tuning audio, epoch {epoch + 1}/{cfg.epochs}", b + 1, n_batches)
        metrics = evaluate()
        metrics.update(epoch=epoch + 1, train_loss=run / max(1, n_batches),
                       seconds=time.perf_counter() - t0)  # fmt: skip
        history.append(metrics)
        log.info("audio_finetune_epoch", **{k: round(v, 4) for k, v in metrics.items()})
        if metrics["score"] > best_score:
            best_score, best_epoch, bad = metrics["score"], epoch + 1, 0
            best_state = copy.deepcopy({k: v.cpu() for k, v in net.state_dict().items()})
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    net.load_state_dict(best_state)
    net.eval()
    info = _delta_info(
        "quadrant cross-entropy + valence-arousal MSE on random 3 s crops", asdict(cfg),
        history, best_epoch, data_info, device,
        clips={"train": len(train), "validation": len(val)},
    )  # fmt: skip
    best_metrics: dict[str, Any] = info["metrics"]
    delta = make_delta("audio", backbone.name, net, None, dtype=torch.float32, info=info)
    delta.apply(net)
    backbone.spec = replace(backbone.spec, name=delta.name)  # see finetune_text: renamed
    backbone.name = delta.name
    log.info("audio_finetune_done", name=delta.name, best_epoch=best_epoch,
             score=round(best_score, 4))  # fmt: skip
    return FinetuneResult(delta=delta, metrics=best_metrics, history=history)


FinetuneTarget = Literal["text", "audio"]


# ---- on the project's datasets -------------------------------------------------------------
def text_examples(
    settings: Any, sources: Sequence[str], emobank_weight: float = 0.5
) -> tuple[TextExamples, TextExamples, dict[str, Any]]:
    """Train and validation examples of ``sources`` from ``settings.data_dir`` (the same
    texts, splits and VA targets the families train on), plus a description of the data."""
    from storycue.data.isear import clean_isear, read_isear, split_isear
    from storycue.data.nrc_vad import load_nrc_vad
    from storycue.data.textsets import check_text_sources, text_training_set

    sources = check_text_sources(sources)
    lexicon = load_nrc_vad(settings=settings)
    parts = {
        part: TextExamples.from_text_set(
            text_training_set(part, lexicon, sources, settings, emobank_weight)
        )
        for part in ("train", "validation")
    }
    info: dict[str, Any] = {"sources": list(sources), "emobank_weight": emobank_weight}
    if "isear" in sources:
        info["isear_split_fingerprint"] = split_isear(
            clean_isear(read_isear(settings=settings)).records
        ).fingerprint
    return parts["train"], parts["validation"], info


def fourq_mel_bank(
    settings: Any, *, parts: Sequence[str] = ("train", "validation"),
    progress: Progress | None = None,
) -> tuple[MelBank, dict[str, Any]]:  # fmt: skip
    """Log-mels of the 4Q clips of ``parts`` with quadrant and blended VA targets."""
    from storycue.data.fourq import load_fourq
    from storycue.data.nrc_vad import load_nrc_vad
    from storycue.data.splits import split_fourq
    from storycue.data.textsets import music_targets

    split = split_fourq(load_fourq(settings=settings))
    records = [r for part in parts for r in split.part(part)]
    labels = [part for part in parts for _ in split.part(part)]
    va = music_targets(records, load_nrc_vad(settings=settings), "blend")
    bank = build_mel_bank(records, labels, va, progress=progress)
    info = {"fourq_split_fingerprint": split.fingerprint, "parts": list(parts),
            "va_target": "blend"}  # fmt: skip
    return bank, info


def run_text_finetuning(
    settings: Any,
    config: TextFinetuneConfig,
    *,
    sources: Sequence[str] = ("isear", "goemotions", "emobank"),
    output_dir: Path | None = None,
    progress: Progress | None = None,
    encoder: str | None = None,
) -> tuple[FinetuneResult, Path]:
    """Fine-tune ``encoder`` (default ``settings.text_encoder``; a fine-tuned one is a warm
    start) on the project's text sets and save the delta (default folder
    ``<home>/models/encoders``, where encoders are looked up by name)."""
    from storycue.models.text import TextEncoder

    config.check()
    train_set, val_set, info = text_examples(settings, sources)
    tuned = TextEncoder(encoder or settings.text_encoder, device=settings.torch_device(),
                        backend="torch", precision="fp32")  # fmt: skip
    result = finetune_text(tuned, train_set, val_set, config, data_info=info,
                           progress=progress)  # fmt: skip
    path = result.delta.save(output_dir or Path(settings.home) / "models" / "encoders")
    return result, path


def run_audio_finetuning(
    settings: Any,
    config: AudioFinetuneConfig,
    *,
    backbone: str | None = None,
    mels: Path | None = None,
    output_dir: Path | None = None,
    progress: Progress | None = None,
) -> tuple[FinetuneResult, Path]:
    """Fine-tune ``backbone`` (default ``settings.audio_backbone``) on the 4Q train clips
    (decoded here, or read from a mel bank) and save the delta like
    :func:`run_text_finetuning`."""
    from storycue.models.musicnn import load_backbone

    config.check()
    if mels is not None:
        bank, info = MelBank.load(mels), {"mel_bank": mels.name}
    else:
        bank, info = fourq_mel_bank(settings, progress=progress)
    # A private float32 copy: fine-tuning changes the network in place.
    bb = load_backbone(backbone or settings.audio_backbone, device=settings.torch_device(),
                       weights_dir=settings.musicnn_weights_dir, precision="fp32",
                       cached=False)  # fmt: skip
    result = finetune_audio(bb, bank, config, data_info=info, progress=progress)
    path = result.delta.save(output_dir or Path(settings.home) / "models" / "encoders")
    return result, path
