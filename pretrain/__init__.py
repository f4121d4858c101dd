"""Compact MGCA pretraining (ITA, CTA, CPA) that exports backbones."""
