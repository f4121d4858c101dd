"""Task adapters: linear classification, detection (mmdet) and segmentation (mmseg)."""
