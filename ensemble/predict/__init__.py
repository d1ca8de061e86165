"""`ens predict`: checkpoints or ONNX models to per-fold OOF and test probabilities, with TTA."""
