#!/usr/bin/env python3
"""Known-answer vectors for TockCrypto, computed with Python's `cryptography` (OpenSSL), not nettle.

AES-SIV-CMAC (RFC 5297): nettle's message API takes one associated-data string and one nonce.
`AESSIV(key).encrypt(plaintext, [ad, nonce])` gives S2V the components in that order (AD, then
nonce, then plaintext); if nettle used the other order its output would match the `swapped`
vector instead, which the script also prints.

Cookie keys: HKDF-SHA256 (RFC 5869) with no salt and info "tock nts cookie key" || key id
(big-endian uint32), 32 bytes.

Prints Swift literals for Tests/TockCryptoTests/AESSIVTests.swift and CookieKeyTests.swift.
Usage: python3 Tests/TockCryptoTests/make_vectors.py   (needs `pip install cryptography`)
"""
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def ramp(start, count):
    return bytes((start + i) & 0xFF for i in range(count))


# An NTPv4 client request header (LI 0, VN 4, mode 3) as the associated data NTS uses.
ntp_header = bytes([0x23]) + bytes(39) + ramp(0xE0, 8)

siv_cases = [
    # name, key, nonce, associated data, plaintext
    ("cmac256", ramp(0x00, 32), ramp(0xA0, 16), ntp_header, ramp(0x40, 20)),
    ("cmac512", ramp(0x00, 64), ramp(0xA0, 16), ntp_header, ramp(0x40, 100)),
    ("cmac256EmptyAD", ramp(0x80, 32), b"\x01", b"", ramp(0x10, 16)),
    ("cmac512EmptyPlaintext", ramp(0x40, 64), ramp(0x00, 16), ntp_header, b""),
    ("cmac256Short", ramp(0x20, 32), ramp(0xF0, 12), b"tock", b"NTS"),
]

print("// AES-SIV-CMAC: key, nonce, associated data, plaintext, sealed = tag || ciphertext")
for name, key, nonce, ad, plaintext in siv_cases:
    sealed = AESSIV(key).encrypt(plaintext, [ad, nonce])
    swapped = AESSIV(key).encrypt(plaintext, [nonce, ad])
    print(f'SIVVector(name: "{name}",')
    print(f'    key: "{key.hex()}",')
    print(f'    nonce: "{nonce.hex()}",')
    print(f'    associatedData: "{ad.hex()}",')
    print(f'    plaintext: "{plaintext.hex()}",')
    print(f'    sealed: "{sealed.hex()}",')
    print(f'    swapped: "{swapped.hex()}"),')

print()
print("// Cookie keys: master, key id, key")
for master, key_id in [(ramp(0x00, 32), 0), (ramp(0x00, 32), 1), (ramp(0x55, 32), 0x01020304)]:
    info = b"tock nts cookie key" + struct.pack(">I", key_id)
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)
    print(f'("{master.hex()}", 0x{key_id:08x}, "{key.hex()}"),')
