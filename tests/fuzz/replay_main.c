/*
 * Standalone driver for the fuzz targets, so that every build (gcc included) runs them
 * under CTest: it replays each file of the corpus directory given as argv[1], then a
 * fixed number of pseudo-random inputs derived from a fixed seed (MVM_FUZZ_RUNS overrides
 * the count). A crash or sanitizer report fails the test.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t
next_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static int
replay_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		char path[4096];
		FILE *f;
		uint8_t buf[65536];
		size_t len;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		f = fopen(path, "rb");
		if (f == NULL)
			continue;
		len = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		LLVMFuzzerTestOneInput(buf, len);
		n++;
	}
	closedir(d);
	return n;
}

int
main(int argc, char **argv)
{
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	long runs = 20000;
	const char *env = getenv("MVM_FUZZ_RUNS");
	int files = 0;

	if (env != NULL)
		runs = strtol(env, NULL, 10);
	if (argc > 1)
		files = replay_dir(argv[1]);
	for (long i = 0; i < runs; i++) {
		uint8_t buf[512];
		size_t len = next_rand(&seed) % sizeof(buf);

		for (size_t j = 0; j < len; j++)
			buf[j] = (uint8_t)next_rand(&seed);
		LLVMFuzzerTestOneInput(buf, len);
	}
	printf("replayed %d corpus files and %ld random inputs\n", files, runs);
	return 0;
}
