"""Image preprocessing stages: breast segmentation, lesion ROI, pseudocolour."""
