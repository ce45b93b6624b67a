/* Live migration (placeholder, filled in by the migration step). */
#include <errno.h>

#include "vm/machine.h"

void vm_migration_destroy(vm *m) { (void)m; }

int vm_migrate_start(vm *m, const char *hostport, vs_error **err) {
  (void)m;
  return vs_error_set(err, ENOSYS, "migrate to %s: not implemented yet", hostport);
}

vm *vm_migrate_incoming(const char *hostport, const vm_restore_opts *opts, vs_error **err) {
  (void)opts;
  vs_error_set(err, ENOSYS, "incoming migration on %s: not implemented yet", hostport);
  return NULL;
}

int vm_powerdown(vm *m, vs_error **err) {
  (void)m;
  return vs_error_set(err, ENOSYS, "powerdown: not implemented yet");
}
