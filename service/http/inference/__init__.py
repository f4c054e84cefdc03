"""The Open Inference Protocol (KServe v2, Triton's HTTP API; CONTRACT section 5): a codec over the same data
operations as the service's own API (http.operations). `request.py` reads an inference request (JSON, or a JSON
header followed by binary tensors), `tensors.py` turns tensors into arrays and back, `models.py` names the
protocol's models and describes them, `answer.py` writes the inference response; http.routes.inference routes it.
"""
