"""Evaluation: text-label -> quadrant mappings and retrieval / classification metrics.

See ``EVALUATION.md`` for the protocol these implement.
"""

from storycue.data.mappings import (
    MANUAL_MAPPING,
    QUADRANT_VA_CENTRES,
    quadrant_of,
    quadrant_tags,
    quadrants_of,
    restrict,
    va_mapping,
    word_mapping,
)
from storycue.evaluation.metrics import (
    RetrievalResult,
    argmax_labels,
    balanced_accuracy,
    classification_accuracy,
    per_class_accuracy,
    relevance_matrix,
    retrieval_metrics,
    va_correlations,
)

__all__ = [
    "MANUAL_MAPPING",
    "QUADRANT_VA_CENTRES",
    "RetrievalResult",
    "argmax_labels",
    "balanced_accuracy",
    "classification_accuracy",
    "per_class_accuracy",
    "quadrant_of",
    "quadrant_tags",
    "quadrants_of",
    "relevance_matrix",
    "restrict",
    "retrieval_metrics",
    "va_correlations",
    "va_mapping",
    "word_mapping",
]
