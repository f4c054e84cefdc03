"""The HTTP service, in three tiers: http/ (the server's guard, the front, routes, codecs, replies) above
dataplane/ (plain Python: inputs, jobs, the cache-or-compute step, the executor) above engine/ (one ModelEngine per
model version, the only code that runs ONNX Runtime). app.py wires them; settings, errors, metrics and types are
shared by all three (docs/ARCHITECTURE.md)."""
