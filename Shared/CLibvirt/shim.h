#ifndef VIOLIN_CLIBVIRT_SHIM_H
#define VIOLIN_CLIBVIRT_SHIM_H
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stdlib.h>
#include <string.h>

/* The CPU weight of a domain: "weight" (test driver, Xen) or "cpu_shares" (QEMU/KVM).
 * Typed parameters are unions with fixed-size names, so they are read here, once.
 * Returns 0 and fills *value and field (VIR_TYPED_PARAM_FIELD_LENGTH bytes), or -1. */
static inline int violin_vir_cpu_weight(virDomainPtr d, unsigned long long *value, char *field) {
    int n = 0;
    char *type = virDomainGetSchedulerType(d, &n);
    if (!type) return -1;
    free(type);
    if (n <= 0) return -1;
    virTypedParameterPtr p = calloc((size_t)n, sizeof *p);
    if (!p) return -1;
    int rc = -1;
    if (virDomainGetSchedulerParameters(d, p, &n) == 0) {
        for (int i = 0; i < n; i++) {
            if (strcmp(p[i].field, "weight") && strcmp(p[i].field, "cpu_shares")) continue;
            switch (p[i].type) {
            case VIR_TYPED_PARAM_UINT: *value = p[i].value.ui; break;
            case VIR_TYPED_PARAM_ULLONG: *value = p[i].value.ul; break;
            case VIR_TYPED_PARAM_INT: *value = (unsigned long long)p[i].value.i; break;
            case VIR_TYPED_PARAM_LLONG: *value = (unsigned long long)p[i].value.l; break;
            default: continue;
            }
            memcpy(field, p[i].field, VIR_TYPED_PARAM_FIELD_LENGTH);
            rc = 0;
            break;
        }
    }
    free(p);
    return rc;
}

/* Sets the CPU weight through the field the domain's scheduler names. 0 or -1. */
static inline int violin_vir_set_cpu_weight(virDomainPtr d, unsigned long long value) {
    unsigned long long current = 0;
    char field[VIR_TYPED_PARAM_FIELD_LENGTH];
    if (violin_vir_cpu_weight(d, &current, field) != 0) return -1;
    virTypedParameter p;
    memset(&p, 0, sizeof p);
    memcpy(p.field, field, VIR_TYPED_PARAM_FIELD_LENGTH);
    if (strcmp(field, "weight") == 0) { p.type = VIR_TYPED_PARAM_UINT; p.value.ui = (unsigned int)value; }
    else { p.type = VIR_TYPED_PARAM_ULLONG; p.value.ul = value; }
    return virDomainSetSchedulerParameters(d, &p, 1);
}

/* The last libvirt error's message, or "unknown error". */
static inline const char *violin_vir_last_error(void) {
    virErrorPtr e = virGetLastError();
    return (e && e->message) ? e->message : "unknown error";
}

static inline int violin_vir_last_error_code(void) {
    virErrorPtr e = virGetLastError();
    return e ? e->code : 0;
}
#endif
