"""`Avidence-Digests` on a PATCH: whole-file digests declared while streaming one plain upload
are checked at finish exactly like digests declared in Upload-Metadata, on every store."""

from __future__ import annotations

import hashlib
import os

import blake3
from test_tus_protocol import create, head, patch

from avidence.server.catalog import uploads as uploads_db

from support.servers import Api, metadata

DATA = os.urandom(300_000)
BLAKE3 = blake3.blake3(DATA).hexdigest()
SHA256 = hashlib.sha256(DATA).hexdigest()
DECLARED = f"blake3={BLAKE3}, sha256={SHA256}"


async def _evidence(api: Api, evidence_id: str) -> dict[str, object]:
    response = await api.client.get(f"/api/evidence/{evidence_id}", headers=api.auth())
    assert response.status == 200, await response.text()
    document: dict[str, object] = await response.json()
    return document


async def test_options_names_the_declarable_digests(api: Api) -> None:
    response = await api.client.options("/files/")
    # only what this server computes (the `digests` setting): blake3 and sha256 by default
    assert response.headers["Avidence-Digest-Algorithms"] == "blake3,sha256"


async def test_digests_declared_on_the_last_patch_make_verified_evidence(api: Api) -> None:
    url = await create(api, len(DATA))
    first = await patch(api, url, DATA[:100_000], 0)
    assert first.status == 204
    last = await patch(api, url, DATA[100_000:], 100_000, **{"Avidence-Digests": DECLARED})
    assert last.status == 204, await last.text()
    evidence_id = last.headers["Avidence-Evidence-Id"]
    document = await _evidence(api, evidence_id)
    assert document["blake3"] == BLAKE3 and document["sha256"] == SHA256


async def test_digests_declared_early_are_kept_for_the_finish(api: Api) -> None:
    url = await create(api, len(DATA))
    wrong = "0" * 64
    first = await patch(api, url, DATA[:1000], 0, **{"Avidence-Digests": f"blake3={wrong}"})
    assert first.status == 204
    last = await patch(api, url, DATA[1000:], 1000)
    assert last.status == 460
    assert (await last.json())["error"]["code"] == "declared_digest_mismatch"
    state = await api.client.get(f"/api/uploads/{url.rsplit('/', 1)[1]}", headers=api.auth())
    assert (await state.json())["state"] == "quarantined"


async def test_a_declaration_cannot_be_changed_and_the_refused_body_is_not_taken(
    api: Api,
) -> None:
    url = await create(api, len(DATA))
    assert (await patch(api, url, DATA[:1000], 0, **{"Avidence-Digests": DECLARED})).status == 204
    other = f"blake3={'1' * 64}"
    refused = await patch(api, url, DATA[1000:], 1000, **{"Avidence-Digests": other})
    assert refused.status == 409
    assert "already declared" in (await refused.json())["error"]["message"]
    assert (await head(api, url)).headers["Upload-Offset"] == "1000"
    # Repeating the same declaration is fine.
    done = await patch(api, url, DATA[1000:], 1000, **{"Avidence-Digests": DECLARED})
    assert done.status == 204


async def test_malformed_declarations_are_400_and_take_nothing(api: Api) -> None:
    url = await create(api, len(DATA))
    for value in (
        "blake3",
        f"md5={'0' * 32}",
        "blake3=xyz",
        f"blake3={BLAKE3}, blake3={BLAKE3}",
        f"blake3={BLAKE3[:-1]}",
    ):
        response = await patch(api, url, DATA[:10], 0, **{"Avidence-Digests": value})
        assert response.status == 400, value
        assert (await response.json())["error"]["code"] == "bad_request"
    assert (await head(api, url)).headers["Upload-Offset"] == "0"


async def test_a_digest_the_server_does_not_compute_is_refused_400(api: Api) -> None:
    """sm3 is off by default: a declared sm3 could not be checked, so it is refused at creation
    and on a PATCH, and nothing of the upload changes."""
    assert "sm3" not in api.settings.digests
    sm3 = hashlib.new("sm3", DATA).hexdigest()
    headers = {
        **api.auth(),
        "Upload-Length": str(len(DATA)),
        "Upload-Metadata": metadata(case="C-1", sm3="0" * 64),
    }
    created = await api.client.post("/files/", headers=headers)
    assert created.status == 400
    body = await created.json()
    assert body["error"]["code"] == "digest_not_computed"
    assert body["error"]["details"]["not_computed"] == ["sm3"]
    url = await create(api, len(DATA))
    refused = await patch(api, url, DATA[:1000], 0, **{"Avidence-Digests": f"sm3={sm3}"})
    assert refused.status == 400
    assert (await refused.json())["error"]["code"] == "digest_not_computed"
    assert (await head(api, url)).headers["Upload-Offset"] == "0"  # the body was not taken


async def test_an_unchecked_digest_stored_before_the_rule_is_computed_at_finish(api: Api) -> None:
    """An upload whose metadata already holds a wrong sm3 (declared before such declarations
    were refused) is quarantined, not made evidence with the unchecked value."""
    url = await create(api, len(DATA))
    upload_id = url.rsplit("/", 1)[1]
    record = await uploads_db.get(api.catalog.engine, upload_id)
    assert record is not None
    await uploads_db.update(
        api.catalog.engine, upload_id, metadata={**record.metadata, "sm3": "0" * 64}
    )
    last = await patch(api, url, DATA, 0)
    assert last.status == 460
    assert (await last.json())["error"]["code"] == "declared_digest_mismatch"
