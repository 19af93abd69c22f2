"""Transfers of a case's evidence between agencies (随案移送), with signed manifests and signed
acknowledgements.

Flow: the sender creates a transfer (`manifest` lists every item with digests and receipts,
signed by the server); the receiver sees it in its inbox, reviews it (metadata, digests, playback
through a short internal ticket) and acknowledges it (signed acknowledgement: who, when, which
digests were checked) or rejects it with a reason. Only an acknowledgement makes the receiver a
holder of the items and the case. A manifest whose signature fails, or digests that no longer
match, block the acknowledgement.

Modules: `manifest` (build, sign, verify), `records` (catalog rows), `flow` (create, acknowledge,
reject, audited), `api` (HTTP), `cli` (`avidence-server transfer|agency|case ...`).
"""
