"""Upstream I/O: every byte the gateway sends to a provider goes through this package.

- :mod:`gateway_server.upstream.pool`: a small pooled HTTP/1.1 client (asyncio protocol + httptools).
- :mod:`gateway_server.upstream.client`: ``UpstreamClient``, which runs an adapter's pure
  ``UpstreamRequest`` over the pool and classifies failures into the error tree.

Provider adapters (``gateway_server/providers/``) never import this package: they only build requests
and parse answers.
"""
