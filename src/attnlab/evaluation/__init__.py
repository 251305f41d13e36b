"""Evaluation reports."""

from attnlab.evaluation.report import evaluate_run

__all__ = ["evaluate_run"]
