// Ed25519 signing (RFC 8032) into a caller's buffer, without a heap allocation: BoringSSL's
// ED25519_sign as swift-crypto links it. swift-crypto's own `signature(for:)` returns a fresh
// `Data` and so allocates per signature, which a Roughtime batch must not (one signature per
// batch, and a batch may hold a single request).
#ifndef TOCK_CTOCKED25519_H
#define TOCK_CTOCKED25519_H

#include <stddef.h>
#include <stdint.h>

/// Writes the 64-byte Ed25519 signature of `message` under `private_key` (the 32-byte seed
/// followed by the 32-byte public key) into `signature`. Returns 1 on success.
int tock_ed25519_sign(uint8_t signature[64], const uint8_t *message, size_t message_length, const uint8_t private_key[64]);

#endif
