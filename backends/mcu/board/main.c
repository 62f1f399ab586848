/* Runs the model once on the sample input (input.c fills it) and prints every output through
   semihosting, as the exact float32 bits and a decimal: "out[i] = 0x3f800000 1.0000000e+00"
   (an io=int8 build: the int8 output sign-extended to 32 bits, and its value).
   The emulator skips main: it writes model_input itself and calls model_run. */
#include <stdint.h>
#include <string.h>
#include "model.h"

void sh_puts(const char* s);
#ifdef MODEL_IO_INT8  /* model_input/model_output are int8 views of the model's arena (model.h) */
void model_test_input(int8_t* x);
#else
void model_test_input(float* x);
float model_input[MODEL_IN_SIZE];
float model_output[MODEL_OUT_SIZE];
#endif

static char* put_uint(char* p, uint32_t v, int width) {
  char tmp[12];
  int n = 0;
  do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v || n < width);
  while (n) *p++ = tmp[--n];
  return p;
}

static char* put_float(char* p, float v) {  /* scientific, 8 significant digits (approximate) */
  uint32_t bits;
  memcpy(&bits, &v, 4);
  if (bits & 0x80000000u) { *p++ = '-'; v = -v; }
  if (v != v) { memcpy(p, "nan", 3); return p + 3; }
  if (v > 3.4028235e38f) { memcpy(p, "inf", 3); return p + 3; }
  int e = 0;
  double d = v;
  if (d != 0.0) {
    while (d >= 10.0) { d /= 10.0; e++; }
    while (d < 1.0) { d *= 10.0; e--; }
  }
  uint32_t m = (uint32_t)(d * 1e7 + 0.5);
  if (m >= 100000000u) { m /= 10; e++; }
  p = put_uint(p, m / 10000000u, 1);
  *p++ = '.';
  p = put_uint(p, m % 10000000u, 7);
  *p++ = 'e';
  *p++ = e < 0 ? '-' : '+';
  return put_uint(p, (uint32_t)(e < 0 ? -e : e), 2);
}

int main(void) {
  char line[64];
  model_test_input(model_input);
#ifdef MODEL_IO_INT8
  int rc = model_run();
#else
  int rc = model_run(model_input, model_output);
#endif
  for (int i = 0; i < MODEL_OUT_SIZE; i++) {
#ifdef MODEL_IO_INT8
    uint32_t bits = (uint32_t)(int32_t)model_output[i];
#else
    uint32_t bits;
    memcpy(&bits, &model_output[i], 4);
#endif
    char* p = line;
    memcpy(p, "out[", 4); p += 4;
    p = put_uint(p, (uint32_t)i, 1);
    memcpy(p, "] = 0x", 6); p += 6;
    for (int k = 7; k >= 0; k--) *p++ = "0123456789abcdef"[(bits >> (4 * k)) & 0xF];
    *p++ = ' ';
    p = put_float(p, model_output[i]);
    *p++ = '\n';
    *p = 0;
    sh_puts(line);
  }
  return rc;
}
