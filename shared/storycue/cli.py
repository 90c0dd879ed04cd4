"""The ``storycue`` command line: ingest music, match stories, train and evaluate models.

Everything runs in one process on the configured stores (embedded defaults: a SQLite file
and Qdrant's local mode under ``STORYCUE_HOME``). Output for people goes to stdout; logs
go to stderr.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from storycue.audio.synthetic import synthesise_clips
from storycue.config import Settings, get_settings
from storycue.errors import InvalidInputError, StorycueError
from storycue.log import configure_logging, get_logger

app = typer.Typer(
    name="storycue",
    help="Find music whose emotion matches a story.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)
log = get_logger("storycue.cli")

#: Stories of the story set (``resources/stories.jsonl``) that ``storycue demo`` cues, each
#: a few scenes whose mood turns.
DEMO_STORIES: tuple[str, ...] = (
    "A Christmas Carol",
    "The Little Match Girl",
    "The Ugly Duckling",
    "The Tell-Tale Heart",
)


def _settings() -> Settings:
    s = get_settings()
    configure_logging(s.log_level, s.log_format)
    return s


@contextmanager
def _progress(enabled: bool = True) -> Iterator[Progress]:
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    # Bars on a terminal; elsewhere (a log file, CI) the reporter writes plain lines.
    disable = not enabled or not err.is_terminal
    with Progress(*columns, console=err, disable=disable, transient=False) as progress:
        yield progress


#: Plain progress lines (stderr not a terminal): at most one per stage every this many
#: seconds, plus every 10 % and the last step.
PLAIN_PROGRESS_SECONDS = 5.0


def _stage_reporter(progress: Progress) -> Callable[[str, int, int], None]:
    """A ``(stage, done, total)`` callback showing one progress bar per stage on stderr, or
    plain ``stage: done/total`` lines there when stderr is not a terminal (always on stderr,
    so ``--json`` output on stdout stays clean)."""
    tasks: dict[str, Any] = {}
    plain: dict[str, tuple[float, int]] = {}

    def report(what: str, done: int, total: int) -> None:
        if progress.disable:
            if not progress.console.is_terminal:
                now = time.monotonic()
                last_t, last_decile = plain.get(what, (-1e9, -1))
                decile = int(10 * done / max(total, 1))
                if done >= total or decile > last_decile or now - last_t >= PLAIN_PROGRESS_SECONDS:
                    plain[what] = (now, decile)
                    err.print(f"{what}: {done}/{total}", highlight=False)
            return
        if what not in tasks:
            tasks[what] = progress.add_task(what, total=total)
        progress.update(tasks[what], completed=done)

    return report


def _fail(exc: StorycueError) -> typer.Exit:
    err.print(f"[bold red]error[/] ({exc.code}): {exc.message}")
    return typer.Exit(code=2)


# ---- commands -----------------------------------------------------------------------------------
@app.command()
def ingest(
    folder: Annotated[
        Path, typer.Argument(help="Folder of audio (searched recursively) or a file.")
    ],
    catalogue: Annotated[str, typer.Option(help="Catalogue to add the tracks to.")] = "default",
    metadata: Annotated[
        Path | None,
        typer.Option(
            help="CSV with Song, Title, Artist, MoodsStrSplit columns (4Q format); "
            "default: metadata.csv in the folder when present."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="Ingest at most this many files (0 = all).")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Embed every audio file under FOLDER and store it; re-ingest is idempotent."""
    from storycue.pipeline.engine import (
        Engine,
        find_audio_files,
        read_catalogue_metadata,
        spread,
    )

    settings = _settings()
    try:
        files = find_audio_files(folder)
        if limit > 0:
            files = spread(files, limit)
        meta_path = metadata or (folder / "metadata.csv" if folder.is_dir() else None)
        meta = read_catalogue_metadata(meta_path) if meta_path and meta_path.is_file() else {}
        engine = Engine(settings)
        with _progress(not json_out) as progress:
            task = progress.add_task("ingesting", total=len(files))
            report = engine.ingest(
                files,
                catalogue=catalogue,
                meta=meta,
                progress=lambda done, total, name: progress.update(task, completed=done),
            )
    except StorycueError as exc:
        raise _fail(exc) from exc
    if json_out:
        out.print_json(json.dumps(report.to_dict()))
        return
    out.print(
        f"catalogue [bold]{report.catalogue}[/]: {report.scanned} files, {report.embedded} "
        f"embedded, {report.already_present} already present, {len(report.failed)} failed"
    )
    for uri, reason in report.failed:
        out.print(f"  [red]skipped[/] {uri}: {reason}")


