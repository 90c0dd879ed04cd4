"""Fine-tuning the encoders: a few real steps on tiny inputs, deltas that load by name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from storycue.audio.mel import N_MELS, PATCH_FRAMES
from storycue.config import get_settings
from storycue.errors import InvalidInputError, ModelMismatchError
from storycue.models.finetuned import (
    EncoderDelta,
    base_of,
    find_delta,
    is_finetuned_name,
    make_delta,
)
from storycue.training.finetune import (
    AudioFinetuneConfig,
    MelBank,
    TextExamples,
    TextFinetuneConfig,
    finetune_audio,
    finetune_text,
    trainable_text_params,
)

Tuned = tuple[Any, EncoderDelta, Path]

TEXTS = [
    ("I finally got the job and we celebrated all night", "joy", (0.9, 0.7)),
    ("We laughed together in the sunshine at the fair", "joy", (0.9, 0.6)),
    ("My grandmother died and I cried at the funeral", "sadness", (0.1, 0.3)),
    ("I felt so lonely after my best friend moved away", "sadness", (0.15, 0.3)),
    ("He screamed at me and slammed the door in rage", "anger", (0.15, 0.85)),
    ("The driver cut me off and I was furious", "anger", (0.2, 0.8)),
    ("A stranger followed me home in the dark", "fear", (0.1, 0.8)),
    ("The plane shook violently and I thought we would crash", "fear", (0.1, 0.9)),
]


def examples(repeat: int = 2) -> TextExamples:
    rows = TEXTS * repeat
    return TextExamples(
        texts=[t for t, _, _ in rows],
        labels=[lab for _, lab, _ in rows],
        sources=["isear"] * len(rows),
        va=np.asarray([va for _, _, va in rows], np.float32),
        weights=np.ones(len(rows), np.float32),
    )


@pytest.fixture(scope="module")
def tuned_text(tmp_path_factory: pytest.TempPathFactory) -> Tuned:
    from storycue.models.text import TextEncoder

    enc = TextEncoder(backend="torch", precision="fp32")
    before = enc.encode([TEXTS[0][0]])
    cfg = TextFinetuneConfig(layers=1, epochs=2, batch_size=8, lr=1e-3, seed=0)
    result = finetune_text(enc, examples(), examples(1), cfg)
    after = enc.encode([TEXTS[0][0]])
    assert not np.allclose(before, after, atol=1e-4), "the top layer did not change"
    folder = tmp_path_factory.mktemp("encoders")
    path = result.delta.save(folder)
    return enc, result.delta, path


def test_text_delta_holds_only_the_trained_layer(tuned_text: Tuned) -> None:
    _, delta, path = tuned_text
    assert delta.kind == "text"
    assert delta.base == "sentence-transformers/all-MiniLM-L6-v2"
    assert delta.tensors and all(".layer.5." in k for k in delta.tensors)
    assert all(t.dtype == torch.float16 for t in delta.tensors.values())
    assert path.name == delta.name.replace("/", "_") + ".safetensors"
    assert is_finetuned_name(delta.name) and base_of(delta.name) == delta.base
    meta = EncoderDelta.load(path).info
    assert meta["config"]["layers"] == 1 and meta["labels"] == ["anger", "fear", "joy", "sadness"]
    assert len(meta["history"]) >= 1 and "isear_balanced_accuracy" in meta["metrics"]


def test_text_encoder_loads_a_delta_by_path_and_reproduces_the_tuned_model(
    tuned_text: Tuned,
) -> None:
    from storycue.models.text import TextEncoder

    tuned, delta, path = tuned_text
    again = TextEncoder(str(path), backend="torch", precision="fp32")
    assert again.name == delta.name
    texts = [t for t, _, _ in TEXTS]
    np.testing.assert_allclose(again.encode(texts), tuned.encode(texts), atol=1e-6)
    base = TextEncoder(backend="torch", precision="fp32")
    assert np.abs(base.encode(texts) - again.encode(texts)).max() > 1e-3


def test_text_encoder_finds_a_delta_by_name_under_home(tuned_text: Tuned) -> None:
    from storycue.models.text import TextEncoder

    _, delta, path = tuned_text
    home_dir = get_settings().home / "models" / "encoders"
    home_dir.mkdir(parents=True, exist_ok=True)
    (home_dir / path.name).write_bytes(path.read_bytes())
    assert TextEncoder(delta.name, backend="torch").name == delta.name
    assert find_delta(delta.name, "text").path == home_dir / path.name
    with pytest.raises(ModelMismatchError, match="text encoder delta, not audio"):
        find_delta(delta.name, "audio")


def test_unknown_or_altered_deltas_are_refused(tuned_text: Tuned, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from storycue.errors import ModelNotFoundError

    _, delta, _ = tuned_text
    with pytest.raises(ModelNotFoundError, match="not found"):
        find_delta("sentence-transformers/all-MiniLM-L6-v2+ft-0000000000", "text")
    altered = {k: v.clone() for k, v in delta.tensors.items()}
    first = sorted(altered)[0]
    altered[first] = altered[first] + 1
    meta = {
        "storycue_encoder": json.dumps(
            {"format": 1, "kind": "text", "name": delta.name, "base": delta.base}
        )
    }
    bad = tmp_path / "altered.safetensors"
    save_file(altered, str(bad), metadata=meta)
    with pytest.raises(ModelMismatchError, match="altered"):
        EncoderDelta.load(bad)
    wrong_shape = EncoderDelta("text", delta.base, {first: torch.zeros(3)})
    with pytest.raises(ModelMismatchError, match="shape"):
        wrong_shape.apply(tuned_text[0].model().model)
    unknown = EncoderDelta("text", delta.base, {"no.such.weight": torch.zeros(3)})
    with pytest.raises(ModelMismatchError, match="unknown tensors"):
        unknown.apply(tuned_text[0].model().model)


def rated_examples() -> TextExamples:
    """The labelled texts plus unlabelled EmoBank-like sentences with ratings close to the
    neutral point (as EmoBank's are once rescaled)."""
    rated = [
        ("The meeting was moved to Tuesday afternoon.", (0.5, 0.45)),
        ("What a wonderful surprise, thank you all so much!", (0.62, 0.58)),
        ("The house burned down and nobody could save the dog.", (0.35, 0.6)),
        ("She sat by the window and watched the rain.", (0.47, 0.4)),
    ] * 3
    base = examples()
    return TextExamples(
        texts=[*base.texts, *(t for t, _ in rated)],
        labels=[*base.labels, *([""] * len(rated))],
        sources=[*base.sources, *(["emobank"] * len(rated))],
        va=np.concatenate([base.va, np.asarray([va for _, va in rated], np.float32)]),
        weights=np.ones(len(base) + len(rated), np.float32),
    )


def test_rating_objective_warm_start_and_per_source_caps(tuned_text: Tuned) -> None:
    """A warm start from a delta trains on: the new delta applies to the same pretrained
    base, holds the old delta's tensors too, records where it started, and selects on
    labels and ratings together."""
    from storycue.models.text import TextEncoder

    _, first, path = tuned_text
    enc = TextEncoder(str(path), backend="torch", precision="fp32")
    cfg = TextFinetuneConfig(
        layers=2, epochs=2, batch_size=8, lr=1e-3, seed=0, rating_weight=1.0,
        selection="labels+ratings", max_per_source=10,
    )  # fmt: skip
    result = finetune_text(enc, rated_examples(), rated_examples(), cfg)
    delta = result.delta
    assert delta.base == first.base == "sentence-transformers/all-MiniLM-L6-v2"
    assert set(first.tensors) <= set(delta.tensors)
    assert any(".layer.4." in k for k in delta.tensors)
    assert delta.info["initialised_from"] == first.name
    assert "standardised emobank rating MSE" in delta.info["objective"]
    assert delta.info["examples"]["train"] == 20  # 16 isear texts capped to 10, 12 emobank to 10
    for h in result.history:
        assert -1.0 <= h["rating_valence_pearson"] <= 1.0
        expected = 0.5 * (
            h["isear_balanced_accuracy"]
            + 0.5 * (h["rating_valence_pearson"] + h["rating_arousal_pearson"])
        )
        assert h["score"] == pytest.approx(expected)
    assert enc.name == delta.name
    with pytest.raises(InvalidInputError, match="needs rating_weight"):
        TextFinetuneConfig(selection="labels+ratings").check()
    with pytest.raises(InvalidInputError, match="no training texts from"):
        finetune_text(enc, examples(), examples(1), TextFinetuneConfig(epochs=1, rating_weight=1))


def test_trainable_params_select_top_layers_and_full() -> None:
    from storycue.models.text import TextEncoder

    model = TextEncoder(backend="torch").model().model
    top2 = trainable_text_params(model, 2, False)
    assert top2 and all((".layer.4." in n or ".layer.5." in n) for n in top2)
    full = trainable_text_params(model, -1, False)
    assert all(f".layer.{i}." in " ".join(full) for i in range(6))
    assert not any("embeddings" in n or "pooler" in n for n in full)
    assert any("embeddings" in n for n in trainable_text_params(model, -1, True))
    with pytest.raises(InvalidInputError, match="has 6 layers"):
        trainable_text_params(model, 7, False)


def test_text_finetuning_refuses_bad_input() -> None:
    from storycue.models.text import TextEncoder

    enc = TextEncoder(backend="torch")
    with pytest.raises(InvalidInputError, match="layers"):
        finetune_text(enc, examples(), examples(1), TextFinetuneConfig(layers=0))
    unlabelled = examples()
    unlabelled.labels = [""] * len(unlabelled)
    with pytest.raises(InvalidInputError, match="labelled"):
        finetune_text(enc, unlabelled, examples(1), TextFinetuneConfig(epochs=1))
    other = examples(1)
    other.sources = ["goemotions"] * len(other)
    with pytest.raises(InvalidInputError, match="early-stop"):
        finetune_text(enc, examples(), other, TextFinetuneConfig(epochs=1))
    with pytest.raises(InvalidInputError, match="differ"):
        TextExamples(["a"], [], [], np.zeros((1, 2)), np.ones(1))


# ---- audio ---------------------------------------------------------------------------------
def synthetic_bank(n_per_part: int = 4, frames: int = 400) -> MelBank:
    """Log-mel-like inputs whose quadrant is visible in the spectrum (bright vs dark)."""
    rng = np.random.default_rng(0)
    mels, quads, va, ids, parts = [], [], [], [], []
    quads_cycle = ["Q1", "Q2", "Q3", "Q4"]
    for part in ("train", "validation"):
        for i in range(n_per_part):
            q = quads_cycle[i % 4]
            m = rng.uniform(0, 1.0, (frames, N_MELS)).astype(np.float32)
            m[:, : 24 * (int(q[1]))] += 2.0
            mels.append(m)
            quads.append(q)
            va.append((0.8 if q in ("Q1", "Q4") else 0.2, 0.8 if q in ("Q1", "Q2") else 0.2))
            ids.append(f"{part}{i}")
            parts.append(part)
    return MelBank(mels, quads, np.asarray(va), ids, parts)


def test_mel_bank_round_trip_is_8_bit_close(tmp_path: Path) -> None:
    bank = synthetic_bank()
    path = bank.save(tmp_path / "mels.npz", max_frames=300)
    back = MelBank.load(path)
    assert back.song_ids == bank.song_ids and back.part == bank.part
    assert back.quadrants == bank.quadrants
    hi = max(float(m.max()) for m in bank.mels)
    for a, b in zip(bank.mels, back.mels, strict=True):
        assert b.shape == (300, N_MELS)
        s = (a.shape[0] - 300) // 2
        assert np.abs(a[s : s + 300] - b).max() <= hi / 255 / 2 + 1e-6
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InvalidInputError, match="not a mel bank"):
        MelBank.load(tmp_path / "junk.npz")
    with pytest.raises(InvalidInputError, match="unknown quadrants"):
        MelBank([bank.mels[0]], ["Q5"], np.zeros((1, 2)), ["x"], ["train"])


