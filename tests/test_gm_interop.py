"""The national suite against a peer nobody here wrote: the `openssl` command line (OpenSSL 3).

SM2 signatures go both ways (GB/T 32918 with SM3 and the default ID 1234567812345678, as
`openssl pkeyutl -rawin -digest sm3 -pkeyopt distid:` makes and checks them), SM3 digests match
`openssl dgst -sm3`, and an SM4-GCM segment sealed by `storage.sealformat` is opened by openssl:
`openssl enc` refuses AEAD modes, so the ciphertext is decrypted with `-sm4-ctr` from GCM's
second counter block and the tag recomputed from `-sm4-ecb` blocks and GHASH (NIST SP 800-38D),
the GHASH below checked first against AES-GCM.
"""

from __future__ import annotations

import base64
import os
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from avidence.client.canonical import PublicKeys, VerificationError, canonical_json
from avidence.client.signatures import SM2_DEFAULT_ID, SM2_SM3, key_id, load_public
from avidence.client.verify import file_digests
from avidence.server.keys import files
from avidence.server.signing import Signer
from avidence.storage.sealformat import HEADER, NONCE, TAG, Header, Sealer, Suite

DISTID = f"distid:{SM2_DEFAULT_ID.decode()}"
BODY = {"type": "avidence.receipt/v1", "evidence_id": "ev-1", "sm3": "ab" * 32, "名": "审讯"}


def openssl(*args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *args], input=data, capture_output=True, timeout=30)


def openssl_verifies(pub: Path, message: bytes, signature: bytes, folder: Path) -> bool:
    (folder / "msg").write_bytes(message)
    (folder / "sig.der").write_bytes(signature)
    done = openssl(
        "pkeyutl", "-verify", "-pubin", "-inkey", str(pub), "-in", str(folder / "msg"),
        "-sigfile", str(folder / "sig.der"), "-rawin", "-digest", "sm3", "-pkeyopt", DISTID,
    )  # fmt: skip
    return done.returncode == 0 and b"Signature Verified Successfully" in done.stdout


