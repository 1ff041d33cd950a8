/* status.c — status names and the message helpers every layer uses. */
#include "base/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *kiln_status_str(kiln_status s) {
    switch (s) {
    case KILN_OK: return "ok";
    case KILN_ERR_INVALID_ARG: return "invalid argument";
    case KILN_ERR_BAD_MODEL: return "bad model";
    case KILN_ERR_UNSUPPORTED: return "unsupported";
    case KILN_ERR_SHAPE: return "shape or dtype mismatch";
    case KILN_ERR_LIMIT: return "limit exceeded";
    case KILN_ERR_NO_MEMORY: return "out of memory";
    case KILN_ERR_IO: return "i/o error";
    case KILN_ERR_BUSY: return "busy";
    case KILN_ERR_TIMEOUT: return "timeout";
    case KILN_ERR_CANCELLED: return "cancelled";
    case KILN_ERR_INTERNAL: return "internal error";
    default: return "unknown status";
    }
}

const char *kiln_version(void) { return KILN_VERSION_STRING; }

void kiln_error_clear(kiln_error *err) {
    if (err) {
        err->code = KILN_OK;
        err->msg[0] = '\0';
    }
}

kiln_status kiln_fail(kiln_error *err, kiln_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

kiln_status kiln_fail_prefix(kiln_error *err, kiln_status code, const char *fmt, ...) {
    if (err) {
        char prefix[KILN_ERROR_MSG_MAX], old[KILN_ERROR_MSG_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        memcpy(old, err->msg, sizeof old);
        old[sizeof old - 1] = '\0';
        snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
        err->code = code;
    }
    return code;
}
