"""The single training entry point refuses bad options before loading any encoder."""

from __future__ import annotations

import pytest

from storycue.config import Settings
from storycue.errors import InvalidInputError
from storycue.training.run import TrainOptions, train_model


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (TrainOptions(family="no-such-family"), "unknown family"),
        (TrainOptions(family="metric-3branch", music_target="blend"), "va-regression family only"),
        (TrainOptions(family="va", music_target="loud"), "blend, quadrant or tags"),
        (TrainOptions(family="va-regression", text_sources=["reddit"]), "text sources"),
        (TrainOptions(family="word-regression", text_sources=[]), "text sources"),
        (TrainOptions(family="classification", max_epochs=0), "at least 1"),
        (TrainOptions(family="va", va_scoring="cosine"), "--va-scoring must be one of"),
        (TrainOptions(family="metric-2branch", va_scoring="quadrants"), "va-regression family"),
        (TrainOptions(family="va", label_target="corner"), "--label-target must be one of"),
        (TrainOptions(family="word-regression", label_target="side"), "va-regression family"),
        (TrainOptions(family="va", rated_fit="ordering"), "--rated-fit must be one of"),
        (TrainOptions(family="metric-2branch", rated_fit="affine"), "va-regression family"),
        (TrainOptions(family="va", word_weight=2.0), "needs the nrc-words text source"),
        (TrainOptions(family="va", word_weight=0.0, text_sources=["nrc-words"]), "must be > 0"),
        (TrainOptions(family="metric-2branch", word_weight=1.0), "va-regression only"),
    ],
)
def test_bad_options_are_refused(options: TrainOptions, message: str, tmp_path: object) -> None:
    settings = Settings(data_dir=None)
    with pytest.raises(InvalidInputError, match=message):
        train_model(settings, options)


def test_va_alias_names_the_family() -> None:
    assert TrainOptions(family="va").family_name == "va-regression"
    assert TrainOptions(family="metric-2branch").family_name == "metric-2branch"
