#include "CTockEd25519.h"

// swift-crypto builds BoringSSL with every symbol prefixed "CCryptoBoringSSL_" and links it
// into every binary that uses Crypto; this is its ED25519_sign (curve25519.h), which works on
// the stack only.
extern int CCryptoBoringSSL_ED25519_sign(uint8_t out_sig[64], const uint8_t *message, size_t message_len,
                                         const uint8_t private_key[64]);

int tock_ed25519_sign(uint8_t signature[64], const uint8_t *message, size_t message_length, const uint8_t private_key[64]) {
    return CCryptoBoringSSL_ED25519_sign(signature, message, message_length, private_key);
}