@app.command()
def match(
    text: Annotated[str | None, typer.Argument(help="Story text (or use --file).")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Read the story from a UTF-8 file.")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Tracks per segment.")] = 5,
    catalogue: Annotated[str | None, typer.Option(help="Only tracks of this catalogue.")] = None,
    distinct: Annotated[
        bool,
        typer.Option(
            "--distinct/--repeats",
            help="Cue each track at most once in the sheet (a later scene gets its best "
            "tracks not cued before it), or let scenes that read alike share tracks.",
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the cue sheet as JSON.")] = False,
) -> None:
    """Match a story (any length) to music: a cue sheet with top-k tracks per scene."""
    from storycue.pipeline.engine import Engine, read_story_file

    settings = _settings()
    try:
        if (text is None) == (file is None):
            raise InvalidInputError("give the story either as TEXT or with --file, not both")
        story = read_story_file(file, settings.limits.max_story_chars * 4) if file else str(text)
        sheet = Engine(settings).match(story, top_k=top_k, catalogue=catalogue, distinct=distinct)
    except StorycueError as exc:
        raise _fail(exc) from exc
    if json_out:
        out.print_json(sheet.model_dump_json())
    else:
        out.print(sheet.preview(), highlight=False, markup=False)


@app.command()
def models(
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the emotion models available (shipped, in STORYCUE_MODEL_DIR and in
    <home>/models)."""
    from storycue.models.checkpoints import (
        checkpoint_info,
        find_checkpoint,
        list_checkpoints,
        model_search_dirs,
        model_summary,
    )

    settings = _settings()
    try:
        default = find_checkpoint(settings.emotion_model, settings).resolve()
    except StorycueError:
        default = None  # a misconfigured default is reported by the commands that load it
    rows = []
    for path in list_checkpoints(model_search_dirs(settings)):
        info = checkpoint_info(path)
        rows.append(
            {"path": str(path), **model_summary(info), "default": path.resolve() == default}
        )
    if json_out:
        out.print_json(json.dumps(rows))
        return
    table = Table(
        "name", "version", "dim", "family", "distance", "text encoder", "audio", "default"
    )
    for r in rows:
        ident = r["identity"]
        table.add_row(
            ident["name"],
            ident["version"],
            str(ident["dim"]),
            r["family"],
            r["distance"],
            r["text_encoder"],
            f"{r['audio_backbone']} ({'+'.join(r['audio_features'])})",
            "*" if r["default"] else "",
        )
    out.print(table)


@app.command()
def demo(
    folder: Annotated[
        Path | None,
        typer.Argument(
            help="Music folder; default ../shared/data/4q when present, else synthetic clips."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="Ingest at most this many clips (0 = all).")] = 200,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1)] = 3,
    serve_after: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Then serve the studio web page (http://HOST:PORT/studio) on the demo "
            "catalogue until Ctrl-C, its music folder playable.",
        ),
    ] = False,
) -> None:
    """Ingest a music folder and print cue sheets for four public-domain stories whose mood
    turns from scene to scene (passages of storycue's story set)."""
    settings = _settings()
    synthetic = False
    if folder is None:
        if settings.data_dir is not None and (settings.data_dir / "4q").is_dir():
            folder = settings.data_dir / "4q"
        else:
            folder = settings.home / "synthetic-clips"
            synthesise_clips(folder)
            synthetic = True
            out.print(f"No music folder found: using synthetic clips in {folder} (SYNTHETIC).")
    out.print(f"[bold]1. Ingesting[/] {folder} (limit {limit or 'none'})")
    ingest(
        folder=folder,
        catalogue="demo-synthetic" if synthetic else "demo",
        metadata=None,
        limit=limit,
        json_out=False,
    )
    from storycue.evaluation.stories import load_story_set, stories_of, story_text
    from storycue.storage.factory import open_metadata_store

    name = "demo-synthetic" if synthetic else "demo"
    metadata = open_metadata_store(settings)  # the catalogue's size only: no vector store
    try:
        cat = metadata.get_catalogue(name)
        tracks = metadata.count_tracks(cat.id) if cat is not None else 0
    finally:
        metadata.close()
    stories = stories_of(load_story_set())
    for i, title in enumerate(DEMO_STORIES, start=2):
        scenes = stories[title]
        first = scenes[0]
        # No track twice in a cue sheet, where the catalogue has enough tracks for it (the
        # five synthetic clips do not: there, scenes that read alike share tracks).
        distinct = tracks >= top_k * len(scenes)
        out.print(
            f"\n[bold]{i}. {title}[/] ({first.author}, {first.year}; {len(scenes)} scenes, "
            "one paragraph each; "
            + (
                "no track cued twice)"
                if distinct
                else f"tracks may repeat: {tracks} in the catalogue)"
            )
        )
        match(
            text=story_text(scenes),
            file=None,
            top_k=top_k,
            catalogue=name,
            distinct=distinct,
            json_out=False,
        )
    url = f"http://{settings.service.host}:{settings.service.port}/studio"
    if not serve_after:
        out.print(
            f"\n[bold]Listen to it:[/] run [bold]storycue demo --serve[/] and open {url} "
            "(paste a story, play its tracks, see its arc and the catalogue's mood map)."
        )
        return
    roots = [*settings.sources.allowed_roots, folder.resolve()]
    served = settings.model_copy(
        update={"sources": settings.sources.model_copy(update={"allowed_roots": roots})}
    )
    out.print(f"\n[bold]Studio:[/] open {url} (Ctrl-C stops the server)")
    _serve(served, settings.service.host, settings.service.port)


@app.command()
def train(
    family: Annotated[
        str,
        typer.Argument(
            help="Model family: va-regression (va), classification, multihead-classification, "
            "word-regression, metric-2branch, metric-3branch."
        ),
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Checkpoint path (.safetensors).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Model name (default: the family).")] = None,
    version: Annotated[
        str, typer.Option(help="Model version recorded in the checkpoint.")
    ] = "1.0.0",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    max_epochs: Annotated[
        int | None, typer.Option(help="Upper bound on epochs (default: the family's).")
    ] = None,
    music_target: Annotated[
        str | None, typer.Option(help="VA family: clip targets blend|quadrant|tags.")
    ] = None,
    va_scoring: Annotated[
        str | None,
        typer.Option(
            help="VA family: retrieval score quadrants (soft circumplex-quadrant memberships; "
            "the default), proximity (quadrants minus a weight times the squared distance of "
            "the points, so clips of a quadrant rank by closeness), circumplex (inner "
            "product of the offsets from the neutral point) or euclid (distance between the "
            "points)."
        ),
    ] = None,
    va_proximity: Annotated[
        float | None,
        typer.Option(help="VA family, --va-scoring proximity: weight of the distance term."),
    ] = None,
    emobank_weight: Annotated[
        float | None,
        typer.Option(help="VA family: weight of EmoBank's sentences in the text head's loss."),
    ] = None,
    passage_weight: Annotated[
        float | None,
        typer.Option(
            help="VA family: weight of EmoBank's joined passages (text source "
            "emobank-passages; default: --emobank-weight)."
        ),
    ] = None,
    word_weight: Annotated[
        float | None,
        typer.Option(
            help="VA family: weight of the NRC lexicon's single words (text source "
            "nrc-words), each at its own valence and arousal."
        ),
    ] = None,
    emobank_stretch: Annotated[
        float | None,
        typer.Option(
            help="VA family: multiply EmoBank ratings' offsets from the neutral point by this "
            "(1 = as rated), putting prose on the scale of the labelled texts."
        ),
    ] = None,
    label_arousal_weight: Annotated[
        float | None,
        typer.Option(
            help="VA family: weight of the labelled texts' arousal targets (their label "
            "word's NRC arousal) against their valence targets (1 = equal)."
        ),
    ] = None,
    label_target: Annotated[
        str | None,
        typer.Option(
            help="VA family: what a labelled text's NRC position teaches the text head: "
            "position (the point, squared error; the default) or side (only its side of the "
            "neutral point on each axis, a logistic loss), leaving distances to rated prose."
        ),
    ] = None,
    rated_fit: Annotated[
        str | None,
        typer.Option(
            help="VA family: what EmoBank's ratings teach the text head: position (the "
            "stretched rating; the default) or affine (the rating up to a scale and offset "
            "per axis learned with the head: how prose ranks, not where it sits)."
        ),
    ] = None,
    text_sources: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated text sources (isear, goemotions, goemotions-labels, emobank, "
            "emobank-passages, nrc-words: the lexicon's words at their own position); "
            "default: the family's."
        ),
    ] = None,
    audio_backbone: Annotated[
        str | None,
        typer.Option(
            help="Audio backbone: MTT_musicnn, MSD_musicnn, MTT_vgg, MSD_vgg or a fine-tuned "
            "one (<base>+ft-<digest>) (default: STORYCUE_AUDIO_BACKBONE)."
        ),
    ] = None,
    text_encoder: Annotated[
        str | None,
        typer.Option(
            help="Text encoder: a hub id, a local folder or a fine-tuned encoder "
            "(<base>+ft-<digest>, see `storycue finetune`); default STORYCUE_TEXT_ENCODER."
        ),
    ] = None,
    finetune: Annotated[
        str,
        typer.Option(
            help="Fine-tune encoders first, with `storycue finetune`'s defaults (a GPU "
            "option): none, text, audio or both; deltas go to <home>/models/encoders."
        ),
    ] = "none",
    evaluate_after: Annotated[
        bool,
        typer.Option(
            "--evaluate/--no-evaluate",
            help="Score on the validation parts and store the numbers with the checkpoint.",
        ),
    ] = True,
    test: Annotated[
        bool,
        typer.Option(
            "--test",
            help="Score the test parts too: a release's one look at them (leave it off "
            "while choosing between candidates).",
        ),
    ] = False,
) -> None:
    """Train an emotion-space model on cached encoder features.

    The encoders are frozen by default. --finetune text|audio|both fine-tunes them end to
    end first (minutes on a GPU, hours on CPU); or fine-tune with `storycue finetune` and
    name the results with --text-encoder and --audio-backbone."""
    from storycue.training.release import train_release
    from storycue.training.run import TrainOptions

    settings = _settings()
    sources = [t.strip() for t in text_sources.split(",") if t.strip()] if text_sources else None
    options = TrainOptions(
        family=family,
        name=name,
        version=version,
        seed=seed,
        max_epochs=max_epochs,
        text_sources=sources,
        music_target=music_target,
        va_scoring=va_scoring,
        audio_backbone=audio_backbone,
        text_encoder=text_encoder,
        va_proximity=va_proximity,
        emobank_weight=emobank_weight,
        passage_weight=passage_weight,
        word_weight=word_weight,
        emobank_stretch=emobank_stretch,
        label_arousal_weight=label_arousal_weight,
        label_target=label_target,
        rated_fit=rated_fit,
    )
    try:
        with _progress() as progress:
            release = train_release(
                settings,
                options,
                finetune=finetune,
                evaluate=evaluate_after,
                test=test,
                output=output,
                progress=_stage_reporter(progress),
            )
    except StorycueError as exc:
        raise _fail(exc) from exc
    assert release is not None  # nothing asked to stop it
    for tuned in release.tuned:
        _report_delta(tuned.result, tuned.path)
    out.print(
        f"saved {release.path} (sha256 {release.sha256[:12]}…) and its model card {release.card}"
    )
    for key, res in release.heads.info.metrics.items():
        if key == "reading":
            for part, rows in res.items():
                m, p = rows["model"]["sentences"], rows["probe"]["sentences"]
                out.print(
                    f"  EmoBank {part}: valence r {m['valence_pearson']:.3f} (probe "
                    f"{p['valence_pearson']:.3f}), arousal r {m['arousal_pearson']:.3f} (probe "
                    f"{p['arousal_pearson']:.3f})"
                )
            continue
        line = ", ".join(
            f"{m} P@5 {r['p@5']:.3f} MRR {r['mrr']:.3f} mAP {r['ap']:.3f}"
            for m, r in res.items()
            if m != "diagnostics"
        )
        out.print(f"  {key}: {line}")


@app.command()
def calibrate(
    model_name: Annotated[
        str, typer.Argument(metavar="MODEL", help="Shipped model name or checkpoint path.")
    ],
    version: Annotated[str, typer.Option(help="Version of the calibrated model (new).")],
    axes: Annotated[
        str, typer.Option(help="Axes to calibrate: va (both), a (arousal) or v (valence).")
    ] = "va",
    fit_on: Annotated[
        str, typer.Option(help="Fit on all (dev sentences and passages) or passages only.")
    ] = "all",
    method: Annotated[
        str,
        typer.Option(
            help="mean (of reading − rating) or quantile (as many texts above the neutral "
            "point as people rated above it)."
        ),
    ] = "mean",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Checkpoint path (.safetensors).")
    ] = None,
    evaluate_after: Annotated[
        bool,
        typer.Option(
            "--evaluate/--no-evaluate",
            help="Score on the validation parts and store the numbers with the checkpoint.",
        ),
    ] = True,
    test: Annotated[
        bool,
        typer.Option("--test", help="Score the test parts too: a release's one look at them."),
    ] = False,
) -> None:
    """Calibrate the text side of a valence-arousal model on EmoBank dev: the mean offset of
    its readings of rated sentences and passages from their ratings becomes a shift stored
    in a new version (see storycue.training.calibration)."""
    settings = _settings()
    from storycue.models.checkpoints import EmotionHeads, find_checkpoint
    from storycue.models.emotion import EmotionModel
    from storycue.training.calibration import calibrated, fit_text_shift
    from storycue.training.release import save_release

    try:
        source = find_checkpoint(model_name, settings)
        base = EmotionModel(EmotionHeads.load(source), device=settings.torch_device())
        fit = fit_text_shift(
            base,
            settings,
            axes=axes,
            fit_on=fit_on,  # type: ignore[arg-type]
            method=method,  # type: ignore[arg-type]
        )
        release = save_release(
            settings,
            calibrated(base.heads, fit, version),
            encoder=base.text_encoder,
            backbone=base.audio_backbone(),
            evaluate=evaluate_after,
            test=test,
            output=output,
        )
    except StorycueError as exc:
        raise _fail(exc) from exc
    sv, sa = fit.shift
    out.print(
        f"shift valence {sv:+.4f}, arousal {sa:+.4f} (EmoBank dev: {fit.n_sentences} sentences, "
        f"{fit.n_passages} passages)"
    )
    out.print(
        f"saved {release.path} (sha256 {release.sha256[:12]}…) and its model card {release.card}"
    )


@app.command()
def evaluate(
    model: Annotated[
        str | None, typer.Option(help="Model name or checkpoint path (default: the active one).")
    ] = None,
    queries: Annotated[
        str | None,
        typer.Option(
            help="Query set: isear-test, isear-validation, goemotions-test, ... (default "
            "isear-test; with --table/--models a comma-separated list, default "
            "isear-test,goemotions-test)."
        ),
    ] = None,
    gallery: Annotated[
        Path | None, typer.Option(help="Folder of gallery audio (default: storycue's 4Q split).")
    ] = None,
    metadata: Annotated[
        Path | None, typer.Option(help="Gallery metadata CSV (Song, Quadrant, MoodsStrSplit).")
    ] = None,
    split: Annotated[str, typer.Option(help="4Q split part when no --gallery is given.")] = "test",
    mapping: Annotated[str, typer.Option(help="manual, va, word or all.")] = "all",
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the full report(s) as JSON.")
    ] = False,
    table: Annotated[
        bool,
        typer.Option(
            "--table",
            help="Table-3 mode: evaluate --models (or --model) and the bridge baseline on "
            "every query set against the 4Q split part and print a Markdown table.",
        ),
    ] = False,
    models: Annotated[
        str | None,
        typer.Option(help="Comma-separated model names or checkpoint paths (implies --table)."),
    ] = None,
    baseline: Annotated[
        bool,
        typer.Option("--baseline/--no-baseline", help="Table mode: include the bridge baseline."),
    ] = True,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the result: table mode the Markdown table (and the JSON reports "
            "beside it, same name with .json); otherwise the JSON report.",
        ),
    ] = None,
    plots: Annotated[
        Path | None,
        typer.Option(
            help="Write the paper's Figure 3 (VA plane, UMAP/2-D space) as PNGs in this folder."
        ),
    ] = None,
    continuous: Annotated[
        bool,
        typer.Option(
            "--continuous/--no-continuous",
            help="Also score how the text side reads prose: valence/arousal against EmoBank "
            "ratings (sentences, fiction, 3- and 6-sentence scenes) beside the frozen-encoder "
            "ridge probe, and arousal in matching.",
        ),
    ] = True,
    stories: Annotated[
        str | None,
        typer.Option(
            help="A story set (JSON lines: id, text, quadrant, valence, arousal) to report "
            "agreement with its intended moods; 'builtin' for storycue's own set (a test "
            "part), 'dev' for its validation part.",
        ),
    ] = None,
    reading_only: Annotated[
        bool,
        typer.Option(
            "--reading-only",
            help="Only how the text side reads prose (EmoBank and --stories, beside the "
            "probe): no gallery, no retrieval; a minute or two on a fresh install.",
        ),
    ] = False,
) -> None:
    """Score models on labelled query sets against a gallery (../shared/EVALUATION.md).

    One model: a table of macro metrics per mapping and its diagnostics. With --table or
    --models: several models plus the bridge baseline on ISEAR-test and GoEmotions-test
    against the 4Q test split, as a Markdown table in the style of the paper's Table 3.
    """
    from storycue.evaluation.plots import table_figures
    from storycue.evaluation.reading import reading_report
    from storycue.evaluation.report import evaluate_one, mapping_names, table_report
    from storycue.evaluation.stories import story_set

    settings = _settings()
    try:
        if (gallery is None) != (metadata is None):
            raise InvalidInputError("--gallery and --metadata go together")
        story_passages = story_set(stories)
        if reading_only:
            err.print("reading EmoBank and the frozen-encoder probe (a minute or two on 2 cores)")
            result = reading_report(
                settings,
                model or settings.emotion_model,
                part="test" if split == "test" else "validation",
                stories=story_passages,
            )
            if output is not None:
                output.parent.mkdir(parents=True, exist_ok=True)
                output.write_text(json.dumps(result, indent=2), encoding="utf-8")
            if json_out:
                out.print_json(json.dumps(result))
            else:
                from storycue.evaluation.report import render_reading

                ident = result["model"]
                out.print(f"{ident['name']} {ident['version']} ({ident['family']})")
                out.print(render_reading(result), markup=False, highlight=False)
            return
        mappings = mapping_names(mapping)
        if table or models:
            if gallery is not None:
                raise InvalidInputError("table mode scores the 4Q split; drop --gallery")
            names = [m.strip() for m in (models or model or settings.emotion_model).split(",")]
            qsets = [q.strip() for q in queries.split(",") if q.strip()] if queries else []
            with _progress() as progress:
                table_out = table_report(
                    settings,
                    [n for n in names if n],
                    query_sets=qsets or None,
                    split=split,
                    mapping=mapping,
                    baseline=baseline,
                    reading=continuous,
                    stories=story_passages,
                    progress=_stage_reporter(progress),
                )
            if output is not None:
                for path in table_out.write(output):
                    err.print(f"wrote {path}")
            if plots is not None:
                for path in table_figures(
                    settings, table_out.models, table_out.query_sets, split, plots
                ):
                    err.print(f"wrote {path}")
            if json_out:
                out.print_json(json.dumps(table_out.to_json()))
            else:
                print(table_out.markdown)
            return
        with _progress() as progress:
            one = evaluate_one(
                settings,
                model or settings.emotion_model,
                queries or "isear-test",
                gallery_dir=gallery,
                metadata_csv=metadata,
                split=split,
                mappings=mappings,
                reading=continuous,
                stories=story_passages,
                progress=_stage_reporter(progress),
            )
        result = one.result
        if plots is not None:
            from storycue.evaluation.plots import model_figure3

            for path in model_figure3(one.model, one.queries, one.gallery, settings, plots):
                err.print(f"wrote {path}")
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(json.dumps(result, indent=2), encoding="utf-8")
    except StorycueError as exc:
        raise _fail(exc) from exc
    if json_out:
        out.print_json(json.dumps(result))
        return
    res_table = Table("mapping", "P@5", "P@10", "MRR", "mAP", "R-prec")
    for name, res in result["mappings"].items():
        m = res["macro"]
        res_table.add_row(
            name, *(f"{m[k]:.3f}" for k in ("p@5", "p@10", "mrr", "ap", "r_precision"))
        )
    ident = result["model"]
    out.print(
        f"{ident['name']} {ident['version']} ({ident['family']}), queries "
        f"{result['queries']['name']} ({result['queries']['count']}), gallery "
        f"{result['gallery']['name']} ({result['gallery']['count']} clips) — macro averages"
    )
    out.print(res_table)
    for k, v in result.get("diagnostics", {}).items():
        out.print(f"{k}: {v:.3f}")
    for k, v in result.get("diagnostics_notes", {}).items():
        out.print(f"  ({k}: {v})", style="dim")
    if "continuous" in result:
        from storycue.evaluation.report import render_reading

        out.print(render_reading(result), markup=False, highlight=False)
    if output is not None:
        out.print(f"wrote {output}")


