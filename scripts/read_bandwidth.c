/* How fast this machine's cores read memory: the ceiling for decoding one
 * sequence with f32 weights, which reads every weight once per token
 * (README "Decoding against llama.cpp").
 *
 *   gcc -O3 -march=native -pthread scripts/read_bandwidth.c -o /tmp/read_bandwidth && /tmp/read_bandwidth
 *
 * Reads a 512 MiB buffer five times with AVX-512 loads (AVX2 loads where the
 * compiler targets no AVX-512F), on 1 then 2 threads, and prints GB/s (10^9
 * bytes) and which loads it used. */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define FLOATS (128L * 1024 * 1024)
#define PASSES 5

static float *buf;
static int threads;
static volatile float sink[2];

#ifdef __AVX512F__
#define LOADS "AVX-512"
#define WIDTH 16
typedef __m512 vec;
#define ZERO _mm512_setzero_ps
#define LOAD _mm512_loadu_ps
#define ADD _mm512_add_ps
#define STORE _mm512_storeu_ps
#else
#define LOADS "AVX2"
#define WIDTH 8
typedef __m256 vec;
#define ZERO _mm256_setzero_ps
#define LOAD _mm256_loadu_ps
#define ADD _mm256_add_ps
#define STORE _mm256_storeu_ps
#endif

static void *read_share(void *arg) {
  long t = (long)arg, lo = t * FLOATS / threads, hi = (t + 1) * FLOATS / threads;
  vec s0 = ZERO(), s1 = s0, s2 = s0, s3 = s0;
  for (int p = 0; p < PASSES; p++)
    for (long i = lo; i < hi; i += 4 * WIDTH) {
      s0 = ADD(s0, LOAD(buf + i));
      s1 = ADD(s1, LOAD(buf + i + WIDTH));
      s2 = ADD(s2, LOAD(buf + i + 2 * WIDTH));
      s3 = ADD(s3, LOAD(buf + i + 3 * WIDTH));
    }
  float lanes[WIDTH], sum = 0;
  STORE(lanes, ADD(ADD(s0, s1), ADD(s2, s3)));
  for (int l = 0; l < WIDTH; l++) sum += lanes[l];
  sink[t] = sum;
  return 0;
}

int main(void) {
  buf = aligned_alloc(64, FLOATS * sizeof(float));
  if (!buf) return 1;
  for (long i = 0; i < FLOATS; i++) buf[i] = 1.0f;
  for (threads = 1; threads <= 2; threads++) {
    pthread_t th[2];
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long t = 0; t < threads; t++) pthread_create(&th[t], 0, read_share, (void *)t);
    for (int t = 0; t < threads; t++) pthread_join(th[t], 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    printf("%d thread(s), " LOADS " loads: %.1f GB/s\n", threads, PASSES * FLOATS * sizeof(float) / s / 1e9);
  }
  return 0;
}
