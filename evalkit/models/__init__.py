"""Detector networks (PyTorch), their priors and their ONNX export."""
