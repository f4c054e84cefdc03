"""GET /explore: the explorer, a page for looking at a model (samples, reconstructions, interpolations, a map of
the latent space, anomaly scores) served from the package's own files (`service/http/explorer/`: one HTML page,
its style sheet and a few ES modules; no build step, nothing from another host).

The page holds no data: the browser calls the public API with the user's bearer key, so everything it shows a
user can script. Like /docs it is public (http.security), because a browser cannot send a bearer key for a
page it opens; the page asks for the key and sends it as `Authorization: Bearer` on every call it makes.
Its Content-Security-Policy lets it load and call nothing but this service.
"""

from importlib import resources

from fastapi import APIRouter, Response

PAGE, ASSETS = "/explore", "/explore/"  # the page, and the prefix of its files (public, see http.security)
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8"}
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidated on each visit: a new release of the service shows its own page
}

router = APIRouter(include_in_schema=False)  # a page for people, not an API operation


def asset_files() -> dict[str, tuple[bytes, str]]:
    """Every file of the page, read once: name -> (content, media type)."""
    folder = resources.files("service.http") / "explorer"
    files = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in MEDIA_TYPES:
            files[entry.name] = (entry.read_bytes(), MEDIA_TYPES[suffix])
    return files


FILES = asset_files()


def asset_handler(name: str):
    content, media_type = FILES[name]

    async def get_explorer_file() -> Response:
        """One of the explorer's files."""
        return Response(content, media_type=media_type, headers=HEADERS)

    return get_explorer_file


router.get(PAGE)(asset_handler("index.html"))
for _name in FILES:  # one route per file: a request names a file the package ships, or gets 404
    router.get(ASSETS + _name)(asset_handler(_name))