finetune_app = typer.Typer(
    help="Fine-tune the pretrained encoders on the emotion data (a GPU option): writes an "
    "encoder delta that `storycue train --text-encoder/--audio-backbone` then uses.",
    no_args_is_help=True,
)
app.add_typer(finetune_app, name="finetune")


def _report_delta(result: Any, path: Path) -> None:
    out.print(f"saved {path}")
    out.print(f"  name: {result.delta.name} ({result.delta.n_params:,} tensors' values)")
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.metrics.items()}
    out.print(f"  best validation: {shown}")


@finetune_app.command("text")
def finetune_text_cmd(
    layers: Annotated[
        int, typer.Option(help="Top transformer layers to train; -1 = all (full fine-tuning).")
    ] = -1,
    epochs: Annotated[int, typer.Option(help="Most epochs (early stopping on validation).")] = 6,
    lr: Annotated[float, typer.Option(help="Learning rate of the encoder.")] = 4e-5,
    batch_size: Annotated[int, typer.Option(help="Texts per step.")] = 64,
    max_tokens: Annotated[int, typer.Option(help="Tokens per text (longer are cut).")] = 128,
    va_weight: Annotated[
        float, typer.Option(help="Weight of the valence-arousal MSE against the label loss.")
    ] = 5.0,
    text_sources: Annotated[
        str,
        typer.Option(
            help="Comma-separated sources: isear,goemotions,emobank (and emobank-passages: "
            "EmoBank's sentences joined into passages, rated by the rating output too; "
            "nrc-words: the lexicon's words at their own valence and arousal)."
        ),
    ] = "isear,goemotions,emobank",
    max_examples: Annotated[
        int | None, typer.Option(help="Train on at most this many texts (quick runs).")
    ] = None,
    max_validation: Annotated[
        int | None, typer.Option(help="Validate on at most this many texts (quick runs).")
    ] = None,
    rating_weight: Annotated[
        float,
        typer.Option(
            help="Weight of the MSE on standardised EmoBank ratings (an output of their own); "
            "0 = off. With it, early stopping weighs labels and ratings alike."
        ),
    ] = 0.0,
    max_per_source: Annotated[
        int | None,
        typer.Option(help="At most this many training texts per source (e.g. on a CPU)."),
    ] = None,
    init: Annotated[
        str | None,
        typer.Option(
            help="Start from this fine-tuned encoder (<base>+ft-<digest>) instead of its "
            "pretrained base; the new delta still applies to the base alone."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Folder for the delta file.")
    ] = None,
) -> None:
    """Fine-tune the text encoder (label cross-entropy + valence-arousal regression, and
    with --rating-weight EmoBank's standardised ratings)."""
    from storycue.training.finetune import TextFinetuneConfig, run_text_finetuning

    settings = _settings()
    try:
        cfg = TextFinetuneConfig(layers=layers, epochs=epochs, lr=lr, batch_size=batch_size,
                                 max_tokens=max_tokens, max_examples=max_examples,
                                 max_validation=max_validation, va_weight=va_weight,
                                 rating_weight=rating_weight, max_per_source=max_per_source,
                                 selection="labels+ratings" if rating_weight > 0 else "labels",
                                 seed=seed)  # fmt: skip
        sources = [t.strip() for t in text_sources.split(",") if t.strip()]
        with _progress() as progress:
            result, path = run_text_finetuning(settings, cfg, sources=sources, output_dir=output,
                                               progress=_stage_reporter(progress),
                                               encoder=init)  # fmt: skip
    except StorycueError as exc:
        raise _fail(exc) from exc
    _report_delta(result, path)


@finetune_app.command("export-mels")
def finetune_export_mels(
    output: Annotated[Path, typer.Argument(help="Mel bank file to write (.npz).")],
    max_frames: Annotated[
        int | None,
        typer.Option(help="Keep each clip's central frames only (62.5 frames per second)."),
    ] = None,
) -> None:
    """Write the 4Q train+validation log-mels (8-bit) for fine-tuning on another machine."""
    from storycue.training.finetune import fourq_mel_bank

    settings = _settings()
    try:
        with _progress() as progress:
            bank, _ = fourq_mel_bank(settings, progress=_stage_reporter(progress))
        path = bank.save(output, max_frames=max_frames)
    except StorycueError as exc:
        raise _fail(exc) from exc
    out.print(f"saved {len(bank)} clips to {path} ({path.stat().st_size / 1e6:.1f} MB)")


@finetune_app.command("audio")
def finetune_audio_cmd(
    backbone: Annotated[
        str | None, typer.Option(help="Backbone to fine-tune (default STORYCUE_AUDIO_BACKBONE).")
    ] = None,
    mels: Annotated[
        Path | None,
        typer.Option(help="A mel bank from `export-mels` (default: decode the 4Q audio)."),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Most epochs (early stopping on validation).")] = 40,
    lr: Annotated[float, typer.Option(help="Learning rate of the backbone.")] = 1e-4,
    batch_size: Annotated[int, typer.Option(help="3 s crops per step.")] = 32,
    crops_per_clip: Annotated[int, typer.Option(help="Random crops per clip per epoch.")] = 4,
    max_clips: Annotated[
        int | None, typer.Option(help="Train on at most this many clips (quick runs).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Folder for the delta file.")
    ] = None,
) -> None:
    """Fine-tune every layer of the musicnn backbone (quadrant + valence-arousal)."""
    from storycue.training.finetune import AudioFinetuneConfig, run_audio_finetuning

    settings = _settings()
    cfg = AudioFinetuneConfig(epochs=epochs, lr=lr, batch_size=batch_size,
                              crops_per_clip=crops_per_clip, max_clips=max_clips,
                              seed=seed)  # fmt: skip
    try:
        with _progress() as progress:
            result, path = run_audio_finetuning(settings, cfg, backbone=backbone, mels=mels,
                                                output_dir=output,
                                                progress=_stage_reporter(progress))  # fmt: skip
    except StorycueError as exc:
        raise _fail(exc) from exc
    _report_delta(result, path)


db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target revision (default: the newest).")] = "head",
) -> None:
    """Migrate STORYCUE_DATABASE_URL's schema up to ``revision`` (the Helm chart's
    pre-install/pre-upgrade Job runs this); safe to run again and from several processes."""
    from sqlalchemy.exc import SQLAlchemyError

    from storycue.storage.metadata import MetadataStore

    s = _settings()
    try:
        store = MetadataStore(s.resolved_database_url)
    except StorycueError as exc:
        raise _fail(exc) from exc
    try:
        before = store.current_revision()
        store.migrate(revision)
        after = store.current_revision()
    except StorycueError as exc:
        raise _fail(exc) from exc
    except SQLAlchemyError as exc:
        # e.g. the server is not reachable yet: the Job's retries try again.
        reason = getattr(exc, "orig", None) or exc
        err.print(f"[bold red]error[/] (database_error): {type(exc).__name__}: {reason}")
        raise typer.Exit(code=3) from exc
    finally:
        store.close()
    log.info("db_upgraded", dialect=store.dialect, before=before, after=after)
    out.print(f"database at revision {after} (was {before or 'empty'})")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default: service.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: service.port).")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Uvicorn worker processes (default: service.workers).")
    ] = None,
) -> None:
    """Run the HTTP gateway (embedded defaults: SQLite, local Qdrant, in-process jobs)."""
    import uvicorn

    s = _settings()
    n = workers or s.service.workers
    bind_host = host or s.service.host
    bind_port = port or s.service.port
    log.info("serving", host=bind_host, port=bind_port, workers=n, execution=s.queue.execution)
    if n > 1:
        if s.service.audio_link_secret is None:
            # Worker processes must share the key that signs audio links; they inherit it.
            import os
            import secrets

            os.environ["STORYCUE_SERVICE__AUDIO_LINK_SECRET"] = secrets.token_urlsafe(32)
        uvicorn.run(
            "storycue.api.app:create_app",
            factory=True,
            host=bind_host,
            port=bind_port,
            workers=n,
            log_config=None,
        )
        return
    _serve(s, bind_host, bind_port)


