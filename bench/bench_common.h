/*
 * bench/bench_common.h: helpers every benchmark shares (included by each; static).
 */
#ifndef MVM_BENCH_COMMON_H
#define MVM_BENCH_COMMON_H

#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static bool
cpu_usable(int cpu)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return false;
	return CPU_ISSET(cpu, &set);
}

static int
cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return a < b ? -1 : a > b;
}

/* The median of v[0..n) (n > 0); sorts v. */
static double
median(double *v, unsigned n)
{
	qsort(v, n, sizeof(v[0]), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Other load on the machine skews every figure, the cross-CPU ones most: say so. */
static void
print_load(const char *when)
{
	FILE *f = fopen("/proc/loadavg", "r");
	double l1 = -1;

	if (f != NULL) {
		if (fscanf(f, "%lf", &l1) != 1)
			l1 = -1;
		fclose(f);
	}
	if (l1 >= 0)
		printf("load average (1 min) %s: %.2f%s\n", when, l1,
		    l1 > 0.5 ? "  (other work may be running: figures may be skewed)" : "");
}

#pragma GCC diagnostic pop

#endif /* MVM_BENCH_COMMON_H */
