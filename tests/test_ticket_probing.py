"""Guessing link tokens: slowed down per client, put on the audit log without flooding it, and
no way to lock real recipients out. Secrets are compared in constant time."""

from __future__ import annotations

import inspect
import secrets

import pytest

from avidence.server import auth, tokens
from avidence.server.limits import ProbeGuard
from avidence.server.tickets import codes, records, seals
from avidence.server.tickets.runtime import RUNTIME

from support.integrity import assert_chain_valid
from support.servers import Api
from support.tickets import audit_entries, issue, token_of, upload


@pytest.mark.parametrize("store", ["local"], indirect=True)
async def test_token_guessing_429_after_burst_audited_and_real_links_still_open(
    api: Api,
) -> None:
    evidence_id = await upload(api, b"abc")
    token = token_of(await issue(api, [evidence_id]))
    api.client.app[RUNTIME].probes = ProbeGuard(rate=0.01, burst=5, every=60)
    guesses = [secrets.token_urlsafe(32) for _ in range(20)]
    statuses = [(await api.client.get(f"/t/{guess}/receipt/x")).status for guess in guesses]
    assert statuses == [404] * 5 + [429] * 15
    limited = await api.client.get(f"/t/{guesses[0]}")  # the viewer page says so in HTML
    assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1
    entries = await audit_entries(api, "ticket.probing")
    assert len(entries) == 1  # once a minute per client, not once per guess
    assert entries[0].client == "127.0.0.1"
    assert entries[0].details["refused_since_last_entry"] == 1
    # The guesser's address does not lock the real link out.
    assert (await api.client.get(f"/t/{token}")).status == 200
    await assert_chain_valid(api.catalog.engine)


def test_probe_guard_reports_refusals_once_per_period() -> None:
    guard = ProbeGuard(rate=1.0, burst=2, every=60)
    assert guard.allow("a", now=0) and guard.allow("a", now=0)
    assert not guard.allow("a", now=0)
    assert guard.refused("a", now=0) == 1
    assert [guard.refused("a", now=t) for t in (1, 2, 30)] == [0, 0, 0]
    assert guard.refused("a", now=61) == 4  # the three held back, and this one
    assert guard.refused("b", now=61) == 1  # per client
    assert guard.allow("a", now=100)  # refills


def test_secret_comparisons_are_constant_time_or_by_hash() -> None:
    """Bearer tokens and link tokens are looked up by their SHA-256 (the secret itself is never
    compared); codes, cookies and grants are HMACs compared with hmac.compare_digest."""
    assert "hash_secret(secret)" in inspect.getsource(tokens.authenticate)
    assert "hash_token" in inspect.getsource(records.by_token)
    for module in (codes, seals):
        source = inspect.getsource(module)
        assert "compare_digest" in source
        # No `==` between secrets: every comparison of a digest or mac goes through it.
        for line in source.splitlines():
            if "==" in line and any(w in line for w in ("mac", "digest", "code_hash", "secret")):
                assert "compare_digest" in line or "len(" in line, line
    assert "compare_digest" not in inspect.getsource(auth)  # auth delegates to tokens
