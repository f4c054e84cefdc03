"""Domain errors, raised by any tier. Each carries its HTTP status; service.http.replies.error_reply turns them
into the contract's JSON `{"detail": ...}`, for the direct handlers and FastAPI's exception handlers alike.

Refusals made before any route runs are not these classes: the HTTP tier answers them itself (body over
VAE_MAX_BODY_BYTES 413, bodies in flight over VAE_MAX_INFLIGHT_BODY_BYTES 429, a bad X-Request-Timeout 400:
service.http.limits; API keys 401, Host 400: service.http.security; slow, long or oversized requests 408, 414,
431: service.http.server). Pydantic's field errors are 422 through service.http.replies.validation_reply.
"""


RETRY_AFTER_S = 1  # what a 429 asks a client to wait (Retry-After), whichever bound it met


class ServiceError(Exception):
    """An error with its HTTP status (500 unless a subclass says otherwise) and a detail that says how to fix it."""

    status_code = 500
    headers: dict[str, str] | None = None

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class UnreadableBody(ServiceError):
    """The body cannot be read at all: not valid JSON (service.http.codecs); not a .npy array, a .npy array
    whose dtype is not a plain number type, or one whose data is not the size its header promises
    (service.http.payloads). A media type the call does not take is UnsupportedMediaType."""

    status_code = 400


class MalformedInference(ServiceError):
    """An Open Inference Protocol request that breaks the protocol: a tensor whose shape, datatype, data or
    binary_data_size disagree, a header length past the body, a datatype that is not taken, a malformed protocol
    parameter (service.http.inference). What an operation makes of its values is InvalidInput, as in the own API."""

    status_code = 400


class UnsupportedMediaType(ServiceError):
    """A content-type the call does not take: the data calls take application/json or application/x-npy,
    /sample only JSON (service.http.codecs)."""

    status_code = 415


class InvalidInput(ServiceError):
    """The body was read, but a value in it cannot be used: wrong shape, ragged, not numbers, JSON booleans,
    NaN or infinity, Bernoulli data outside [0, 1] (service.dataplane.inputs); a malformed model
    reference (service.engine.repository); a field given in both the query string and the body, or a body that is
    not a JSON object (service.http.codecs)."""

    status_code = 422


class LimitExceeded(ServiceError):
    """The request asks for more than a per-request limit allows (VAE_MAX_BATCH, VAE_MAX_K,
    VAE_MAX_LOGLIK_SAMPLES, VAE_MAX_ENCODE_SAMPLES, VAE_MAX_ENCODE_TOTAL_SAMPLES, VAE_MAX_SAMPLE_N); the detail
    names the setting (service.dataplane.inputs)."""

    status_code = 422


class ModelNotFound(ServiceError):
    """No model or version of that name in the repository, or no default model (service.engine.repository),
    or GET /models/{name} for a name it does not hold (service.dataplane)."""

    status_code = 404


class ModelUnavailable(ServiceError):
    """The model (or the version asked for) is in the repository but failed to load; the detail carries the
    reason (service.engine.repository)."""

    status_code = 503


class ModelRunFailed(ServiceError):
    """The model's graph raised while running, or answered a batch with the wrong number of rows
    (service.engine.sessions; the fused scoring graph: service.engine.scorers): the model's fault, not the client's.
    Raised by the trial run at load, it keeps that version out of service instead."""

    status_code = 500


class NonFiniteResult(ServiceError):
    """The model produced NaN or infinity for this input: refused, never cached (service.dataplane.results)."""

    status_code = 422


class Overloaded(ServiceError):
    """More work in flight than VAE_MAX_INFLIGHT_WORK (service.dataplane.admission); the answer says when to retry
    (Retry-After). Request bodies over VAE_MAX_INFLIGHT_BODY_BYTES get their 429 from service.http.limits."""

    status_code = 429

    def __init__(self, detail: str, retry_after_s: int = RETRY_AFTER_S):
        super().__init__(detail)
        self.headers = {"Retry-After": str(retry_after_s)}


class DeadlineExceeded(ServiceError):
    """The request's deadline (VAE_REQUEST_TIMEOUT_S, or X-Request-Timeout) passed before its work was done;
    the work was stopped between slices, or answered at the deadline while its worker thread still ran
    (service.dataplane.budget, service.dataplane.executor)."""

    status_code = 503


class RepositoryUnreadable(ServiceError):
    """The model repository folder cannot be read now (service.engine.repository): POST /admin/reload answers 503,
    the background poller (service.dataplane.reload) logs it and tries again; what was loaded before keeps serving."""

    status_code = 503


class RequestCancelled(ServiceError):
    """The client went away and its work was stopped (service.dataplane.budget); nobody reads the answer, and the
    metrics count it with status 499, as nginx does."""

    status_code = 499


class AdminActionsDisabled(ServiceError):
    """POST /admin/reload on a service without API keys (VAE_API_KEYS): anyone could call it, so nobody may
    (service.http.routes.admin)."""

    status_code = 403


class ScoringUnavailable(ServiceError):
    """POST or GET /score on a version without a usable reference: none (reference.json missing), a malformed
    one, or a likelihood ratio whose background model is not served; the detail says why and how to make one
    (service.engine.repository). Every other call of the version keeps serving."""

    status_code = 409


class NotAcceptable(ServiceError):
    """Accept: image/png for a model that has no image shape (manifest key `image`, or a data_shape that implies
    one) (service.dataplane)."""

    status_code = 406
