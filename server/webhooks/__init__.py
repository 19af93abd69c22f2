"""Webhooks per agency, so existing case systems learn of events without polling.

Events: `evidence.finished`, `evidence.integrity_failed`, `transfer.created`,
`transfer.acknowledged`, `transfer.rejected`, `ticket.viewed`. They are taken from the audit log
as it is written (`outbox.plan` and `outbox.queue`, in the entry's transaction), so whatever
process writes the entry (server, worker, CLI) also queues the deliveries, in the catalog. A
dispatcher in each server process sends them, signed with HMAC-SHA256 over `timestamp.body`, and
retries failures with exponential backoff; deliveries are listed and can be replayed through the
API.

Modules: `signature` (sign and verify), `records` (webhooks and deliveries in the catalog),
`outbox` (audit entry -> deliveries), `dispatch` (the sender loop), `api` (HTTP).
"""
