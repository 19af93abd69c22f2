"""The tus 1.0.0 resumable upload protocol (tus.io), with every extension, over any Store."""