def test_audio_finetuning_trains_every_layer_and_loads_by_name(
    musicnn_weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from storycue.models.musicnn import clear_backbone_cache, load_backbone

    clear_backbone_cache()
    bb = load_backbone(
        "MTT_musicnn", weights_dir=musicnn_weights_dir, device="cpu", precision="fp32"
    )
    clear_backbone_cache()
    x = torch.from_numpy(synthetic_bank(1).mels[0][:PATCH_FRAMES][None].copy())
    before = bb.forward_patches(x)["penultimate"].clone()
    cfg = AudioFinetuneConfig(epochs=2, patience=5, batch_size=4, crops_per_clip=1, lr=1e-3)
    result = finetune_audio(bb, synthetic_bank(), cfg)
    delta = result.delta
    assert delta.kind == "audio" and delta.base == "MTT_musicnn"
    assert bb.name == delta.name  # the tuned object carries its new identity
    assert set(delta.tensors) == set(bb.net.state_dict())
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert delta.info["clips"] == {"train": 4, "validation": 4}
    tuned = bb.forward_patches(x)["penultimate"]
    assert not torch.allclose(before, tuned, atol=1e-5)
    monkeypatch.setenv("STORYCUE_MODEL_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        delta.save(tmp_path / "encoders")
        loaded = load_backbone(
            delta.name, weights_dir=musicnn_weights_dir, device="cpu", precision="fp32"
        )
        assert loaded.name == delta.name and loaded.spec.arch == "musicnn"
        torch.testing.assert_close(loaded.forward_patches(x)["penultimate"], tuned)
        with pytest.raises(InvalidInputError, match="already fine-tuned"):
            finetune_audio(loaded, synthetic_bank(), cfg)
    finally:
        clear_backbone_cache()
        get_settings.cache_clear()


def test_audio_finetuning_refuses_bad_input(musicnn_weights_dir: Path) -> None:
    from storycue.models.musicnn import clear_backbone_cache, load_backbone

    bb = load_backbone("MTT_vgg", weights_dir=musicnn_weights_dir, device="cpu", precision="fp32")
    clear_backbone_cache()
    with pytest.raises(InvalidInputError, match="no outputs"):
        finetune_audio(bb, synthetic_bank(), AudioFinetuneConfig(epochs=1))
    only_train = synthetic_bank().select("train")
    with pytest.raises(InvalidInputError, match="train and validation"):
        finetune_audio(bb, only_train, AudioFinetuneConfig(epochs=1, features=("pool5",)))
    with pytest.raises(InvalidInputError, match=">= 1"):
        AudioFinetuneConfig(epochs=0).check()


def test_make_delta_keeps_buffers_in_their_dtype() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    d = make_delta("audio", "MTT_musicnn", net, None)
    assert d.tensors["0.weight"].dtype == torch.float16
    assert d.tensors["1.num_batches_tracked"].dtype == torch.int64
    assert d.tensors["1.running_mean"].dtype == torch.float32


def test_build_mel_bank_decodes_clips_and_skips_broken_ones(tmp_path: Path) -> None:
    from types import SimpleNamespace

    import soundfile as sf

    from storycue.training.finetune import build_mel_bank

    t = np.arange(16000 * 4) / 16000
    good = tmp_path / "good.wav"
    sf.write(good, (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00")
    recs = [
        SimpleNamespace(audio_path=good, quadrant="Q1", song_id="a"),
        SimpleNamespace(audio_path=broken, quadrant="Q2", song_id="b"),
    ]
    bank = build_mel_bank(recs, ["train", "validation"], np.asarray([[0.8, 0.8], [0.2, 0.8]]))
    assert bank.song_ids == ["a"] and bank.part == ["train"] and bank.quadrants == ["Q1"]
    assert bank.mels[0].shape[1] == N_MELS and 240 <= bank.mels[0].shape[0] <= 260
    np.testing.assert_allclose(bank.va, [[0.8, 0.8]])


def test_model_card_describes_a_fine_tuned_text_encoder(tuned_text: Tuned) -> None:
    from storycue.models.checkpoints import checkpoint_info, resolve_checkpoint
    from storycue.training.modelcard import render_model_card

    _, delta, path = tuned_text
    home_dir = get_settings().home / "models" / "encoders"
    home_dir.mkdir(parents=True, exist_ok=True)
    (home_dir / path.name).write_bytes(path.read_bytes())
    info = checkpoint_info(resolve_checkpoint("va-regression"))
    card = render_model_card(info.model_copy(update={"text_encoder": delta.name}), "0" * 64)
    assert f"| text encoder | {delta.name} (mean pooling, fine-tuned from {delta.base}" in card
    assert "### Fine-tuned encoders" in card and "'layers': 1" in card
    missing = info.model_copy(update={"text_encoder": delta.base + "+ft-ffffffffff"})
    assert "delta not found on this machine" in render_model_card(missing, "0" * 64)
    assert "(frozen)" in render_model_card(info, "0" * 64)


def test_word_mapping_uses_the_pretrained_base_of_a_fine_tuned_encoder(
    tuned_text: Tuned,
) -> None:
    from types import SimpleNamespace

    from storycue.evaluation import harness
    from storycue.models.text import TextEncoder, pretrained_text_encoder

    tuned, delta, path = tuned_text
    home_dir = get_settings().home / "models" / "encoders"
    home_dir.mkdir(parents=True, exist_ok=True)
    (home_dir / path.name).write_bytes(path.read_bytes())
    by_name = TextEncoder(delta.name, backend="torch")
    records = [
        SimpleNamespace(quadrant=q, moods=moods)
        for q, moods in (("Q1", ("cheerful", "happy")), ("Q2", ("angry", "tense")),
                         ("Q3", ("sad", "melancholy")), ("Q4", ("calm", "tender")))
    ]  # fmt: skip
    labels = ["joy", "anger", "sadness", "fear"]
    args = ("word", labels, None, get_settings(), records)
    base = harness.build_mapping(*args, text_encoder=TextEncoder(backend="torch"))  # type: ignore[arg-type]
    assert harness.build_mapping(*args, text_encoder=by_name) == base  # type: ignore[arg-type]
    assert pretrained_text_encoder(delta.base).name == delta.base
    assert tuned.name == delta.name  # the tuned object carries its new identity


def test_quick_runs_cap_the_clips_and_texts(musicnn_weights_dir: Path) -> None:
    from storycue.models.musicnn import clear_backbone_cache, load_backbone

    bb = load_backbone(
        "MTT_musicnn", weights_dir=musicnn_weights_dir, device="cpu", precision="fp32"
    )
    clear_backbone_cache()
    cfg = AudioFinetuneConfig(epochs=1, batch_size=2, crops_per_clip=1, max_clips=2)
    assert finetune_audio(bb, synthetic_bank(), cfg).delta.info["clips"] == {
        "train": 2,
        "validation": 4,
    }
    ex = examples()
    sub = ex.subset([3, 0])
    assert sub.texts == [ex.texts[3], ex.texts[0]] and sub.labels == [ex.labels[3], ex.labels[0]]
    np.testing.assert_array_equal(sub.va, ex.va[[3, 0]])


def test_private_backbones_are_not_shared(musicnn_weights_dir: Path) -> None:
    from storycue.models.musicnn import clear_backbone_cache, load_backbone

    clear_backbone_cache()
    shared = load_backbone("MTT_musicnn", weights_dir=musicnn_weights_dir, device="cpu")
    private = load_backbone(
        "MTT_musicnn", weights_dir=musicnn_weights_dir, device="cpu", cached=False
    )
    assert private is not shared and private.net is not shared.net
    assert load_backbone("MTT_musicnn", weights_dir=musicnn_weights_dir, device="cpu") is shared
    clear_backbone_cache()


def test_a_cached_fine_tuned_backbone_is_not_reread(
    musicnn_weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from storycue.models import finetuned
    from storycue.models.musicnn import clear_backbone_cache, load_backbone

    net = load_backbone(
        "MTT_musicnn", weights_dir=musicnn_weights_dir, device="cpu", cached=False
    ).net
    delta = make_delta("audio", "MTT_musicnn", net, None, dtype=torch.float32)
    path = delta.save(tmp_path)
    clear_backbone_cache()
    first = load_backbone(str(path), weights_dir=musicnn_weights_dir, device="cpu")
    assert first.name == delta.name
    reads: list[str] = []
    monkeypatch.setattr(finetuned.EncoderDelta, "load", lambda p: reads.append(str(p)))
    assert load_backbone(delta.name, weights_dir=musicnn_weights_dir, device="cpu") is first
    assert reads == []
    clear_backbone_cache()
