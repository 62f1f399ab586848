/* Cortex-M4 start-up for QEMU's mps2-an386 (and any M4 with flash at 0 and SRAM at 0x20000000).
   Copies .data, zeroes .bss, enables the FPU, calls main and reports its status through
   semihosting (SYS_EXIT). In your firmware, keep your own start-up and just call model_run. */
#include <stdint.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);

/* ARM semihosting: bkpt 0xAB with the operation in r0 and its argument in r1. */
int sh_call(int op, const void* arg) {
  register int r0 __asm__("r0") = op;
  register const void* r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

void sh_puts(const char* s) { sh_call(0x04, s); } /* SYS_WRITE0 */

void sh_exit(int status) {
  /* SYS_EXIT with ADP_Stopped_ApplicationExit (0x20026): QEMU exits 0; anything else: 1 */
  sh_call(0x18, (const void*)(uintptr_t)(status == 0 ? 0x20026 : 0x20023));
  for (;;) {}
}

void Reset_Handler(void) {
  uint32_t* src = &_sidata;
  for (uint32_t* dst = &_sdata; dst < &_edata;) *dst++ = *src++;
  for (uint32_t* dst = &_sbss; dst < &_ebss;) *dst++ = 0;
  *(volatile uint32_t*)0xE000ED88 |= 0xFu << 20; /* CPACR: CP10, CP11 full access (FPU on) */
  __asm__ volatile("dsb\n\tisb");
  sh_exit(main());
}

void Fault_Handler(void) {
  sh_puts("cococ: fault\n");
  sh_exit(1);
}

__attribute__((section(".vectors"), used)) const void* const vector_table[16] = {
  &_estack, (void*)Reset_Handler, (void*)Fault_Handler, (void*)Fault_Handler, (void*)Fault_Handler,
  (void*)Fault_Handler, (void*)Fault_Handler, 0, 0, 0, 0, (void*)Fault_Handler, (void*)Fault_Handler, 0,
  (void*)Fault_Handler, (void*)Fault_Handler,
};