def openssl_signs(private: Path, message: bytes, folder: Path, *, distid: str = DISTID) -> bytes:
    (folder / "msg").write_bytes(message)
    done = openssl(
        "pkeyutl", "-sign", "-inkey", str(private), "-in", str(folder / "msg"),
        "-rawin", "-digest", "sm3", "-pkeyopt", distid,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture()
def sm2_signer(tmp_path: Path) -> Signer:
    files.write_new(tmp_path / "keys", algorithm=SM2_SM3)
    (key_file,) = (tmp_path / "keys").glob("sm2-*.pem")
    return Signer(files.load_file(key_file))


def test_sm2_signature_by_avidence_verifies_with_openssl(
    sm2_signer: Signer, tmp_path: Path
) -> None:
    document = sm2_signer.sign("receipt", BODY)
    assert document["algorithm"] == "sm2-sm3"
    pub = tmp_path / "pub.pem"
    pub.write_text(sm2_signer.public_pem)  # the PEM `GET /api/keys` publishes
    signature = base64.b64decode(document["signature"])
    assert openssl_verifies(pub, canonical_json(BODY), signature, tmp_path)
    # openssl itself refuses a changed document: the check above can fail
    changed = canonical_json({**BODY, "sm3": "cd" * 32})
    assert not openssl_verifies(pub, changed, signature, tmp_path)


def test_sm2_signature_by_openssl_verifies_in_avidence(tmp_path: Path) -> None:
    private = tmp_path / "openssl-sm2.pem"
    assert openssl("genpkey", "-algorithm", "SM2", "-out", str(private)).returncode == 0
    pem = openssl("pkey", "-in", str(private), "-pubout").stdout.decode()
    public = load_public(pem)
    keys = PublicKeys.load(pem)
    signature = openssl_signs(private, canonical_json(BODY), tmp_path)
    signed = {
        "receipt": BODY,
        "algorithm": "sm2-sm3",
        "key_id": key_id(public),
        "signature": base64.b64encode(signature).decode(),
    }
    assert keys.verify(signed, body="receipt") == BODY
    # the distinguishing ID is part of what is signed: another one does not verify
    other = openssl_signs(private, canonical_json(BODY), tmp_path, distid="distid:ALICE123")
    with pytest.raises(VerificationError, match="does not match"):
        keys.verify({**signed, "signature": base64.b64encode(other).decode()}, body="receipt")
    # a document naming Ed25519 for an SM2 key is refused, not checked the other way
    with pytest.raises(VerificationError, match="is sm2-sm3"):
        keys.verify({**signed, "algorithm": "ed25519"}, body="receipt")
    # and the openssl-made key serves as the server's signing key file (`signing_key`)
    signer = Signer(files.load_file(private))
    assert signer.key_id == key_id(public) and signer.algorithm == "sm2-sm3"
    pub = tmp_path / "pub.pem"
    pub.write_text(pem)
    ours = base64.b64decode(signer.sign("receipt", BODY)["signature"])
    assert openssl_verifies(pub, canonical_json(BODY), ours, tmp_path)


def test_sm3_digest_of_a_file_matches_openssl_dgst(tmp_path: Path) -> None:
    path = tmp_path / "clip.ts"
    path.write_bytes(os.urandom(5 * 1024 * 1024 + 17))  # more than one read block
    size, digests = file_digests(path, ["sm3"])
    done = openssl("dgst", "-sm3", "-r", str(path))
    assert done.returncode == 0, done.stderr
    assert size == path.stat().st_size
    assert digests["sm3"] == done.stdout.split()[0].decode()


# GHASH (NIST SP 800-38D, 6.3-6.4): multiplication in GF(2^128) with GCM's bit order.
_R = 0xE1 << 120


def _gf_mul(x: int, y: int) -> int:
    z, v = 0, y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ _R if v & 1 else v >> 1
    return z


def _ghash(h: bytes, aad: bytes, text: bytes) -> bytes:
    def blocks(data: bytes) -> list[bytes]:
        padded = data + b"\0" * (-len(data) % 16)
        return [padded[i : i + 16] for i in range(0, len(padded), 16)]

    y, key = 0, int.from_bytes(h, "big")
    for block in [*blocks(aad), *blocks(text), struct.pack(">QQ", 8 * len(aad), 8 * len(text))]:
        y = _gf_mul(y ^ int.from_bytes(block, "big"), key)
    return y.to_bytes(16, "big")


def _gcm_tag(encrypt_block: Any, nonce: bytes, aad: bytes, text: bytes) -> bytes:
    """T = E(K, J0) xor GHASH(E(K, 0^128), A, C), for a 96-bit nonce (J0 = nonce | 1)."""
    h = encrypt_block(bytes(16))
    j0 = encrypt_block(nonce + b"\0\0\0\1")
    return bytes(a ^ b for a, b in zip(j0, _ghash(h, aad, text), strict=True))


def test_ghash_helper_reproduces_aes_gcm_tags() -> None:
    key, nonce, aad, data = os.urandom(32), os.urandom(12), os.urandom(45), os.urandom(1000)
    sealed = AESGCM(key).encrypt(nonce, data, aad)

    def aes_block(block: bytes) -> bytes:
        encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        return encryptor.update(block) + encryptor.finalize()

    assert _gcm_tag(aes_block, nonce, aad, sealed[:-TAG]) == sealed[-TAG:]


def _sm4_openssl(mode: str, key: bytes, data: bytes, *, iv: bytes | None = None) -> bytes:
    args = ["enc", f"-sm4-{mode}", "-nosalt", "-K", key.hex()]
    args += ["-iv", iv.hex()] if iv is not None else ["-nopad"]
    done = openssl(*args, data=data)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("final", [False, True])
def test_sm4_gcm_segment_opens_with_openssl(final: bool) -> None:
    header = Header(Suite.GM, 4096, os.urandom(16))
    sealer = Sealer(header, "originals/ev-1", os.urandom(16))
    data = os.urandom(1234 if final else 4096)
    blob = sealer.seal_segment(3, data, final=final)
    nonce, text, tag = blob[:NONCE], blob[NONCE:-TAG], blob[-TAG:]
    # The associated data as the format documents it, rebuilt here rather than borrowed.
    name = sealer.key.encode()
    aad = b"seg" + header.pack() + struct.pack(">H", len(name)) + name
    aad += struct.pack(">QB", 3, final)
    assert len(header.pack()) == HEADER.size
    # GCM encrypts with CTR from counter block J0 + 1 = nonce | 2 (SP 800-38D, 7.1)
    assert _sm4_openssl("ctr", sealer.data_key, text, iv=nonce + b"\0\0\0\2") == data
    ecb = lambda block: _sm4_openssl("ecb", sealer.data_key, block)  # noqa: E731
    assert _gcm_tag(ecb, nonce, aad, text) == tag
    # a segment claiming another index (so other associated data) gets another tag
    wrong = aad[:-9] + struct.pack(">QB", 4, final)
    assert _gcm_tag(ecb, nonce, wrong, text) != tag


@pytest.mark.parametrize(
    "signature",
    [b"", b"\x00", b"0" * 70, b"\x30\x02\x02\x00", bytes(range(256)), b"\x30\x06\x02\x01\x00" * 2],
)
def test_malformed_sm2_signature_is_refused_not_an_internal_error(
    sm2_signer: Signer, signature: bytes
) -> None:
    """Tongsuo raises InternalError for bytes that are not DER; a verifier must say "does not
    match", never crash (a 500 on the server, a traceback in `avidence verify`)."""
    forged = base64.b64encode(signature).decode()
    document = {**sm2_signer.sign("receipt", BODY), "signature": forged}
    with pytest.raises(VerificationError, match="does not match"):
        PublicKeys.load(sm2_signer.public_pem).verify(document, body="receipt")
    good = sm2_signer.sign("receipt", BODY)  # and the library is still usable afterwards
    assert PublicKeys.load(sm2_signer.public_pem).verify(good, body="receipt") == BODY
