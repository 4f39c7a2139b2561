"""Classifier heads over deep features, the high-level :class:`CADx`, and model files."""
