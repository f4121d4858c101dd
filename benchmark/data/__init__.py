"""Data layer: official downloads → prepared datasets (manifest, splits, labels, image cache)."""
