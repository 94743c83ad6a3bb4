/*
 * tools/sha256_test.c: checks tools/sha256.c, the digest `machvm map` prints. The FIPS
 * 180-4 examples (sha256_selftest), then the same pseudo-random bytes hashed in one call
 * and in pieces of every length from 1 to 130, which must agree (the partial-block paths).
 * With FILE arguments it prints "HEX  FILE" lines as sha256sum(1) does, so a test can
 * compare the two. Exit 0 when every check passes, 1 otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"

int
main(int argc, char **argv)
{
	static unsigned char data[5000];
	uint8_t one[SHA256_DIGEST_LEN], part[SHA256_DIGEST_LEN];
	uint32_t x = 12345;
	int bad = sha256_selftest();

	if (bad != 0)
		fprintf(stderr, "sha256: %d FIPS 180-4 example(s) wrong\n", bad);
	for (size_t i = 0; i < sizeof(data); i++) {
		x = x * 1103515245u + 12345u;
		data[i] = (unsigned char)(x >> 16);
	}
	for (size_t piece = 1; piece <= 130; piece++) {
		struct sha256 c;

		sha256_init(&c);
		sha256_update(&c, data, sizeof(data));
		sha256_final(&c, one);
		sha256_init(&c);
		for (size_t off = 0; off < sizeof(data); off += piece)
			sha256_update(&c, data + off, sizeof(data) - off < piece ? sizeof(data) - off :
			    piece);
		sha256_final(&c, part);
		if (memcmp(one, part, sizeof(one)) != 0) {
			fprintf(stderr, "sha256: pieces of %zu bytes give another digest\n", piece);
			bad++;
		}
	}
	for (int i = 1; i < argc; i++) {
		FILE *f = fopen(argv[i], "rb");
		unsigned char buf[8192];
		char hex[SHA256_HEX_LEN];
		struct sha256 c;
		size_t n;

		if (f == NULL) {
			perror(argv[i]);
			return 1;
		}
		sha256_init(&c);
		while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
			sha256_update(&c, buf, n);
		fclose(f);
		sha256_final(&c, one);
		sha256_hex(one, hex);
		printf("%s  %s\n", hex, argv[i]);
	}
	if (bad == 0 && argc == 1)
		printf("sha256: FIPS 180-4 examples and piecewise hashing agree\n");
	return bad == 0 ? 0 : 1;
}
