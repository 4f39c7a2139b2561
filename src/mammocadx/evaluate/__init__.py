"""Honest evaluation: metrics, patient-grouped splits, cross-validation, plots and reports."""
