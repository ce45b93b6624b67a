/* `vessel-vmm img ...`: create and inspect disk images (raw, qcow2). */
#ifndef VESSEL_CLI_VMM_IMG_H
#define VESSEL_CLI_VMM_IMG_H

/* argv[0] is "img". Returns the process exit status: 0 ok, 1 failure, 2 bad arguments. */
int vmm_img_main(int argc, char **argv);

#endif