def _serve(settings: Settings, host: str, port: int) -> None:
    """The gateway in this process (one worker) until interrupted."""
    import uvicorn

    from storycue.api import create_app

    try:
        application = create_app(settings)
    except StorycueError as exc:
        raise _fail(exc) from exc
    uvicorn.run(application, host=host, port=port, log_config=None)


@app.command()
def worker(
    queue: Annotated[
        list[str], typer.Option("--queue", "-Q", help="Queue to consume: text, audio or train.")
    ],
    concurrency: Annotated[int, typer.Option(help="Tasks run at once (threads).")] = 2,
) -> None:
    """Run a Celery worker of the distributed deployment (text, audio or train queue)."""
    from storycue.runtime.worker import main as worker_main

    worker_main([*queue, "--concurrency", str(concurrency)])


@app.command()
def supervise(
    once: Annotated[bool, typer.Option("--once", help="Run one pass and exit.")] = False,
    interval: Annotated[
        float | None,
        typer.Option(
            "--interval", min=0.1, help="Seconds between passes (default: stall timeout / 4)."
        ),
    ] = None,
) -> None:
    """Re-dispatch the missing work of stalled jobs (queue.stall_timeout_s) to Celery."""
    from storycue.runtime.supervisor import JobSupervisor, interval_for
    from storycue.storage.factory import open_metadata_store
    from storycue.storage.jobs import JobStore

    s = _settings()
    try:
        md = open_metadata_store(s)
    except StorycueError as exc:
        raise _fail(exc) from exc
    try:
        supervisor = JobSupervisor(s, jobs=JobStore(md.engine))
        if once:
            actions = supervisor.run_once()
            for a in actions:
                typer.echo(
                    json.dumps(
                        {
                            "job_id": a.job_id,
                            "kind": a.kind,
                            "action": a.action,
                            "items": list(a.item_indexes),
                            "tasks": a.tasks,
                            "redispatches": a.redispatches,
                        }
                    )
                )
            return
        every = interval if interval is not None else interval_for(s)
        try:
            supervisor.run_forever(every)
        except KeyboardInterrupt:
            supervisor.stop()
    finally:
        md.close()


