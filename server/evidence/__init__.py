"""The custody core: evidence records and everything that makes or vouches for them.

`records` is the only code that writes the evidence table; `accept` turns a verified upload into
evidence through the completion hook the tus handler calls; `receipts` signs what the server holds.
Every change here commits with its audit entry through `audit.unit.unit_of_work`.
"""
