"""Where evidence bytes live: the Store contract, its backends and content digests.

Nothing here knows about HTTP or tus; the server composes these pieces.
"""
