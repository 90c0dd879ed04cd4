"""Results tables in the style of the paper's Table 3, from harness reports.

:func:`render_table` turns a list of reports (one per model x query set, as returned by
:func:`storycue.evaluation.harness.evaluate` and
:func:`storycue.evaluation.baseline.evaluate_baseline`) into Markdown: rows = models (the
bridge baseline last), columns = query set x mapping x {P@5, MRR, mAP} (macro averages), the
best value of each column in bold, and a caption that states the gallery, the query sets
and splits, the model versions and the command that reproduces the table.
:func:`render_diagnostics` adds the per-side diagnostics. :func:`evaluate_table` runs the
whole grid (several checkpoints + the baseline) on the real data; ``storycue evaluate
--models a,b,c`` is its command line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from storycue.config import Settings
from storycue.errors import InvalidInputError
from storycue.evaluation.harness import MAPPINGS, MappingName

#: Default query sets and metrics of the table.
TABLE_QUERY_SETS: tuple[str, ...] = ("isear-test", "goemotions-test")
TABLE_METRICS: tuple[tuple[str, str], ...] = (("p@5", "P@5"), ("mrr", "MRR"), ("ap", "mAP"))
_MAPPING_TITLES = {"manual": "manual", "va": "VA", "word": "word"}
_DIAG_COLUMNS: tuple[tuple[str, str], ...] = (
    ("music_quadrant_accuracy", "music acc"),
    ("music_quadrant_accuracy_va_rule", "music acc (VA rule)"),
    ("emobank_valence_pearson", "EmoBank V r"),
    ("emobank_arousal_pearson", "EmoBank A r"),
)


def row_key(report: dict[str, Any]) -> str:
    """The row a report belongs to: ``name version`` of its model."""
    m = report["model"]
    return f"{m['name']} {m['version']}"


def row_label(report: dict[str, Any]) -> str:
    """How a row is labelled: the family, then the model name and version."""
    m = report["model"]
    if m.get("family") == "bridge-baseline":
        return f"bridge baseline (LR text + LR music) {m['version']}"
    if m["name"] == m.get("family"):
        return f"{m['family']} {m['version']}"
    return f"{m.get('family', '?')} ({m['name']} {m['version']})"


def _rows(results: Sequence[dict[str, Any]]) -> list[str]:
    keys = list(dict.fromkeys(row_key(r) for r in results))
    baseline = [k for k in keys if k.startswith("bridge-baseline ")]
    return [k for k in keys if k not in baseline] + baseline


@dataclass(frozen=True)
class _Grid:
    """A table of reports: model rows (baselines last), query-set and mapping columns, the
    report of each (row, query set) cell and each row's label."""

    rows: list[str]
    qsets: list[str]
    maps: list[str]
    cells: dict[tuple[str, str], dict[str, Any]]
    labels: dict[str, str]


def _grid(results: Sequence[dict[str, Any]], query_sets: Sequence[str] | None, what: str) -> _Grid:
    if not results:
        raise InvalidInputError(f"{what} needs at least one report")
    qsets, maps = _columns(results, query_sets)
    return _Grid(
        rows=_rows(results),
        qsets=qsets,
        maps=maps,
        cells={(row_key(r), r["queries"]["name"]): r for r in results},
        labels={row_key(r): row_label(r) for r in results},
    )


