/*
 * tools/sha256.h: SHA-256 (FIPS 180-4) for the machvm command, so that `machvm map` can
 * print the digest sha256sum(1) prints for the same bytes without a library dependency.
 * Thread safety: a context belongs to one thread at a time; nothing is shared.
 */
#ifndef MVM_TOOLS_SHA256_H
#define MVM_TOOLS_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_LEN 32
#define SHA256_HEX_LEN (2 * SHA256_DIGEST_LEN + 1)   /* with its NUL */

struct sha256 {
	uint32_t h[8];
	uint64_t nbytes;          /* bytes hashed so far */
	uint8_t buf[64];          /* a partial block */
	size_t nbuf;
};

void sha256_init(struct sha256 *c);
void sha256_update(struct sha256 *c, const void *data, size_t len);
void sha256_final(struct sha256 *c, uint8_t digest[SHA256_DIGEST_LEN]);

/* The digest as lower-case hex, as sha256sum(1) prints it. */
void sha256_hex(const uint8_t digest[SHA256_DIGEST_LEN], char hex[SHA256_HEX_LEN]);

/* Check the implementation against the FIPS 180-4 examples: 0 if they all match. */
int sha256_selftest(void);

#endif /* MVM_TOOLS_SHA256_H */
