// nettle's AES-SIV-CMAC (RFC 5297), the AEAD that NTS uses for its packets (RFC 8915 §5.6),
// as chrony does. Debian: nettle-dev.
#ifndef TOCK_CNETTLE_SHIM_H
#define TOCK_CNETTLE_SHIM_H

#include <nettle/aes.h>
#include <nettle/siv-cmac.h>

#endif
