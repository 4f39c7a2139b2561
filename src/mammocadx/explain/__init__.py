"""Explanations of the classifier's own decision (Grad-CAM of the malignancy score)."""
