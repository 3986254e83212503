/*
 * eio_shim: an LD_PRELOAD object that makes storage writes and syncs fail with
 * EIO, for hil-tests/tests/fault_io.rs. No root, no device mapper.
 *
 * While the file named by EIO_SHIM_TRIGGER exists, write, pwrite, pwrite64,
 * writev, pwritev, fsync, fdatasync and sync_file_range on a file descriptor
 * whose path (readlink of /proc/self/fd/N) starts with EIO_SHIM_PREFIX return
 * -1 with errno EIO and do nothing (the data never reaches the file, as when a
 * disk fails the write). Every other call goes to libc untouched, so the
 * process's logs (pipes) and sockets keep working. EIO_SHIM_CALLS, when set,
 * limits the failing calls to a comma-separated list of those names (e.g.
 * `fsync,fdatasync,sync_file_range`: writes land, syncs fail). Each injected error is
 * reported on stderr (the first 20 per process) as
 * `eio_shim: EIO <n>: <call>(<path>)`.
 *
 * Build: cc -shared -fPIC -O2 -o eio_shim.so eio_shim.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*pwrite64_fn)(int, const void *, size_t, off64_t);
typedef ssize_t (*writev_fn)(int, const struct iovec *, int);
typedef ssize_t (*pwritev_fn)(int, const struct iovec *, int, off_t);
typedef int (*sync_fn)(int);
typedef int (*sync_range_fn)(int, off64_t, off64_t, unsigned int);

static write_fn real_write;
static pwrite_fn real_pwrite;
static pwrite64_fn real_pwrite64;
static writev_fn real_writev;
static pwritev_fn real_pwritev;
static sync_fn real_fsync;
static sync_fn real_fdatasync;
static sync_range_fn real_sync_file_range;

static const char *prefix;
static size_t prefix_len;
static const char *trigger;
static char calls[256]; /* ",name,name," or empty for every call */
static unsigned long injected;

__attribute__((constructor)) static void eio_shim_init(void) {
    real_write = (write_fn)dlsym(RTLD_NEXT, "write");
    real_pwrite = (pwrite_fn)dlsym(RTLD_NEXT, "pwrite");
    real_pwrite64 = (pwrite64_fn)dlsym(RTLD_NEXT, "pwrite64");
    real_writev = (writev_fn)dlsym(RTLD_NEXT, "writev");
    real_pwritev = (pwritev_fn)dlsym(RTLD_NEXT, "pwritev");
    real_fsync = (sync_fn)dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = (sync_fn)dlsym(RTLD_NEXT, "fdatasync");
    real_sync_file_range = (sync_range_fn)dlsym(RTLD_NEXT, "sync_file_range");
    prefix = getenv("EIO_SHIM_PREFIX");
    trigger = getenv("EIO_SHIM_TRIGGER");
    prefix_len = prefix ? strlen(prefix) : 0;
    const char *only = getenv("EIO_SHIM_CALLS");
    if (only != NULL && *only != '\0') {
        snprintf(calls, sizeof calls, ",%s,", only);
    }
}

/* True (and reported) when this call on `fd` must fail now. */
static int inject(int fd, const char *call) {
    if (prefix_len == 0 || trigger == NULL || access(trigger, F_OK) != 0) {
        return 0;
    }
    if (calls[0] != '\0') {
        char name[40];
        snprintf(name, sizeof name, ",%s,", call);
        if (strstr(calls, name) == NULL) {
            return 0;
        }
    }
    char link[64];
    char path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0 || (size_t)n < prefix_len || strncmp(path, prefix, prefix_len) != 0) {
        return 0;
    }
    path[n] = '\0';
    unsigned long nth = __atomic_add_fetch(&injected, 1, __ATOMIC_RELAXED);
    if (nth <= 20 && real_write != NULL) {
        char msg[4200];
        int len = snprintf(msg, sizeof msg, "eio_shim: EIO %lu: %s(%s)\n", nth, call, path);
        if (len > 0) {
            real_write(2, msg, (size_t)len < sizeof msg ? (size_t)len : sizeof msg - 1);
        }
    }
    errno = EIO;
    return 1;
}

ssize_t write(int fd, const void *buf, size_t count) {
    if (inject(fd, "write")) return -1;
    return real_write(fd, buf, count);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    if (inject(fd, "pwrite")) return -1;
    return real_pwrite(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off64_t offset) {
    if (inject(fd, "pwrite64")) return -1;
    return real_pwrite64(fd, buf, count, offset);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    if (inject(fd, "writev")) return -1;
    return real_writev(fd, iov, iovcnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset) {
    if (inject(fd, "pwritev")) return -1;
    return real_pwritev(fd, iov, iovcnt, offset);
}

int fsync(int fd) {
    if (inject(fd, "fsync")) return -1;
    return real_fsync(fd);
}

int fdatasync(int fd) {
    if (inject(fd, "fdatasync")) return -1;
    return real_fdatasync(fd);
}

int sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags) {
    if (inject(fd, "sync_file_range")) return -1;
    return real_sync_file_range(fd, offset, nbytes, flags);
}
