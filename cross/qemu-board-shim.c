/*
 * Fills three gaps between qemu 7.2's user-mode emulation (Debian 12's qemu-user) and a real
 * ARM board, for cross/test-aarch64 and cross/test-armv7. Built for the target and preloaded
 * into every emulated process (LD_PRELOAD through qemu's -E):
 *
 * 1. termios2. qemu 7.2 answers ENOSYS to the TCGETS2/TCSETS2/TCSETSW2/TCSETSF2 ioctls, which
 *    the serialport crate uses to configure a port (newer qemu implements them). They are
 *    translated here to the classic TCGETS/TCSETS* ioctls, which qemu forwards, with the speed
 *    carried as a Bnnn code in c_cflag. Pseudo-terminals ignore the speed anyway.
 *
 * 2. /proc/cpuinfo. Under qemu a program reads the host's, an x86 one: tract then finds no
 *    "CPU part" (so no Cortex-A72 tuning) and no "Features" line (it logs a warning on every
 *    start). Opening /proc/cpuinfo returns instead the file named by LOOKOUT_QEMU_CPUINFO
 *    (cross/cpuinfo/<cpu>, copied from real boards), when that variable is set.
 *
 * 3. The cache geometry. tract-linalg sizes its matrix blocks from
 *    /sys/devices/system/cpu/cpu0/cache and .../topology, which under qemu are the host's: the
 *    same aarch64 binary then runs different loops on different hosts. Files under those two
 *    directories are opened instead from the directory LOOKOUT_QEMU_SYSFS names
 *    (cross/sysfs/<cpu>/cpu0, a Pi's caches), when that variable is set.
 *
 * Nothing else is changed: every other call goes to the C library. The library takes
 * LD_PRELOAD out of its process's environment once loaded, so that host programs the tests
 * start (mosquitto, python3, cc) are not handed an aarch64 library; emulated children get it
 * again from the emulator's command line (tests/common/mod.rs, target_command).
 */
#define _GNU_SOURCE
#include <asm/ioctls.h>
#include <asm/termbits.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
/* Not <sys/ioctl.h> or <termios.h>: the C library's termios clashes with the kernel's. */

static const struct { unsigned code; unsigned rate; } rates[] = {
    {B50, 50},           {B75, 75},           {B110, 110},         {B134, 134},
    {B150, 150},         {B200, 200},         {B300, 300},         {B600, 600},
    {B1200, 1200},       {B1800, 1800},       {B2400, 2400},       {B4800, 4800},
    {B9600, 9600},       {B19200, 19200},     {B38400, 38400},     {B57600, 57600},
    {B115200, 115200},   {B230400, 230400},   {B460800, 460800},   {B500000, 500000},
    {B576000, 576000},   {B921600, 921600},   {B1000000, 1000000}, {B1152000, 1152000},
    {B1500000, 1500000}, {B2000000, 2000000}, {B2500000, 2500000}, {B3000000, 3000000},
    {B3500000, 3500000}, {B4000000, 4000000},
};

static unsigned rate_of(unsigned code) {
    for (unsigned i = 0; i < sizeof rates / sizeof rates[0]; i++)
        if (rates[i].code == code) return rates[i].rate;
    return 0;
}

static unsigned code_of(unsigned rate) {
    for (unsigned i = 0; i < sizeof rates / sizeof rates[0]; i++)
        if (rates[i].rate == rate) return rates[i].code;
    return B38400;
}

__attribute__((constructor)) static void forget_preload(void) { unsetenv("LD_PRELOAD"); }

typedef int (*ioctl_fn)(int, unsigned long, ...);

