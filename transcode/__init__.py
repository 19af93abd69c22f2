"""Media work as pure functions of (source file, profile) -> output files; no catalog here.

`probe` says what an original is, `plan` turns a probe and a profile into exact ffmpeg command
lines, `run.execute` runs one with progress, `continuity.check` looks for cuts in the timeline,
`encoders.trial` tells whether a hardware encoder works on this machine. The server's job worker
composes them with the catalog and the store.
"""