@app.command()
def consume() -> None:
    """Run the Kafka ingest consumer (track events in, vectors and rows out)."""
    from storycue.events.consumer import main as consumer_main

    consumer_main()


keys_app = typer.Typer(help="API keys of tenants (stored hashed).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="The tenant the key acts for.")],
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
) -> None:
    """Create an API key; it is printed once and only its hash is stored."""
    from storycue.storage.factory import open_metadata_store
    from storycue.storage.tenancy import ApiKeyStore

    s = _settings()
    try:
        store = open_metadata_store(s)
        try:
            record, key = ApiKeyStore(store.engine).create(tenant, name)
        finally:
            store.close()
    except StorycueError as exc:
        raise _fail(exc) from exc
    err.print(f"key {record.id} ({record.prefix}…) for tenant {record.tenant}; shown only once:")
    out.print(key, highlight=False, markup=False)


@keys_app.command("list")
def keys_list(tenant: Annotated[str, typer.Option(help="The tenant.")]) -> None:
    """List a tenant's keys (prefixes only)."""
    from storycue.storage.factory import open_metadata_store
    from storycue.storage.tenancy import ApiKeyStore

    s = _settings()
    store = open_metadata_store(s)
    try:
        keys = ApiKeyStore(store.engine).list_keys(tenant)
    finally:
        store.close()
    table = Table("id", "prefix", "name", "created", "revoked")
    for k in keys:
        table.add_row(
            str(k.id),
            k.prefix,
            k.name,
            k.created_at.isoformat(timespec="seconds"),
            k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "",
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[int, typer.Argument(help="The key's id (see `storycue keys list`).")],
    tenant: Annotated[str, typer.Option(help="The tenant owning it.")],
) -> None:
    """Revoke a key: it stops working at once."""
    from storycue.storage.factory import open_metadata_store
    from storycue.storage.tenancy import ApiKeyStore

    s = _settings()
    store = open_metadata_store(s)
    try:
        revoked = ApiKeyStore(store.engine).revoke(tenant, key_id)
    finally:
        store.close()
    if not revoked:
        raise _fail(InvalidInputError(f"no active key {key_id} for tenant {tenant!r}"))
    out.print(f"revoked key {key_id}")


def main() -> None:  # pragma: no cover - console entry point
    try:
        app()
    except StorycueError as exc:
        err.print(f"error ({exc.code}): {exc.message}")
        sys.exit(2)
