/* Temporary stand-alone `vessel-vmm img` until the vessel-vmm executable dispatches to it. */
#include "cli/vmm/img.h"

int main(int argc, char **argv) { return vmm_img_main(argc, argv); }