int ioctl(int fd, unsigned long request, ...) {
    static ioctl_fn real;
    if (!real) real = (ioctl_fn)dlsym(RTLD_NEXT, "ioctl");
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);

    if (request == TCGETS2) {
        struct termios t;
        int rc = real(fd, TCGETS, &t);
        if (rc != 0) return rc;
        struct termios2 *t2 = arg;
        memset(t2, 0, sizeof *t2);
        t2->c_iflag = t.c_iflag;
        t2->c_oflag = t.c_oflag;
        t2->c_cflag = t.c_cflag;
        t2->c_lflag = t.c_lflag;
        t2->c_line = t.c_line;
        memcpy(t2->c_cc, t.c_cc, sizeof t.c_cc);
        t2->c_ospeed = rate_of(t.c_cflag & CBAUD);
        t2->c_ispeed = t2->c_ospeed;
        return 0;
    }
    if (request == TCSETS2 || request == TCSETSW2 || request == TCSETSF2) {
        const struct termios2 *t2 = arg;
        struct termios t;
        memset(&t, 0, sizeof t);
        t.c_iflag = t2->c_iflag;
        t.c_oflag = t2->c_oflag;
        t.c_cflag = t2->c_cflag;
        t.c_lflag = t2->c_lflag;
        t.c_line = t2->c_line;
        memcpy(t.c_cc, t2->c_cc, sizeof t.c_cc);
        if ((t.c_cflag & CBAUD) == BOTHER)
            t.c_cflag = (t.c_cflag & ~(CBAUD | (CBAUD << IBSHIFT))) | code_of(t2->c_ospeed);
        unsigned long classic = request == TCSETS2 ? TCSETS : request == TCSETSW2 ? TCSETSW : TCSETSF;
        return real(fd, classic, &t);
    }
    return real(fd, request, arg);
}

/* A memfd holding the board's cpuinfo, or -1 to open the real file. */
static int board_cpuinfo(const char *path) {
    const char *source = getenv("LOOKOUT_QEMU_CPUINFO");
    if (!source || !*source || !path || strcmp(path, "/proc/cpuinfo") != 0) return -1;
    typedef int (*open_fn)(const char *, int, ...);
    static open_fn real_open;
    if (!real_open) real_open = (open_fn)dlsym(RTLD_NEXT, "open");
    int in = real_open(source, O_RDONLY | O_CLOEXEC);
    if (in < 0) return -1;
    int out = memfd_create("cpuinfo", MFD_CLOEXEC);
    char buf[4096];
    ssize_t n;
    while (out >= 0 && (n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) != n) {
            close(out);
            out = -1;
        }
    close(in);
    if (out >= 0) lseek(out, 0, SEEK_SET);
    return out;
}

/* The board's copy of a per-CPU cache or topology file in `buf`, or NULL for `path` itself. */
static const char *board_sysfs(const char *path, char *buf, size_t size) {
    static const char prefix[] = "/sys/devices/system/cpu/cpu0/";
    const char *root = getenv("LOOKOUT_QEMU_SYSFS");
    if (!root || !*root || !path || strncmp(path, prefix, sizeof prefix - 1) != 0) return NULL;
    const char *rest = path + sizeof prefix - 1;
    if (strncmp(rest, "cache", 5) != 0 && strncmp(rest, "topology", 8) != 0) return NULL;
    int n = snprintf(buf, size, "%s/%s", root, rest);
    return n > 0 && (size_t)n < size ? buf : NULL;
}

static int mode_arg(int flags, va_list ap) {
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, int) : 0;
}

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);

static int open_common(const char *symbol, const char *path, int flags, int mode) {
    int fd = board_cpuinfo(path);
    if (fd >= 0) return fd;
    char buf[4096];
    const char *board = board_sysfs(path, buf, sizeof buf);
    open_fn real = (open_fn)dlsym(RTLD_NEXT, symbol);
    return real(board ? board : path, flags, mode);
}

static int openat_common(const char *symbol, int dirfd, const char *path, int flags, int mode) {
    int fd = board_cpuinfo(path);
    if (fd >= 0) return fd;
    char buf[4096];
    const char *board = board_sysfs(path, buf, sizeof buf);
    openat_fn real = (openat_fn)dlsym(RTLD_NEXT, symbol);
    return real(dirfd, board ? board : path, flags, mode);
}

int open(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    int mode = mode_arg(flags, ap);
    va_end(ap);
    return open_common("open", path, flags, mode);
}

int open64(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    int mode = mode_arg(flags, ap);
    va_end(ap);
    return open_common("open64", path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    int mode = mode_arg(flags, ap);
    va_end(ap);
    return openat_common("openat", dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    int mode = mode_arg(flags, ap);
    va_end(ap);
    return openat_common("openat64", dirfd, path, flags, mode);
}
