"""The OOF report: scores, intervals, per-fold spread, per-class, confusion (multi-label: per-class AUC, AP,
thresholds, cardinality), model similarity, TTA."""

from ensemble.report.core import METRIC_NOTE, ModelScore, Report, oof_report
from ensemble.report.files import oof_report_files
from ensemble.report.multilabel import (
    LabelStats,
    ThresholdCurve,
    label_stats,
    threshold_curve,
)
from ensemble.report.similarity import argmax_agreement, prob_correlation
from ensemble.report.tta import TTAScore, score_tta

__all__ = [
    "METRIC_NOTE", "LabelStats", "ModelScore", "Report", "TTAScore", "ThresholdCurve", "argmax_agreement", "label_stats",
    "oof_report", "oof_report_files", "prob_correlation", "score_tta", "threshold_curve",
]
