"""Evaluation: retrieval and classification metrics, the harness, the reports.

See ``EVALUATION.md`` for the protocol these implement. The text-label -> quadrant
mappings live one layer down, in :mod:`storycue.data.mappings` (training uses them too).
"""

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
    "RetrievalResult",
    "argmax_labels",
    "balanced_accuracy",
    "classification_accuracy",
    "per_class_accuracy",
    "relevance_matrix",
    "retrieval_metrics",
    "va_correlations",
]
