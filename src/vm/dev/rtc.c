/* goldfish RTC (google,goldfish-rtc): nanoseconds since the epoch, from the host's real-time
 * clock, plus a one-shot alarm that raises an interrupt.
 *
 *   0x00 TIME_LOW (reading it latches TIME_HIGH)   0x04 TIME_HIGH
 *   0x08 ALARM_LOW (writing it arms the alarm)      0x0c ALARM_HIGH
 *   0x10 IRQ_ENABLED   0x14 CLEAR_ALARM   0x18 ALARM_STATUS   0x1c CLEAR_INTERRUPT
 * Writing TIME_LOW/TIME_HIGH sets the guest's clock (an offset from the host's).
 */
#include <string.h>
#include <time.h>

#include "vm/dev/dev.h"

enum {
  RTC_TIME_LOW = 0x00,
  RTC_TIME_HIGH = 0x04,
  RTC_ALARM_LOW = 0x08,
  RTC_ALARM_HIGH = 0x0c,
  RTC_IRQ_ENABLED = 0x10,
  RTC_CLEAR_ALARM = 0x14,
  RTC_ALARM_STATUS = 0x18,
  RTC_CLEAR_INTERRUPT = 0x1c,
};

static int64_t host_realtime_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The host's clock as the RTC sees it: record/replay gives it the recording's (clock_ns) */
static int64_t rtc_host_ns(const rtc_state *r) {
  return r->clock_ns ? r->clock_ns(r->clock_opaque) : host_realtime_ns();
}

static uint64_t rtc_now(const rtc_state *r) { return (uint64_t)(rtc_host_ns(r) + r->offset_ns); }

void rtc_init(rtc_state *r, dev_irq_line irq) {
  memset(r, 0, sizeof(*r));
  r->irq = irq;
}

void rtc_update(rtc_state *r) {
  if (r->alarm_armed && rtc_now(r) >= r->alarm_ns) {
    r->alarm_armed = false;
    r->irq_pending = true;
  }
  dev_irq_set(&r->irq, r->irq_pending && r->irq_enabled);
}

int64_t rtc_ns_until_alarm(const rtc_state *r) {
  if (!r->alarm_armed)
    return INT64_MAX;
  uint64_t now = rtc_now(r);
  return r->alarm_ns <= now ? 0 : (int64_t)(r->alarm_ns - now);
}

bool rtc_read(void *dev, uint64_t off, unsigned size, uint64_t *val) {
  rtc_state *r = dev;
  if (off >= RTC_SIZE || size != 4 || (off & 3))
    return false;
  switch (off) {
  case RTC_TIME_LOW: {
    uint64_t now = rtc_now(r);
    r->time_high_latch = (uint32_t)(now >> 32);
    *val = (uint32_t)now;
    break;
  }
  case RTC_TIME_HIGH:
    *val = r->time_high_latch;
    break;
  case RTC_ALARM_LOW:
    *val = (uint32_t)r->alarm_ns;
    break;
  case RTC_ALARM_HIGH:
    *val = (uint32_t)(r->alarm_ns >> 32);
    break;
  case RTC_IRQ_ENABLED:
    *val = r->irq_enabled;
    break;
  case RTC_ALARM_STATUS:
    *val = r->alarm_armed;
    break;
  default:
    *val = 0;
    break;
  }
  return true;
}

bool rtc_write(void *dev, uint64_t off, unsigned size, uint64_t val) {
  rtc_state *r = dev;
  if (off >= RTC_SIZE || size != 4 || (off & 3))
    return false;
  uint32_t v = (uint32_t)val;
  switch (off) {
  case RTC_TIME_LOW: {
    /* the guest writes TIME_HIGH first, then TIME_LOW to commit the new time */
    uint64_t t = ((uint64_t)r->time_high_latch << 32) | v;
    r->offset_ns = (int64_t)(t - (uint64_t)rtc_host_ns(r));
    break;
  }
  case RTC_TIME_HIGH:
    r->time_high_latch = v;
    break;
  case RTC_ALARM_LOW:
    r->alarm_ns = ((uint64_t)r->alarm_high_latch << 32) | v;
    r->alarm_armed = true;
    break;
  case RTC_ALARM_HIGH:
    r->alarm_high_latch = v;
    break;
  case RTC_IRQ_ENABLED:
    r->irq_enabled = v & 1;
    break;
  case RTC_CLEAR_ALARM:
    r->alarm_armed = false;
    break;
  case RTC_CLEAR_INTERRUPT:
    r->irq_pending = false;
    break;
  default:
    break;
  }
  rtc_update(r);
  return true;
}

/* ------------------------------------------------------------------ save / restore */

#define RTC_STATE_VERSION 1

void rtc_save(const rtc_state *r, vmstate_writer *w) {
  vmstate_begin(w, "RTC_", RTC_STATE_VERSION);
  vmstate_put_i64(w, r->offset_ns);
  vmstate_put_u32(w, r->time_high_latch);
  vmstate_put_u32(w, r->alarm_high_latch);
  vmstate_put_u64(w, r->alarm_ns);
  vmstate_put_bool(w, r->alarm_armed);
  vmstate_put_bool(w, r->irq_enabled);
  vmstate_put_bool(w, r->irq_pending);
  vmstate_end_section(w);
}

int rtc_load(rtc_state *rtc, vmstate_reader *img, vs_error **err) {
  vmstate_reader r;
  if (vmstate_next(img, "RTC_", RTC_STATE_VERSION, &r, err) < 0)
    return -1;
  rtc->offset_ns = vmstate_get_i64(&r);
  rtc->time_high_latch = vmstate_get_u32(&r);
  rtc->alarm_high_latch = vmstate_get_u32(&r);
  rtc->alarm_ns = vmstate_get_u64(&r);
  rtc->alarm_armed = vmstate_get_bool(&r);
  rtc->irq_enabled = vmstate_get_bool(&r);
  rtc->irq_pending = vmstate_get_bool(&r);
  return vmstate_end(&r, err);
}
