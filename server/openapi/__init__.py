"""The OpenAPI 3.1 description of the HTTP API, served at `/api/openapi.json`.

Written as a table of operations (`operations.py`) and checked against the app's real routes by
a test, so a route added without its description, or a description left behind, fails the
suite. Modules: `schemas` (component schemas), `operations` (the table), `document` (assembly
and the handler).
"""
