"""The engine tier: one ModelEngine per loaded model version (engine.engine), built by the repository
(engine.repository). It owns the version's ONNX Runtime sessions (engine.sessions), its prior and likelihood
(modelrepo.likelihood) and its one /loglik scorer (engine.scorers, engine.choice, engine.fusion, engine.kernels),
and answers plain synchronous NumPy calls. Nothing else in the service touches ONNX Runtime."""
