"""Media jobs: the catalog queue, the worker that runs them, and what they record.

The worker composes `avidence.transcode` (pure media functions) with the catalog and the store.
For the viewer: `playable_derivative(engine, evidence_id)` gives the storage key and content
type of the browser-playable copy of an original, `poster_derivative` those of its poster frame,
or None.
"""

from .records import playable_derivative, poster_derivative

__all__ = ["playable_derivative", "poster_derivative"]
