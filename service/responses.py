"""JSON responses that take NumPy arrays as they are (orjson), nested as the arrays' shapes."""

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class ArrayJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
