"""Offline training, evaluation and ONNX export of VAEs for the model repository."""
