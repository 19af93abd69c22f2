"""avidence: large audio-video evidence moved with the case, verified end to end."""

__version__ = "0.1.0"
