"""The OOF report: scores, intervals, per-fold spread, per-class, confusion, model similarity, TTA."""

from ensemble.report.core import METRIC_NOTE, ModelScore, Report, oof_report
from ensemble.report.files import oof_report_files
from ensemble.report.similarity import argmax_agreement, prob_correlation
from ensemble.report.tta import TTAScore, score_tta

__all__ = ["METRIC_NOTE", "ModelScore", "Report", "TTAScore", "argmax_agreement", "oof_report", "oof_report_files", "prob_correlation", "score_tta"]
