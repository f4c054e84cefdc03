"""Domain errors. Each carries its HTTP status; one handler in the app turns them into responses."""


class ServiceError(Exception):
    status_code = 500
    headers: dict[str, str] | None = None

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class UnreadableBody(ServiceError):
    """The body cannot be read at all: not JSON, not a .npy array, a media type the API does not take."""

    status_code = 400


class UnsupportedMediaType(ServiceError):
    status_code = 415


class InvalidInput(ServiceError):
    """The request is well-formed JSON but its values cannot be used."""

    status_code = 422


class LimitExceeded(ServiceError):
    """The request asks for more work than the service's limits allow."""

    status_code = 422


class ModelNotFound(ServiceError):
    status_code = 404


class ModelUnavailable(ServiceError):
    """The model exists in the repository but failed to load."""

    status_code = 503


class ModelRunFailed(ServiceError):
    """The model's graph raised while running: the model's fault, not the client's."""

    status_code = 500


class NonFiniteResult(ServiceError):
    """The model produced NaN or infinity for this input: refused, never cached."""

    status_code = 422


class Overloaded(ServiceError):
    """More work in flight than VAE_MAX_INFLIGHT_WORK (or request bodies than VAE_MAX_INFLIGHT_BODY_BYTES)."""

    status_code = 429

    def __init__(self, detail: str, retry_after_s: int = 1):
        super().__init__(detail)
        self.headers = {"Retry-After": str(retry_after_s)}


class DeadlineExceeded(ServiceError):
    """The request's deadline passed before its work was done; the work was stopped."""

    status_code = 503


class RepositoryUnreadable(ServiceError):
    """The model repository folder cannot be read now; what was loaded before keeps serving."""

    status_code = 503


class RequestCancelled(ServiceError):
    """The client went away; nobody reads the answer (499 in the metrics, as nginx counts it)."""

    status_code = 499


class AdminActionsDisabled(ServiceError):
    """An admin action on a service without API keys: anyone could call it, so nobody may."""

    status_code = 403
