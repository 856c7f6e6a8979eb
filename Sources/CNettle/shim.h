// nettle's AES-SIV-CMAC (RFC 5297), the AEAD that NTS uses for its packets (RFC 8915 §5.6),
// as chrony does; its SHA-512, Roughtime's hash (RFC 10049 §5.3), whose context lives on the
// caller's stack; and its Ed25519 (RFC 8032 §5.1), Roughtime's signature, from libhogweed,
// nettle's public-key half. hogweed takes its working memory from GMP's allocation functions,
// which TockCrypto replaces (gmp.h, mp_set_memory_functions) so that signing allocates
// nothing. Debian: nettle-dev, which brings libgmp-dev.
#ifndef TOCK_CNETTLE_SHIM_H
#define TOCK_CNETTLE_SHIM_H

#include <gmp.h>
#include <nettle/aes.h>
#include <nettle/eddsa.h>
#include <nettle/sha2.h>
#include <nettle/siv-cmac.h>

#endif
