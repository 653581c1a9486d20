"""`charrnn serve`: a model over HTTP/JSON for other programs (app: the API; engine: the
one generation thread; request: what a client may ask, checked).  Needs the `serve`
extra: ``pip install 'charrnn-lab[serve]'`` (Starlette, uvicorn)."""
