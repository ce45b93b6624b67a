/* `vessel-vmm ctl SOCKET COMMAND ...`: the control socket's command-line client. */
#ifndef VESSEL_CLI_VMM_CTL_H
#define VESSEL_CLI_VMM_CTL_H

/* argv[0] is "ctl". Returns the process exit status: 0 ok, 1 failure, 2 bad arguments. */
int vmm_ctl_main(int argc, char **argv);

#endif
