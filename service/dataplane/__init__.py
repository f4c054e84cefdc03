"""The data plane: plain Python between the HTTP tier and the engines. DataPlane (dataplane.dataplane) resolves
the model, checks the input (dataplane.inputs) and describes the job (dataplane.jobs); CachedResults
(dataplane.results) answers it from the cache (dataplane.cache) or has the Executor (dataplane.executor) run it:
admitted (dataplane.admission), within the request's budget (dataplane.budget), inline, coalesced
(dataplane.batching) or in a worker thread. dataplane.reload swaps in new versions of the repository."""
