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
static void *read_share(void *arg) {
  long t = (long)arg, lo = t * FLOATS / threads, hi = (t + 1) * FLOATS / threads;
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (int p = 0; p < PASSES; p++)
    for (long i = lo; i < hi; i += 64) {
      s0 = _mm512_add_ps(s0, _mm512_loadu_ps(buf + i));
      s1 = _mm512_add_ps(s1, _mm512_loadu_ps(buf + i + 16));
      s2 = _mm512_add_ps(s2, _mm512_loadu_ps(buf + i + 32));
      s3 = _mm512_add_ps(s3, _mm512_loadu_ps(buf + i + 48));
    }
  sink[t] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
  return 0;
}
#else
#define LOADS "AVX2"
static void *read_share(void *arg) {
  long t = (long)arg, lo = t * FLOATS / threads, hi = (t + 1) * FLOATS / threads;
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (int p = 0; p < PASSES; p++)
    for (long i = lo; i < hi; i += 32) {
      s0 = _mm256_add_ps(s0, _mm256_loadu_ps(buf + i));
      s1 = _mm256_add_ps(s1, _mm256_loadu_ps(buf + i + 8));
      s2 = _mm256_add_ps(s2, _mm256_loadu_ps(buf + i + 16));
      s3 = _mm256_add_ps(s3, _mm256_loadu_ps(buf + i + 24));
    }
  float lanes[8];
  _mm256_storeu_ps(lanes, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  sink[t] = lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
  return 0;
}
#endif

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
