"""Task adapters, one package per task (classification, detection with mmdet, segmentation with mmseg, zero-shot
classification, image-text retrieval); tasks.registry finds them by scanning this folder."""