def _columns(
    results: Sequence[dict[str, Any]], query_sets: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    qsets = list(query_sets or dict.fromkeys(r["queries"]["name"] for r in results))
    present = {m for r in results for m in r["mappings"]}
    maps = [m for m in MAPPINGS if m in present] + sorted(present - set(MAPPINGS))
    return qsets, maps


def _fmt(value: float | None, best: bool) -> str:
    if value is None:
        return "–"
    text = f"{value:.3f}"
    return f"**{text}**" if best else text


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    lines.extend("| " + " | ".join(row) + " |" for row in body)
    return lines


def caption(results: Sequence[dict[str, Any]], command: str | None = None) -> list[str]:
    """Caption lines: gallery, query sets and splits, model versions, command."""
    first = results[0]
    gal = first["gallery"]
    quads = ", ".join(f"{q} {n}" for q, n in gal.get("quadrants", {}).items())
    info = gal.get("info", {})
    where = ""
    if info.get("split_fingerprint"):
        where = (
            f" — {info.get('source', '4Q')}, part `{info.get('part')}`, seed "
            f"{info.get('split_seed')}, fractions {info.get('split_fractions')}, fingerprint "
            f"`{info['split_fingerprint']}`"
        )
    if info.get("backbone"):
        where += f"; backbone {info['backbone']}"
    lines = [f"- **Gallery**: `{gal['name']}`, {gal['count']} clips ({quads}){where}."]
    qsets = dict.fromkeys(f"`{r['queries']['name']}` ({r['queries']['count']})" for r in results)
    lines.append(
        "- **Queries**: "
        + ", ".join(qsets)
        + ". ISEAR: storycue's stratified 70/15/15 split (test part); GoEmotions: the "
        "official test split, single-label rows in the Ekman grouping (neutral dropped)."
    )
    models: dict[str, str] = {}
    for r in results:
        m = r["model"]
        sha = m.get("checkpoint_sha256") or ""
        desc = f"{m['name']} {m['version']} ({m.get('family', '?')}"
        desc += f", sha256 `{sha[:12]}`)" if sha else ")"
        models.setdefault(row_key(r), desc)
    lines.append("- **Models**: " + "; ".join(models.values()) + ".")
    lines.append(
        "- **Metrics**: macro averages (per text label, then over labels); relevance by the "
        "manual, VA (NRC VAD) and word (mood-tag centroid) mappings of EVALUATION.md. Best "
        "value of each column in bold."
    )
    if command:
        lines.append(f"- **Reproduce**: `{command}`")
    return lines


def render_table(
    results: Sequence[dict[str, Any]],
    *,
    query_sets: Sequence[str] | None = None,
    metrics: Sequence[tuple[str, str]] = TABLE_METRICS,
    command: str | None = None,
    title: str = "Text-to-music retrieval (Table 3 style)",
    diagnostics: bool = True,
) -> str:
    """A Markdown results table (module docstring) of ``results``; with ``diagnostics``
    the diagnostics table follows the caption."""
    grid = _grid(results, query_sets, "render_table")
    qsets, maps, rows, by_cell, labels = grid.qsets, grid.maps, grid.rows, grid.cells, grid.labels
    values: list[list[float | None]] = []
    header = ["model"]
    for qs in qsets:
        for mp in maps:
            for _key, title_m in metrics:
                header.append(f"{qs} {_MAPPING_TITLES.get(mp, mp)} {title_m}")
    for rk in rows:
        line: list[float | None] = []
        for qs in qsets:
            rep = by_cell.get((rk, qs))
            for mp in maps:
                for key, _ in metrics:
                    res = rep["mappings"].get(mp) if rep else None
                    line.append(float(res["macro"][key]) if res else None)
        values.append(line)
    best: list[float | None] = []
    for c in range(len(header) - 1):
        column = [v for row in values if (v := row[c]) is not None]
        best.append(max(column) if column else None)
    body = [
        [labels[rk]]
        + [
            _fmt(v, v is not None and len(rows) > 1 and v == best[c])
            for c, v in enumerate(values[i])
        ]
        for i, rk in enumerate(rows)
    ]
    out = [f"### {title}", "", *_table(header, body), "", *caption(results, command)]
    if diagnostics:
        out += ["", render_diagnostics(results, query_sets=qsets)]
    if any("continuous" in r for r in results):
        out += ["", render_reading_table(results)]
    return "\n".join(out) + "\n"


_READING_SETS: tuple[tuple[str, str], ...] = (
    ("sentences", "sentences"),
    ("fiction", "fiction"),
    ("fiction-scenes-3", "3-sent. scenes"),
    ("fiction-scenes-6", "6-sent. scenes"),
)


def _reading_rows(
    continuous: dict[str, Any],
) -> list[tuple[str, dict[str, Any] | None, str]]:
    """(label, sets or None, reason) of the model row and the probe row of a section."""
    rows: list[tuple[str, dict[str, Any] | None, str]] = []
    for key in ("model", "probe"):
        row = continuous["rows"].get(key)
        if row is None:
            continue
        label = row["name"] if key == "model" else f"{row['name']} (baseline)"
        if not row.get("available", False):
            rows.append((label, None, str(row.get("reason", ""))))
        else:
            rows.append((label, row["sets"], ""))
    return rows


def render_reading_table(results: Sequence[dict[str, Any]]) -> str:
    """Markdown: how each model's text side reads prose (EmoBank ratings, Pearson r and
    Spearman ρ for valence and arousal per set), the frozen-encoder probe last, and the
    arousal-in-matching measures."""
    sections = [r for r in results if "continuous" in r]
    if not sections:
        raise InvalidInputError("no report carries a continuous section")
    header = ["model"]
    for _key, title in _READING_SETS:
        header += [f"{title} V r", f"{title} A r", f"{title} V ρ", f"{title} A ρ"]
    body: list[list[str]] = []
    notes: list[str] = []
    rows = [r for rep in sections for r in _reading_rows(rep["continuous"])]
    models = [r for r in rows if not r[0].endswith("(baseline)")]
    probe = [r for r in rows if r[0].endswith("(baseline)")][:1]  # one probe, last
    for label, sets, reason in [*models, *probe]:
        if sets is None:
            body.append([label, *(["–"] * (len(header) - 1))])
            notes.append(f"{label}: {reason}.")
            continue
        cells = [label]
        for key, _title in _READING_SETS:
            res = sets.get(key)
            for stat in ("valence_pearson", "arousal_pearson", "valence_spearman",
                         "arousal_spearman"):  # fmt: skip
                cells.append(_fmt(res[stat], False) if res else "–")
        body.append(cells)
    first = sections[0]["continuous"]
    counts = ", ".join(f"{k} {v['count']}" for k, v in first["sets"].items())
    probe = first["probe"]
    lines = [
        "#### Reading prose: valence and arousal against EmoBank ratings",
        "",
        *_table(header, body),
        "",
        f"EmoBank {first['part']} ({counts}); scenes are non-overlapping windows of "
        "consecutive fiction sentences of one document, joined, against their mean rating. "
        f"Baseline: ridge regression on the frozen {probe['encoder']} (alpha {probe['alpha']:g}, "
        f"chosen on {probe['alpha_chosen_on']}; trained on {probe['trained_on']}).",
        *notes,
    ]
    matching = [(row_label(r), r.get("matching", {})) for r in sections]
    m_rows = [
        (label, m["emobank"]) for label, m in matching if m.get("available") and "emobank" in m
    ]
    if m_rows:
        lines += [
            "",
            "#### Arousal in matching (EmoBank sentences against the gallery)",
            "",
            *_table(
                [
                    "model",
                    "within-quadrant ρ (gentle / strong)",
                    "high-arousal top-5 in Q1/Q2",
                    "low-arousal top-5 in Q3/Q4",
                ],
                [
                    [
                        label,
                        f"{_fmt(m['within_quadrant_spearman'], False)} ("
                        f"{_fmt(m.get('within_quadrant_spearman_gentle'), False)} / "
                        f"{_fmt(m.get('within_quadrant_spearman_strong'), False)})",
                        f"{_fmt(m['high_arousal_top5_q12'], False)} ({m['high_arousal_queries']})",
                        f"{_fmt(m['low_arousal_top5_q34'], False)} ({m['low_arousal_queries']})",
                    ]
                    for label, m in m_rows
                ],
            ),
            "",
            "within-quadrant ρ: mean Spearman correlation, over the clips of the quadrant a "
            "sentence's reading falls in, of the model's score with closeness to the clip's "
            "tag-derived valence-arousal (AllMusic tags placed with NRC VAD); gentle / strong: "
            "the sentences whose reading lies nearer to / farther from the neutral point than "
            "the median's. High (low) "
            "arousal: EmoBank arousal ≥ 3.5 (≤ 2.5), count in brackets; the share of their "
            "top-5 clips in Q1/Q2 (Q3/Q4).",
        ]
    return "\n".join(lines)


def render_reading(report: dict[str, Any]) -> str:
    """Plain-text summary of one report's reading sections (``storycue evaluate``)."""
    lines = ["", "Reading prose (EmoBank " + str(report["continuous"]["part"]) + "):"]
    for label, sets, reason in _reading_rows(report["continuous"]):
        if sets is None:
            lines.append(f"  {label}: {reason}")
            continue
        lines.append(f"  {label}")
        for key, res in sets.items():
            lines.append(
                f"    {key:<18} n={res['n']:<5} valence r {res['valence_pearson']:.3f} "
                f"ρ {res['valence_spearman']:.3f}   arousal r {res['arousal_pearson']:.3f} "
                f"ρ {res['arousal_spearman']:.3f}"
            )
    m = report.get("matching", {})
    if m.get("available") and "emobank" in m:
        e = m["emobank"]
        lines.append(
            f"Arousal in matching: within-quadrant ρ {e['within_quadrant_spearman']:.3f} "
            f"(gentle {e['within_quadrant_spearman_gentle']:.3f}, strong "
            f"{e['within_quadrant_spearman_strong']:.3f}); "
            f"high-arousal sentences' top-5 in Q1/Q2 {e['high_arousal_top5_q12']:.3f} "
            f"({e['high_arousal_queries']}); low-arousal top-5 in Q3/Q4 "
            f"{e['low_arousal_top5_q34']:.3f} ({e['low_arousal_queries']})"
        )
    elif m:
        lines.append(f"Arousal in matching: {m.get('reason', 'unavailable')}")
    st = report.get("stories")
    if st and st.get("available"):
        for key in ("model", "probe"):
            r = st[key]
            lines.append(
                f"Stories ({st['count']}), {r['name']}: quadrant {r['quadrant_agreement']:.3f}, "
                f"valence side {r['valence_side_agreement']:.3f}, arousal side "
                f"{r['arousal_side_agreement']:.3f}, valence r {r['valence_pearson']:.3f}, "
                f"arousal r {r['arousal_pearson']:.3f}"
            )
        if "top5_intended_quadrant" in st:
            lines.append(
                f"  top-5 clips in the intended quadrant: {st['top5_intended_quadrant']:.3f}"
            )
    elif st:
        lines.append(f"Stories: {st.get('reason', 'unavailable')}")
    return "\n".join(lines)


def render_diagnostics(
    results: Sequence[dict[str, Any]], *, query_sets: Sequence[str] | None = None
) -> str:
    """Markdown table of the per-side diagnostics: text accuracy per query set (on its own
    labels), music quadrant accuracy on the gallery, EmoBank correlations (VA models)."""
    grid = _grid(results, query_sets, "render_diagnostics")
    qsets, rows, by_cell, labels = grid.qsets, grid.rows, grid.cells, grid.labels
    header = ["model", *(f"{qs} text acc" for qs in qsets), *(t for _, t in _DIAG_COLUMNS)]
    body: list[list[str]] = []
    for rk in rows:
        reps = [by_cell.get((rk, qs)) for qs in qsets]
        cells = [labels[rk]]
        for rep in reps:
            v = rep["diagnostics"].get("text_accuracy") if rep else None
            cells.append(_fmt(v, False))
        first = next((r for r in reps if r is not None), None)
        for key, _ in _DIAG_COLUMNS:
            v = first["diagnostics"].get(key) if first else None
            cells.append(_fmt(v, False))
        body.append(cells)
    note = (
        "Diagnostics: text acc = emotion classification accuracy on the query set's labels "
        "(the model's own classifier, else the nearest label prototype of the training "
        "texts); music acc = nearest quadrant prototype of the 4Q train clips (the baseline: "
        "its classifiers); VA rule = quadrant of the clip's VA point; EmoBank r = Pearson "
        "correlation of the text head's valence / arousal with EmoBank test ratings."
    )
    return "\n".join(["#### Diagnostics", "", *_table(header, body), "", note])


Progress = Callable[[str, int, int], None]


def evaluate_table(
    models: Sequence[str],
    settings: Settings,
    *,
    query_sets: Sequence[str] = TABLE_QUERY_SETS,
    split: str = "test",
    mappings: Sequence[MappingName] = MAPPINGS,
    baseline: bool = True,
    progress: Progress | None = None,
    reading: bool = False,
    stories: Sequence[Any] | None = None,
) -> list[dict[str, Any]]:
    """Evaluate each model (name or checkpoint path) and, with ``baseline``, the bridge
    baseline on every query set against one 4Q split part; the reports, in row order.

    All models must read the same audio backbone (the gallery is built once).
    """
    from storycue.evaluation.baseline import evaluate_baseline, fit_bridge_baseline
    from storycue.evaluation.harness import evaluate, fourq_gallery, load_queries
    from storycue.models.emotion import load_configured_model
    from storycue.models.finetuned import base_of, is_finetuned_name

    if not models and not baseline:
        raise InvalidInputError("nothing to evaluate: give models or keep the baseline")
    loaded = [load_configured_model(settings, m) for m in models]
    backbones = {(m.info.audio_backbone, m.info.audio_backbone_version) for m in loaded}
    if len(backbones) > 1:
        raise InvalidInputError(f"the models read different audio backbones: {backbones}")
    if loaded:
        backbone = loaded[0].audio_backbone()
        encoder = loaded[0].text_encoder
        for m in loaded[1:]:
            if m.info.text_encoder == loaded[0].info.text_encoder:
                m.use_text_encoder(encoder)
    else:
        from storycue.models.musicnn import load_backbone
        from storycue.models.text import TextEncoder

        backbone = load_backbone(settings.audio_backbone, weights_dir=settings.musicnn_weights_dir)
        encoder = TextEncoder(
            settings.text_encoder,
            device=settings.torch_device(),
            batch_size=settings.batch.text,
            max_tokens=settings.text_max_tokens,
        )
    gallery = fourq_gallery(split, backbone, settings, progress=progress)
    # The bridge baseline is defined on the *frozen* pretrained features
    # (../shared/EVALUATION.md): models on fine-tuned encoders are compared with the
    # baseline of their bases, never with a baseline that inherits their fine-tuning.
    base_encoder, base_backbone, base_gallery = encoder, backbone, gallery
    if baseline and is_finetuned_name(encoder.name):
        from storycue.models.text import TextEncoder

        base_encoder = TextEncoder(
            base_of(encoder.name),
            device=settings.torch_device(),
            batch_size=settings.batch.text,
            max_tokens=settings.text_max_tokens,
        )
    if baseline and is_finetuned_name(backbone.name):
        from storycue.models.musicnn import load_backbone

        base_backbone = load_backbone(
            base_of(backbone.name), weights_dir=settings.musicnn_weights_dir
        )
        base_gallery = fourq_gallery(split, base_backbone, settings, progress=progress)
    results: list[dict[str, Any]] = []
    total = len(query_sets) * (len(loaded) + int(baseline))
    done = 0
    part: Literal["validation", "test"] = "test" if split == "test" else "validation"
    for n, qs in enumerate(query_sets):
        queries = load_queries(qs, settings)
        for model in loaded:
            # How a model reads prose does not depend on the query set: once per model.
            results.append(
                evaluate(
                    model, queries, gallery, settings, mappings=mappings,
                    reading=reading and n == 0, reading_part=part,
                    stories=stories if n == 0 else None,
                )
            )  # fmt: skip
            done += 1
            if progress is not None:
                progress("evaluations", done, total)
        if baseline:
            fitted = fit_bridge_baseline(settings, qs, base_backbone, text_encoder=base_encoder)
            results.append(
                evaluate_baseline(
                    fitted,
                    queries,
                    base_gallery,
                    settings,
                    text_encoder=base_encoder,
                    mappings=mappings,
                )
            )
            done += 1
            if progress is not None:
                progress("evaluations", done, total)
    return results


@dataclass(frozen=True)
class TableReport:
    """A Table-3 run: the reports of every row, the Markdown table and the command that
    reproduces it."""

    models: list[str]
    query_sets: list[str]
    command: str
    results: list[dict[str, Any]]
    markdown: str

    def to_json(self) -> dict[str, Any]:
        return {"command": self.command, "reports": self.results}

    def write(self, output: Path) -> list[Path]:
        """The Markdown table at ``output`` and the reports beside it (``.json``)."""
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(self.markdown, encoding="utf-8")
        beside = output.with_suffix(".json")
        beside.write_text(json.dumps(self.to_json(), indent=2), encoding="utf-8")
        return [output, beside]


def mapping_names(mapping: str) -> tuple[MappingName, ...]:
    """The mappings a ``--mapping`` value names (``all``: every one)."""
    chosen = MAPPINGS if mapping == "all" else (mapping,)
    for m in chosen:
        if m not in MAPPINGS:
            raise InvalidInputError(f"unknown mapping {m!r}; choose manual, va, word or all")
    return cast(tuple[MappingName, ...], tuple(chosen))


def table_report(
    settings: Settings,
    models: Sequence[str],
    *,
    query_sets: Sequence[str] | None = None,
    split: str = "test",
    mapping: str = "all",
    baseline: bool = True,
    reading: bool = True,
    stories: Sequence[Any] | None = None,
    progress: Progress | None = None,
) -> TableReport:
    """``storycue evaluate --table``: several models and the bridge baseline on every query
    set (default :data:`TABLE_QUERY_SETS`) against one 4Q split part, Table-3 style."""
    from storycue.evaluation.harness import QUERY_SETS

    names = [m for m in models if m]
    qsets = list(query_sets or TABLE_QUERY_SETS)
    unknown = [q for q in qsets if q not in QUERY_SETS]
    if unknown:
        raise InvalidInputError(f"unknown query set(s) {unknown}; choose from {QUERY_SETS}")
    command = (
        f"storycue evaluate --models {','.join(names)} --queries {','.join(qsets)} "
        f"--split {split} --mapping {mapping}" + ("" if baseline else " --no-baseline")
    )
    results = evaluate_table(
        names,
        settings,
        query_sets=qsets,
        split=split,
        mappings=mapping_names(mapping),
        baseline=baseline,
        progress=progress,
        reading=reading,
        stories=stories,
    )
    markdown = render_table(results, query_sets=qsets, command=command)
    return TableReport(names, qsets, command, results, markdown)


@dataclass(frozen=True)
class OneReport:
    """``storycue evaluate`` of one model on one query set: the report and what made it."""

    result: dict[str, Any]
    model: Any
    queries: Any
    gallery: Any


def evaluate_one(
    settings: Settings,
    model_name: str,
    queries: str,
    *,
    gallery_dir: Path | None = None,
    metadata_csv: Path | None = None,
    split: str = "test",
    mappings: Sequence[MappingName] = MAPPINGS,
    reading: bool = True,
    stories: Sequence[Any] | None = None,
    progress: Progress | None = None,
) -> OneReport:
    """One model against a gallery: a folder of clips with its metadata CSV, or the 4Q
    split part ``split``; the harness report (retrieval per mapping, diagnostics and, with
    ``reading``, how the text side reads prose on the matching EmoBank part)."""
    from storycue.evaluation.harness import evaluate, folder_gallery, fourq_gallery, load_queries
    from storycue.models.emotion import load_configured_model

    if (gallery_dir is None) != (metadata_csv is None):
        raise InvalidInputError("--gallery and --metadata go together")
    model = load_configured_model(settings, model_name)
    backbone = model.audio_backbone()
    if gallery_dir is not None and metadata_csv is not None:
        gallery = folder_gallery(gallery_dir, metadata_csv, backbone, settings, progress=progress)
    else:
        gallery = fourq_gallery(split, backbone, settings, progress=progress)
    query_set = load_queries(queries, settings)
    result = evaluate(
        model,
        query_set,
        gallery,
        settings,
        mappings=mappings,
        reading=reading,
        reading_part="test" if split == "test" else "validation",
        stories=stories,
    )
    return OneReport(result, model, query_set, gallery)
