"""Cases: an agency's case number with a global id, the agencies holding it, its evidence, and
its custody timeline. Modules: `records` (catalog rows), `custody` (timeline from the audit
log), `api` (HTTP)."""
