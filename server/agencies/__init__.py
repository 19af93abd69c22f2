"""Agencies (police, procuratorate, court, ...): who owns and who holds each evidence item.

Modules: `records` (create, look up, list agencies), `access` (what a principal may see: other
agencies' items answer exactly like missing ones), `cli` (`avidence-server agency ...`).
"""
