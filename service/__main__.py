"""`python -m service`: serve the model repository with uvicorn, configured by the VAE_* settings."""

import copy
import sys

import uvicorn
from pydantic import ValidationError
from uvicorn.config import LOGGING_CONFIG

from service.settings import Settings


def main() -> None:
    try:
        settings = Settings()  # fails fast, with the setting's name, before anything starts
    except ValidationError as exc:
        for error in exc.errors():
            name = "VAE_" + "_".join(str(part) for part in error["loc"]).upper()
            print(f"error: {name}: {error['msg']}", file=sys.stderr)
        sys.exit(2)
    log_config = copy.deepcopy(LOGGING_CONFIG)  # uvicorn's format for the service's own lines too
    log_config["loggers"]["service"] = {"handlers": ["default"], "level": settings.log_level.upper(),
                                        "propagate": False}
    uvicorn.run("service.app:app", host=settings.host, port=settings.port, workers=settings.workers,
                log_level=settings.log_level, log_config=log_config, proxy_headers=True)


if __name__ == "__main__":
    main()
