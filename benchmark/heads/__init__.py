"""The head-training layer every task composes: one content-keyed feature store, one set of mmengine
hooks (strict early stopping, per-epoch history, resume) and one training outcome."""
