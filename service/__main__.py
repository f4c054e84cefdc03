"""`python -m service`: serve the model repository with uvicorn, configured by the VAE_* settings; with a command
(`reference`, `score`: service.cli.commands), work offline on the same models.

The settings are read once, here: the app gets them, and so does the connection guard (http.server), which adds
the header and body timeouts and size limits uvicorn lacks. SIGTERM (and Ctrl-C) stop accepting, let requests
in flight finish for up to VAE_DRAIN_TIMEOUT_S, stop the rest, and exit 0: what `docker compose stop` and
Kubernetes expect of a clean shutdown. With VAE_DRAIN_READY_DELAY_S, SIGTERM first makes /health/ready answer
503 for that long while the server keeps serving, so that load balancers take it out before it stops accepting
(http.shutdown). With VAE_WORKERS > 1 each worker process builds its app from the same
environment (uvicorn starts workers from an import string).
"""

import copy
import signal
import sys

import uvicorn
from pydantic import ValidationError
from uvicorn.config import LOGGING_CONFIG, STARTUP_FAILURE  # the exit code of uvicorn.run when the app fails to start

from service.app import create_app
from service.cli.commands import COMMANDS, run
from service.http.server import connection_guard
from service.http.shutdown import DelayedDrainServer
from service.settings import Settings


def main() -> None:
    if len(sys.argv) > 1 and (sys.argv[1] in COMMANDS or sys.argv[1] in ("-h", "--help")):
        sys.exit(run(sys.argv[1:]))
    try:
        settings = Settings()  # fails fast, with the setting's name, before anything starts
    except ValidationError as exc:
        for error in exc.errors():
            name = "VAE_" + "_".join(str(part) for part in error["loc"]).upper()
            print(f"error: {name}: {error['msg']}" if error["loc"] else f"error: {error['msg']}", file=sys.stderr)
        sys.exit(2)
    log_config = copy.deepcopy(LOGGING_CONFIG)  # uvicorn's format for the service's own lines too
    log_config["loggers"]["service"] = {"handlers": ["default"], "level": settings.log_level.upper(),
                                        "propagate": False}
    # uvicorn re-raises the signal that stopped it once it has drained; a handler of our own receives it, so a
    # drained server exits 0 instead of dying by the signal.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: None)
    options = dict(host=settings.host, port=settings.port, log_level=settings.log_level, log_config=log_config,
                   access_log=settings.access_log, proxy_headers=True, http=connection_guard(settings),
                   timeout_keep_alive=settings.keep_alive_timeout_s, timeout_graceful_shutdown=settings.drain_timeout_s)
    if settings.workers > 1:
        uvicorn.run("service.app:create_app", factory=True, workers=settings.workers, **options)
        return
    # One process: uvicorn.run's own steps, with the server that first leaves the balancer's rotation on SIGTERM
    app = create_app(settings)
    config = uvicorn.Config(app, **options)
    config.load_app()
    server = DelayedDrainServer(config, settings.drain_ready_delay_s, app.begin_stopping)
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


if __name__ == "__main__":
    main()
