"""Static assets: the page script and style, and Plotly's bundle from the `plotly` package.

Every asset is served under a name carrying its content hash (or Plotly's version), so it
can be cached for a year and never revalidated; a changed file gets a new name. The bytes
are gzipped once, in memory, and sent compressed to clients that accept it.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api.errors import ProblemError

STATIC = Path(__file__).with_name("static")
LONG_CACHE = "public, max-age=31536000, immutable"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def plotly_bundle() -> tuple[Path, str]:
    """Plotly's JS bundle inside the installed `plotly` package, and its version (the
    package is located, not imported: importing it would slow the API's start)."""
    from importlib.metadata import version
    from importlib.util import find_spec

    found = find_spec("plotly")
    if found is None or found.origin is None:
        raise RuntimeError("the plotly package is not installed (pip install plotly)")
    return Path(found.origin).with_name("package_data") / "plotly.min.js", version("plotly")


@dataclass
class Asset:
    path: Path
    version: str

    @cached_property
    def body(self) -> bytes:
        return self.path.read_bytes()

    @cached_property
    def gzipped(self) -> bytes:
        return gzip.compress(self.body, compresslevel=6, mtime=0)

    @property
    def media_type(self) -> str:
        return _TYPES.get(self.path.suffix, "application/octet-stream")


class Assets:
    """The served files by their public (versioned) name."""

    def __init__(self) -> None:
        self.by_name: dict[str, Asset] = {}
        self.urls: dict[str, str] = {}
        for path in sorted(STATIC.iterdir()):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            self._add(path.name, f"{path.stem}.{digest}{path.suffix}", Asset(path, digest))
        bundle, version = plotly_bundle()
        self._add("plotly.js", f"plotly-{version}.min.js", Asset(bundle, version))

    def _add(self, key: str, name: str, asset: Asset) -> None:
        self.by_name[name] = asset
        self.urls[key] = f"/static/{name}"


router = APIRouter(include_in_schema=False)


@router.get("/static/{name}")
def read_asset(name: str, request: Request) -> Response:
    assets: Assets = request.app.state.assets
    asset = assets.by_name.get(name)
    if asset is None:
        raise ProblemError(404, f"no asset {name!r}")
    headers = {"Cache-Control": LONG_CACHE, "ETag": f'"{asset.version}"', "Vary": "Accept-Encoding"}
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(asset.gzipped, media_type=asset.media_type, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)
