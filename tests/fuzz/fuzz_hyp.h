/* The hypervisor extension's part of the CPU fuzzers' starting state (fuzz_cpu, fuzz_cpu_jit):
 * one more 64-bit word of the input header picks the G stage (hgatp, its 16 KiB root somewhere in
 * RAM, whose bytes are the program's), the guest's vsatp, the delegations, hstatus's trap bits,
 * pending VS interrupts, the guest's timer, and whether the hart starts with V=1 (in VS or VU). */
#ifndef VESSEL_FUZZ_HYP_H
#define VESSEL_FUZZ_HYP_H

#include "vm/cpu/cpu_internal.h"

static inline void fuzz_hyp_state(rv_hart *h, uint64_t s, uint64_t ram_base) {
  if (!rv_has_h(h))
    return;
  static const uint64_t modes[4] = {0, 8, 9, 10};
  uint64_t ram_ppn = ram_base >> 12;
  h->hgatp = (modes[s & 3] << 60) | (ram_ppn + ((s >> 2) & 0x3c));
  h->vsatp = (modes[(s >> 8) & 3] << 60) | (ram_ppn + ((s >> 10) & 0x3f));
  h->hedeleg = (s >> 16) & 0xb1ff;
  h->hideleg = (s >> 32) & 0x444;
  h->hvip = (s >> 36) & 0x444;
  h->hstatus = (2ULL << 32) | (((s >> 40) & 7) << 20) | (((s >> 43) & 7) << 7);
  h->henvcfg = (s >> 46) & 1 ? MENVCFG_STCE : 0;
  h->hcounteren = (s >> 47) & 7;
  h->vstimecmp = (s >> 50) & 1 ? 0 : UINT64_MAX;
  h->htimedelta = s;
  if ((s >> 51) & 1)
    h->mie |= RV_MIP_VS_MASK;
  if ((s >> 53) & 1)
    h->mstatus |= MSTATUS_MPV;
  if ((s >> 52) & 1 && h->priv != RV_PRIV_M)
    rv_hyp_set_virt(h, true);
}

#endif
