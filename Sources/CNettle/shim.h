// nettle's AES-SIV-CMAC (RFC 5297), the AEAD that NTS uses for its packets (RFC 8915 §5.6),
// as chrony does, and its SHA-512, Roughtime's hash (RFC 10049 §5.3), whose context lives on
// the caller's stack. Debian: nettle-dev.
#ifndef TOCK_CNETTLE_SHIM_H
#define TOCK_CNETTLE_SHIM_H

#include <nettle/aes.h>
#include <nettle/sha2.h>
#include <nettle/siv-cmac.h>

#endif
