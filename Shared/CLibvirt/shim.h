#ifndef VIOLIN_CLIBVIRT_SHIM_H
#define VIOLIN_CLIBVIRT_SHIM_H
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#endif
