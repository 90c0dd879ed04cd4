"""Model cards: a Markdown page written beside every shipped checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from storycue.errors import StorycueError
from storycue.models.checkpoints import CheckpointInfo
from storycue.models.finetuned import base_of, find_delta, is_finetuned_name


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _tuning(encoder: str) -> str:
    if not is_finetuned_name(encoder):
        return "frozen"
    return f"fine-tuned from {base_of(encoder)}; the delta's metadata holds how"


def _finetuning_lines(info: CheckpointInfo) -> list[str]:
    """What the fine-tuned encoders of ``info`` were trained on, read from their deltas."""
    lines: list[str] = []
    for kind, name in (("text", info.text_encoder), ("audio", info.audio_backbone)):
        if not is_finetuned_name(name):
            continue
        try:
            delta = find_delta(name, "text" if kind == "text" else "audio")
        except StorycueError:
            lines.append(f"- {kind} encoder `{name}`: delta not found on this machine")
            continue
        d = delta.info
        cfg = d.get("config", {})
        metrics = {k: round(v, 4) if isinstance(v, float) else v
                   for k, v in d.get("metrics", {}).items()}  # fmt: skip
        lines += [
            f"- {kind} encoder `{name}`: {delta.n_params:,} values fine-tuned from "
            f"`{delta.base}` ({d.get('objective', '')}), on {d.get('device', '?')}, "
            f"{d.get('created', '')}",
            f"  - data: `{d.get('data', {})}`; examples/clips: "
            f"`{d.get('examples') or d.get('clips')}`",
            f"  - configuration: `{cfg}`",
            f"  - best validation epoch: `{metrics}`",
        ]
    return lines


def render_model_card(info: CheckpointInfo, sha256: str, extra: str = "") -> str:
    """A model card: identity, architecture, data and licences, metrics, limitations."""
    ident = info.identity
    t = info.training
    axes = "valence, arousal" if info.va_axes else "learned"
    distance = str(info.distance)
    if info.va_centre is not None:
        c = info.va_centre
        distance = (
            f"dot of the offsets from the neutral point ({c:g}, {c:g}) (circumplex score; "
            f"vectors are valence − {c:g}, arousal − {c:g})"
        )
        if info.va_quadrant_sharpness is not None:
            distance = (
                f"dot of soft quadrant memberships (vectors: Q1..Q4 memberships, products of "
                f"sigmoid(±{info.va_quadrant_sharpness:g}·(axis − {c:g})) over valence and "
                "arousal; the score is the probability that text and clip share a quadrant)"
            )
        if info.va_proximity is not None:
            distance = (
                f"dot of 8-d vectors whose inner product is the soft-quadrant agreement "
                f"(sharpness {info.va_quadrant_sharpness:g}) minus {info.va_proximity:g} × "
                "the squared distance of the two valence-arousal points, so clips of one "
                "quadrant rank by closeness to the text"
            )
    if info.va_quadrant_sharpness is not None:
        axes = "soft quadrant memberships Q1..Q4 of a valence-arousal point"
        if info.va_proximity is not None:
            axes += ", its scaled offsets from the neutral point and two bias axes"
    lines = [
        f"# Model card: `{ident.name}` {ident.version}",
        "",
        "| field | value |",
        "|---|---|",
        f"| family | {info.family} |",
        f"| embedding dimension | {ident.dim} ({axes}) |",
        f"| distance | {distance} |",
        f"| text encoder | {info.text_encoder} ({info.text_pooling} pooling, "
        f"{_tuning(info.text_encoder)}) |",
        f"| audio backbone | {info.audio_backbone} {info.audio_backbone_version} "
        f"({_tuning(info.audio_backbone)}), "
        f"features {' + '.join(info.audio_features)} pooled over 3 s patches |",
        "| heads | "
        + "; ".join(
            f"{role}: {c.in_dim}→{'→'.join(str(h) for h in c.hidden)}→{c.out_dim} ({c.output})"
            for role, c in info.heads.items()
        )
        + " |",
        *(
            [
                f"| text calibration | valence − {info.va_text_shift[0]:.4f}, arousal − "
                f"{info.va_text_shift[1]:.4f} before scoring (fitted on EmoBank dev, "
                f"from {t.get('calibration', {}).get('from', '?')}) |"
            ]
            if info.va_text_shift is not None
            else []
        ),
        f"| checkpoint sha256 | `{sha256}` |",
        f"| created | {info.created} |",
        "",
        "## Training data",
        "",
    ]
    split = t.get("fourq_split", {})
    if split:
        lines.append(
            f"- 4Q clips, storycue's artist-disjoint split (seed {split.get('seed')}, "
            f"fingerprint `{split.get('fingerprint')}`): "
            + ", ".join(f"{p} {sum(c.values())}" for p, c in split.get("counts", {}).items())
            + " clips."
        )
    for part, n in t.get("text_examples", {}).items():
        lines.append(f"- text examples ({part}): {n}")
    cfg = t.get("config", {})
    if cfg:
        lines.append(f"- text sources: {', '.join(cfg.get('text_sources', []))}")
        lines.append(f"- configuration: `{cfg}`")
    tuned = _finetuning_lines(info)
    if tuned:
        lines += ["", "### Fine-tuned encoders", "", *tuned]
    lines += ["", "## Licences", "", "| component | licence |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in info.licences.items()]
    lines += ["", "## Metrics", ""]
    lines.append(
        "Macro-averaged (../shared/EVALUATION.md); gallery = storycue's 4Q split part named in "
        "the row, queries = the named text split."
    )
    lines += [
        "",
        "| queries → gallery | mapping | P@5 | P@10 | MRR | mAP | R-prec |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, res in info.metrics.items():
        if key == "reading":
            continue
        for mapping, m in res.items():
            if mapping == "diagnostics":
                continue
            lines.append(
                f"| {key} | {mapping} | {_fmt(m.get('p@5'))} | {_fmt(m.get('p@10'))} | "
                f"{_fmt(m.get('mrr'))} | {_fmt(m.get('ap'))} | {_fmt(m.get('r_precision'))} |"
            )
    reading = info.metrics.get("reading", {})
    if reading:
        lines += [
            "",
            "Reading prose (Pearson r of the text side's valence / arousal against EmoBank "
            "ratings; the frozen-encoder ridge probe in brackets; scenes: Spearman ρ of "
            "valence over 6 consecutive fiction sentences):",
            "",
            "| EmoBank part | sentences V r | sentences A r | fiction V r | 6-sent. scenes V ρ |",
            "|---|---|---|---|---|",
        ]
        for part, rows in reading.items():
            m, p = rows.get("model", {}), rows.get("probe", {})

            def cell(key: str, stat: str, m: dict[str, Any] = m, p: dict[str, Any] = p) -> str:
                return f"{_fmt(m.get(key, {}).get(stat))} ({_fmt(p.get(key, {}).get(stat))})"

            lines.append(
                f"| {part} | {cell('sentences', 'valence_pearson')} | "
                f"{cell('sentences', 'arousal_pearson')} | {cell('fiction', 'valence_pearson')} "
                f"| {cell('fiction-scenes-6', 'valence_spearman')} |"
            )
    diag = {
        k: v.get("diagnostics")
        for k, v in info.metrics.items()
        if k != "reading" and v.get("diagnostics")
    }
    if diag:
        lines += ["", "Diagnostics:", ""]
        lines += [
            f"- {k}: " + ", ".join(f"{a} {_fmt(b)}" for a, b in d.items()) for k, d in diag.items()
        ]
    lines += [
        "",
        "## Intended use and limitations",
        "",
        "- Ranks music of a catalogue by how well its mood fits a text passage; a ranking aid "
        "for people choosing music, not a classifier of anyone's feelings.",
        "- Trained on English text and on ~30 s Western popular-music previews (4Q, AllMusic); "
        "other languages, genres and long-form audio are outside what was measured.",
        "- The numbers above use 108-clip galleries: differences of a few points are within "
        "seed-to-seed variation. Compare rows across query sets to see how the text side "
        "generalises beyond the text data it was trained on.",
    ]
    if extra:
        lines += ["", extra.strip()]
    return "\n".join(lines) + "\n"


def write_model_card(info: CheckpointInfo, checkpoint: Path, sha256: str, extra: str = "") -> Path:
    path = checkpoint.with_suffix(".md")
    path.write_text(render_model_card(info, sha256, extra), encoding="utf-8")
    return path
