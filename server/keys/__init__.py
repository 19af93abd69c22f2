"""Where the server's signing key lives: key files outside the catalog, or a PKCS#11 token.

`base.KeyProvider` is the contract; `files` and `pkcs11` implement it; `history` certifies each
new key with the previous one so verifiers can pin the first key and follow the chain.
"""
