"""Domain errors. Each carries its HTTP status; one handler in the app turns them into responses."""


class ServiceError(Exception):
    status_code = 500

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


class RepositoryUnreadable(ServiceError):
    """The model repository folder cannot be read now; what was loaded before keeps serving."""

    status_code = 503


class AdminActionsDisabled(ServiceError):
    """An admin action on a service without API keys: anyone could call it, so nobody may."""

    status_code = 403
