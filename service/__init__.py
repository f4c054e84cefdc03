"""The HTTP service: FastAPI routes over a plain-Python data plane over ONNX Runtime sessions."""
