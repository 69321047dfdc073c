/*
 * A V4L2 camera in an LD_PRELOAD library, so lookout's real capture code (the `v4l` crate:
 * open, syscall(SYS_ioctl), mmap, poll) runs end to end on machines that cannot load kernel
 * modules. Built and preloaded by tests/v4l.rs; nothing here is part of lookout itself.
 *
 * Opening LOOKOUT_SHIM_DEVICE (default /dev/video-lookout-test), directly or through a symlink
 * (absolute target), returns a memfd that stands
 * in for the device node: the driver's buffers are slices of it, so the caller's mmap() of
 * the fd works untouched. The V4L2 ioctls on that fd are answered here:
 *   QUERYCAP, ENUM_FMT, ENUM_FRAMESIZES, ENUM_FRAMEINTERVALS, G/S/TRY_FMT, G/S_PARM,
 *   REQBUFS, QUERYBUF, QBUF, DQBUF, STREAMON, STREAMOFF.
 * Formats: YUYV and NV12 at 640x480 and 320x240, and MJPG at the size of the JPEG named by
 * LOOKOUT_SHIM_JPEG (when set); 30, 60 or 250 fps. Frames are paced on CLOCK_MONOTONIC and
 * stamped with it like a UVC driver. Every delivered frame carries a running frame number:
 * in YUYV/NV12, bit i is the luma of the 8x8 block at column 8*i of rows 0-7 (235 = 1,
 * 16 = 0); in MJPEG, a COM segment "lookout-frame=N" (padded to a varying length, so
 * `bytesused` changes from frame to frame).
 *
 * Like a driver that falls behind a slow reader, frames due while no buffer was queued are
 * skipped (their `sequence` numbers are missing); the frame number counts delivered frames.
 *
 * Unplug: with LOOKOUT_SHIM_DISCONNECT_AFTER=N, the DQBUF after N delivered frames fails
 * with ENODEV, poll reports POLLERR|POLLHUP and every later ioctl on open handles fails with
 * ENODEV, as after a USB unplug; opening the device fails with ENOENT for
 * LOOKOUT_SHIM_OFFLINE_MS milliseconds (default 300), then it is back. This happens once.
 * Stall: with LOOKOUT_SHIM_STALL_AFTER=N, after N delivered frames the camera goes silent
 * (poll times out) until it is closed and opened again, like a wedged UVC camera. Once.
 * LOOKOUT_SHIM_STRIDE_PAD=B pads YUYV rows by B bytes (drivers may).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/videodev2.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* glibc declares poll()'s array write-only, which is not true of a poll implementation. */
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define MAX_HANDLES 8
#define MAX_BUFFERS 16

typedef struct {
    uint32_t fourcc;
    uint32_t width, height;
} Mode;

static const uint32_t INTERVAL_DEN[] = {30, 60, 250};
#define N_INTERVALS 3

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int initialised;
static char device_path[512] = "/dev/video-lookout-test";
static long disconnect_after; /* frames; 0 = never */
static long offline_ms = 300;
static long stall_after; /* frames; 0 = never */
static int stalled, stalled_once;
static uint32_t stride_pad;
static unsigned char *jpeg;
static size_t jpeg_len;
static Mode modes[8];
static int n_modes;

static uint64_t delivered_total;
static uint64_t frame_number;
static int disconnected_once;
static uint64_t offline_until_ns;

typedef struct {
    int used, fd, dead;
    uint32_t fourcc, width, height, bytesperline, sizeimage;
    uint32_t den; /* frames per second: timeperframe = 1/den */
    uint32_t n_buffers, buffer_length;
    int queue[MAX_BUFFERS];
    int queued_count;
    int streaming;
    uint64_t start_ns, next_k;
} Handle;

static Handle handles[MAX_HANDLES];

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns) {
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* Width and height from a JPEG's start-of-frame segment. */
static int jpeg_size(const unsigned char *d, size_t n, uint32_t *w, uint32_t *h) {
    size_t i = 2;
    while (i + 9 < n) {
        if (d[i] != 0xFF) return -1;
        unsigned char marker = d[i + 1];
        size_t len = ((size_t)d[i + 2] << 8) | d[i + 3];
        if (marker >= 0xC0 && marker <= 0xC2) {
            *h = ((uint32_t)d[i + 5] << 8) | d[i + 6];
            *w = ((uint32_t)d[i + 7] << 8) | d[i + 8];
            return 0;
        }
        i += 2 + len;
    }
    return -1;
}

static void init_locked(void) {
    if (initialised) return;
    initialised = 1;
    const char *s = getenv("LOOKOUT_SHIM_DEVICE");
    if (s && *s) snprintf(device_path, sizeof device_path, "%s", s);
    if ((s = getenv("LOOKOUT_SHIM_DISCONNECT_AFTER"))) disconnect_after = atol(s);
    if ((s = getenv("LOOKOUT_SHIM_OFFLINE_MS"))) offline_ms = atol(s);
    if ((s = getenv("LOOKOUT_SHIM_STRIDE_PAD"))) stride_pad = (uint32_t)atol(s);
    if ((s = getenv("LOOKOUT_SHIM_STALL_AFTER"))) stall_after = atol(s);
    const uint32_t yuyv = V4L2_PIX_FMT_YUYV, nv12 = V4L2_PIX_FMT_NV12;
    modes[n_modes++] = (Mode){yuyv, 640, 480};
    modes[n_modes++] = (Mode){yuyv, 320, 240};
    modes[n_modes++] = (Mode){nv12, 640, 480};
    modes[n_modes++] = (Mode){nv12, 320, 240};
    if ((s = getenv("LOOKOUT_SHIM_JPEG"))) {
        FILE *f = fopen(s, "rb");
        if (f) {
            fseek(f, 0, SEEK_END);
            long n = ftell(f);
            fseek(f, 0, SEEK_SET);
            jpeg = malloc((size_t)n);
            if (jpeg && fread(jpeg, 1, (size_t)n, f) == (size_t)n) jpeg_len = (size_t)n;
            fclose(f);
        }
        uint32_t w, h;
        if (jpeg_len > 4 && jpeg_size(jpeg, jpeg_len, &w, &h) == 0) {
            modes[n_modes++] = (Mode){V4L2_PIX_FMT_MJPEG, w, h};
        } else {
            fprintf(stderr, "v4l shim: LOOKOUT_SHIM_JPEG=%s is not a readable JPEG\n", s);
            abort();
        }
    }
}

static Handle *find(int fd) {
    for (int i = 0; i < MAX_HANDLES; i++)
        if (handles[i].used && handles[i].fd == fd) return &handles[i];
    return NULL;
}

/* The formats offered, in order, without repeats. */
static int format_list(uint32_t *out) {
    int n = 0;
    for (int i = 0; i < n_modes; i++) {
        int seen = 0;
        for (int j = 0; j < n; j++) seen |= out[j] == modes[i].fourcc;
        if (!seen) out[n++] = modes[i].fourcc;
    }
    return n;
}

static int mode_exists(uint32_t fourcc, uint32_t w, uint32_t h) {
    for (int i = 0; i < n_modes; i++)
        if (modes[i].fourcc == fourcc && modes[i].width == w && modes[i].height == h) return 1;
    return 0;
}

static void fill_pix(Handle *h, struct v4l2_pix_format *pix, uint32_t fourcc, uint32_t w,
                     uint32_t ht) {
    memset(pix, 0, sizeof *pix);
    pix->width = w;
    pix->height = ht;
    pix->pixelformat = fourcc;
    pix->field = V4L2_FIELD_NONE;
    if (fourcc == V4L2_PIX_FMT_YUYV) {
        pix->bytesperline = w * 2 + stride_pad;
        pix->sizeimage = pix->bytesperline * ht;
        pix->colorspace = V4L2_COLORSPACE_SMPTE170M;
    } else if (fourcc == V4L2_PIX_FMT_NV12) {
        pix->bytesperline = w;
        pix->sizeimage = w * ht * 3 / 2;
        pix->colorspace = V4L2_COLORSPACE_SMPTE170M;
    } else {
        pix->bytesperline = 0;
        pix->sizeimage = (uint32_t)jpeg_len + 4096;
        pix->colorspace = V4L2_COLORSPACE_SRGB;
    }
    (void)h;
}

/* Chooses what the driver would: the requested format if offered (else the first), and the
 * offered size nearest the requested one. */
static void choose(struct v4l2_pix_format *req, uint32_t *fourcc, uint32_t *w, uint32_t *h) {
    *fourcc = modes[0].fourcc;
    for (int i = 0; i < n_modes; i++)
        if (modes[i].fourcc == req->pixelformat) *fourcc = req->pixelformat;
    long best = -1;
    for (int i = 0; i < n_modes; i++) {
        if (modes[i].fourcc != *fourcc) continue;
        long d = labs((long)modes[i].width - (long)req->width) +
                 labs((long)modes[i].height - (long)req->height);
        if (best < 0 || d < best) {
            best = d;
            *w = modes[i].width;
            *h = modes[i].height;
        }
    }
}

static void set_luma_block_bits(unsigned char *y_row, uint32_t x, uint32_t y, uint64_t n,
                                unsigned char *out) {
    (void)y_row;
    if (y < 8 && x < 256) {
        *out = ((n >> (x / 8)) & 1) ? 235 : 16;
    } else {
        *out = (unsigned char)(16 + (x + y + n) % 220);
    }
}

/* Writes frame `n` into `buf`; returns bytesused. */
static uint32_t render(Handle *h, unsigned char *buf, uint64_t n) {
    uint32_t w = h->width, ht = h->height;
    if (h->fourcc == V4L2_PIX_FMT_YUYV) {
        for (uint32_t y = 0; y < ht; y++) {
            unsigned char *row = buf + (size_t)y * h->bytesperline;
            memset(row + w * 2, 0x55, stride_pad);
            for (uint32_t x = 0; x < w; x += 2) {
                set_luma_block_bits(row, x, y, n, &row[2 * x]);
                set_luma_block_bits(row, x + 1, y, n, &row[2 * x + 2]);
                int code = y < 8 && x < 256;
                row[2 * x + 1] = code ? 128 : (unsigned char)(16 + (x + n) % 224);
                row[2 * x + 3] = code ? 128 : (unsigned char)(16 + (y * 3) % 224);
            }
        }
        return h->bytesperline * ht;
    }
    if (h->fourcc == V4L2_PIX_FMT_NV12) {
        for (uint32_t y = 0; y < ht; y++)
            for (uint32_t x = 0; x < w; x++)
                set_luma_block_bits(NULL, x, y, n, &buf[(size_t)y * w + x]);
        unsigned char *uv = buf + (size_t)w * ht;
        for (uint32_t y = 0; y < ht / 2; y++)
            for (uint32_t x = 0; x < w; x += 2) {
                int code = y < 4 && x < 256;
                uv[(size_t)y * w + x] = code ? 128 : (unsigned char)(16 + (x + n) % 224);
                uv[(size_t)y * w + x + 1] = code ? 128 : (unsigned char)(16 + (y * 6) % 224);
            }
        return w * ht * 3 / 2;
    }
    /* MJPEG: SOI, a COM segment naming the frame (its length varies with n), the rest. */
    char text[64];
    int text_len = snprintf(text, sizeof text, "lookout-frame=%llu", (unsigned long long)n);
    int pad = (int)(n % 7);
    memset(text + text_len, ' ', (size_t)pad);
    text_len += pad;
    size_t seg = 2 + (size_t)text_len;
    buf[0] = 0xFF;
    buf[1] = 0xD8;
    buf[2] = 0xFF;
    buf[3] = 0xFE;
    buf[4] = (unsigned char)(seg >> 8);
    buf[5] = (unsigned char)seg;
    memcpy(buf + 6, text, (size_t)text_len);
    memcpy(buf + 6 + text_len, jpeg + 2, jpeg_len - 2);
    return (uint32_t)(6 + text_len + jpeg_len - 2);
}

static int fail(int e) {
    errno = e;
    return -1;
}

static double fabs_d(double x) { return x < 0 ? -x : x; }

static uint64_t interval_ns(Handle *h) { return 1000000000ull / h->den; }

static void disconnect_all_locked(void) {
    for (int i = 0; i < MAX_HANDLES; i++)
        if (handles[i].used) handles[i].dead = 1;
    offline_until_ns = now_ns() + (uint64_t)offline_ms * 1000000ull;
    disconnected_once = 1;
}

static int dqbuf_locked(Handle *h, struct v4l2_buffer *b, int nonblocking) {
    if (!h->streaming) return fail(EINVAL);
    if (h->queued_count == 0) return fail(EAGAIN);
    if (disconnect_after > 0 && !disconnected_once &&
        delivered_total >= (uint64_t)disconnect_after) {
        disconnect_all_locked();
        return fail(ENODEV);
    }
    if (stall_after > 0 && !stalled_once && delivered_total >= (uint64_t)stall_after) {
        stalled = stalled_once = 1;
    }
    if (stalled) return fail(EAGAIN);
    uint64_t iv = interval_ns(h);
    uint64_t due = h->start_ns + h->next_k * iv;
    uint64_t now = now_ns();
    if (now < due) {
        if (nonblocking) return fail(EAGAIN);
        pthread_mutex_unlock(&lock);
        sleep_ns(due - now);
        pthread_mutex_lock(&lock);
        if (h->dead) return fail(ENODEV);
        now = now_ns();
    }
    /* Frames that came due while every buffer sat full were never captured. */
    uint64_t elapsed_k = (now - h->start_ns) / iv;
    uint64_t k = h->next_k;
    if (elapsed_k >= (uint64_t)h->queued_count && k < elapsed_k - (uint64_t)h->queued_count + 1)
        k = elapsed_k - (uint64_t)h->queued_count + 1;
    int index = h->queue[0];
    memmove(h->queue, h->queue + 1, sizeof(int) * (size_t)(h->queued_count - 1));
    h->queued_count--;
    unsigned char *frame = calloc(1, h->buffer_length);
    if (!frame) return fail(ENOMEM);
    uint32_t used = render(h, frame, frame_number);
    if (pwrite(h->fd, frame, used, (off_t)index * h->buffer_length) != (ssize_t)used) {
        free(frame);
        return fail(EIO);
    }
    free(frame);
    uint64_t stamp = h->start_ns + k * iv;
    memset(b, 0, sizeof *b);
    b->index = (uint32_t)index;
    b->type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    b->memory = V4L2_MEMORY_MMAP;
    b->bytesused = used;
    b->flags = V4L2_BUF_FLAG_MAPPED | V4L2_BUF_FLAG_DONE | V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC |
               V4L2_BUF_FLAG_TSTAMP_SRC_SOE;
    b->field = V4L2_FIELD_NONE;
    b->timestamp.tv_sec = (time_t)(stamp / 1000000000ull);
    b->timestamp.tv_usec = (suseconds_t)(stamp % 1000000000ull / 1000);
    b->sequence = (uint32_t)k;
    b->m.offset = (uint32_t)index * h->buffer_length;
    b->length = h->buffer_length;
    h->next_k = k + 1;
    frame_number++;
    delivered_total++;
    return 0;
}

static int shim_ioctl_locked(Handle *h, unsigned long request, void *arg) {
    if (h->dead) return fail(ENODEV);
    switch (request) {
    case VIDIOC_QUERYCAP: {
        struct v4l2_capability *c = arg;
        memset(c, 0, sizeof *c);
        snprintf((char *)c->driver, sizeof c->driver, "lookout-shim");
        snprintf((char *)c->card, sizeof c->card, "Lookout Test Camera");
        snprintf((char *)c->bus_info, sizeof c->bus_info, "platform:lookout-shim");
        c->version = (6u << 16) | (1u << 8);
        c->device_caps = V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_STREAMING;
        c->capabilities = c->device_caps | V4L2_CAP_DEVICE_CAPS;
        return 0;
    }
    case VIDIOC_ENUM_FMT: {
        struct v4l2_fmtdesc *d = arg;
        uint32_t list[8];
        int n = format_list(list);
        if (d->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || d->index >= (uint32_t)n) return fail(EINVAL);
        uint32_t index = d->index, type = d->type;
        memset(d, 0, sizeof *d);
        d->index = index;
        d->type = type;
        d->pixelformat = list[index];
        const char *name = list[index] == V4L2_PIX_FMT_YUYV   ? "YUYV 4:2:2"
                           : list[index] == V4L2_PIX_FMT_NV12 ? "Y/UV 4:2:0"
                                                              : "Motion-JPEG";
        snprintf((char *)d->description, sizeof d->description, "%s", name);
        if (list[index] == V4L2_PIX_FMT_MJPEG) d->flags = V4L2_FMT_FLAG_COMPRESSED;
        return 0;
    }
    case VIDIOC_ENUM_FRAMESIZES: {
        struct v4l2_frmsizeenum *s = arg;
        uint32_t seen = 0;
        for (int i = 0; i < n_modes; i++) {
            if (modes[i].fourcc != s->pixel_format) continue;
            if (seen++ == s->index) {
                s->type = V4L2_FRMSIZE_TYPE_DISCRETE;
                s->discrete.width = modes[i].width;
                s->discrete.height = modes[i].height;
                return 0;
            }
        }
        return fail(EINVAL);
    }
    case VIDIOC_ENUM_FRAMEINTERVALS: {
        struct v4l2_frmivalenum *f = arg;
        if (!mode_exists(f->pixel_format, f->width, f->height) || f->index >= N_INTERVALS)
            return fail(EINVAL);
        f->type = V4L2_FRMIVAL_TYPE_DISCRETE;
        f->discrete.numerator = 1;
        f->discrete.denominator = INTERVAL_DEN[f->index];
        return 0;
    }
    case VIDIOC_G_FMT: {
        struct v4l2_format *f = arg;
        if (f->type != V4L2_BUF_TYPE_VIDEO_CAPTURE) return fail(EINVAL);
        fill_pix(h, &f->fmt.pix, h->fourcc, h->width, h->height);
        return 0;
    }
    case VIDIOC_TRY_FMT:
    case VIDIOC_S_FMT: {
        struct v4l2_format *f = arg;
        if (f->type != V4L2_BUF_TYPE_VIDEO_CAPTURE) return fail(EINVAL);
        if (request == VIDIOC_S_FMT && (h->streaming || h->n_buffers)) return fail(EBUSY);
        uint32_t fourcc, w = 0, ht = 0;
        choose(&f->fmt.pix, &fourcc, &w, &ht);
        fill_pix(h, &f->fmt.pix, fourcc, w, ht);
        if (request == VIDIOC_S_FMT) {
            h->fourcc = fourcc;
            h->width = w;
            h->height = ht;
            h->bytesperline = f->fmt.pix.bytesperline;
            h->sizeimage = f->fmt.pix.sizeimage;
        }
        return 0;
    }
    case VIDIOC_G_PARM:
    case VIDIOC_S_PARM: {
        struct v4l2_streamparm *p = arg;
        if (p->type != V4L2_BUF_TYPE_VIDEO_CAPTURE) return fail(EINVAL);
        if (request == VIDIOC_S_PARM) {
            struct v4l2_fract t = p->parm.capture.timeperframe;
            double want = t.numerator ? (double)t.denominator / t.numerator : 30.0;
            uint32_t best = INTERVAL_DEN[0];
            for (int i = 0; i < N_INTERVALS; i++)
                if (fabs_d(INTERVAL_DEN[i] - want) < fabs_d(best - want)) best = INTERVAL_DEN[i];
            h->den = best;
        }
        memset(&p->parm, 0, sizeof p->parm);
        p->parm.capture.capability = V4L2_CAP_TIMEPERFRAME;
        p->parm.capture.timeperframe.numerator = 1;
        p->parm.capture.timeperframe.denominator = h->den;
        return 0;
    }
    case VIDIOC_REQBUFS: {
        struct v4l2_requestbuffers *r = arg;
        if (r->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || r->memory != V4L2_MEMORY_MMAP)
            return fail(EINVAL);
        if (h->streaming) return fail(EBUSY);
        if (r->count == 0) {
            h->n_buffers = 0;
            h->queued_count = 0;
            return 0;
        }
        uint32_t count = r->count < 2 ? 2 : r->count > MAX_BUFFERS ? MAX_BUFFERS : r->count;
        long page = sysconf(_SC_PAGESIZE);
        uint32_t length = (uint32_t)((h->sizeimage + (uint32_t)page - 1) / (uint32_t)page * (uint32_t)page);
        if (ftruncate(h->fd, (off_t)count * length) != 0) return fail(ENOMEM);
        h->n_buffers = count;
        h->buffer_length = length;
        h->queued_count = 0;
        r->count = count;
        return 0;
    }
    case VIDIOC_QUERYBUF: {
        struct v4l2_buffer *b = arg;
        if (b->index >= h->n_buffers) return fail(EINVAL);
        uint32_t index = b->index;
        memset(b, 0, sizeof *b);
        b->index = index;
        b->type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
        b->memory = V4L2_MEMORY_MMAP;
        b->flags = V4L2_BUF_FLAG_MAPPED | V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC;
        b->length = h->buffer_length;
        b->m.offset = index * h->buffer_length;
        return 0;
    }
    case VIDIOC_QBUF: {
        struct v4l2_buffer *b = arg;
        if (b->index >= h->n_buffers || b->memory != V4L2_MEMORY_MMAP) return fail(EINVAL);
        for (int i = 0; i < h->queued_count; i++)
            if (h->queue[i] == (int)b->index) return fail(EINVAL);
        h->queue[h->queued_count++] = (int)b->index;
        b->flags = V4L2_BUF_FLAG_MAPPED | V4L2_BUF_FLAG_QUEUED;
        return 0;
    }
    case VIDIOC_DQBUF:
        return dqbuf_locked(h, arg, 0);
    case VIDIOC_STREAMON:
        if (h->n_buffers == 0) return fail(EINVAL);
        if (!h->streaming) {
            h->streaming = 1;
            h->start_ns = now_ns();
            h->next_k = 0;
        }
        return 0;
    case VIDIOC_STREAMOFF:
        h->streaming = 0;
        h->queued_count = 0;
        return 0;
    default:
        return fail(ENOTTY);
    }
}

static int shim_ioctl(int fd, unsigned long request, void *arg) {
    pthread_mutex_lock(&lock);
    Handle *h = find(fd);
    int r = h ? shim_ioctl_locked(h, request, arg) : fail(EBADF);
    int saved = errno;
    pthread_mutex_unlock(&lock);
    errno = saved;
    return r;
}

static int is_ours(int fd) {
    pthread_mutex_lock(&lock);
    int r = find(fd) != NULL;
    pthread_mutex_unlock(&lock);
    return r;
}

static int fake_open(void) {
    pthread_mutex_lock(&lock);
    init_locked();
    if (now_ns() < offline_until_ns) {
        pthread_mutex_unlock(&lock);
        return fail(ENOENT);
    }
    Handle *h = NULL;
    for (int i = 0; i < MAX_HANDLES; i++)
        if (!handles[i].used) {
            h = &handles[i];
            break;
        }
    if (!h) {
        pthread_mutex_unlock(&lock);
        return fail(EMFILE);
    }
    stalled = 0; /* reopening resets a wedged camera */
    int fd = memfd_create("lookout-v4l-shim", MFD_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        pthread_mutex_unlock(&lock);
        return fail(e);
    }
    memset(h, 0, sizeof *h);
    h->used = 1;
    h->fd = fd;
    h->den = 30;
    struct v4l2_pix_format pix;
    fill_pix(h, &pix, modes[0].fourcc, modes[0].width, modes[0].height);
    h->fourcc = pix.pixelformat;
    h->width = pix.width;
    h->height = pix.height;
    h->bytesperline = pix.bytesperline;
    h->sizeimage = pix.sizeimage;
    pthread_mutex_unlock(&lock);
    return fd;
}

/* The device path itself, or a symlink to it (as /dev/v4l/by-id/ links are), followed a
 * few levels like the kernel would. */
static int is_device(const char *path) {
    if (!path) return 0;
    pthread_mutex_lock(&lock);
    init_locked();
    char current[512], target[512];
    snprintf(current, sizeof current, "%s", path);
    int r = 0;
    for (int depth = 0; depth < 8 && !r; depth++) {
        r = strcmp(current, device_path) == 0;
        ssize_t n = readlink(current, target, sizeof target - 1);
        if (n <= 0) break;
        target[n] = 0;
        snprintf(current, sizeof current, "%s", target);
    }
    pthread_mutex_unlock(&lock);
    return r;
}

#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

static mode_t mode_arg(int flags, va_list ap) {
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    if (is_device(path)) return fake_open();
    return REAL(open)(path, flags, mode);
}

int open64(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    if (is_device(path)) return fake_open();
    return REAL(open64)(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    if (is_device(path)) return fake_open();
    return REAL(openat)(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    if (is_device(path)) return fake_open();
    return REAL(openat64)(dirfd, path, flags, mode);
}

int close(int fd) {
    pthread_mutex_lock(&lock);
    Handle *h = find(fd);
    if (h) h->used = 0;
    pthread_mutex_unlock(&lock);
    return REAL(close)(fd);
}

int ioctl(int fd, unsigned long request, ...) {
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (is_ours(fd)) return shim_ioctl(fd, request, arg);
    return REAL(ioctl)(fd, request, arg);
}

/* The v4l crate calls syscall(SYS_ioctl, fd, request, arg) instead of ioctl(). */
long syscall(long number, ...) {
    va_list ap;
    va_start(ap, number);
    long a0 = va_arg(ap, long), a1 = va_arg(ap, long), a2 = va_arg(ap, long);
    long a3 = va_arg(ap, long), a4 = va_arg(ap, long), a5 = va_arg(ap, long);
    va_end(ap);
    if (number == SYS_ioctl && is_ours((int)a0))
        return shim_ioctl((int)a0, (unsigned long)a1, (void *)a2);
    return REAL(syscall)(number, a0, a1, a2, a3, a4, a5);
}

/* Waits for the next frame like a driver's poll: POLLIN when one is due, POLLERR|POLLHUP
 * after an unplug, POLLERR when not streaming. */
int poll(struct pollfd *fds, nfds_t nfds, int timeout_ms) {
    if (nfds == 1 && is_ours(fds[0].fd)) {
        pthread_mutex_lock(&lock);
        Handle *h = find(fds[0].fd);
        if (!h || h->dead || !h->streaming || h->queued_count == 0) {
            fds[0].revents = (short)(h && !h->dead ? POLLERR : (POLLERR | POLLHUP));
            pthread_mutex_unlock(&lock);
            return 1;
        }
        if (stall_after > 0 && !stalled_once && delivered_total >= (uint64_t)stall_after)
            stalled = stalled_once = 1;
        int silent = stalled;
        uint64_t due = h->start_ns + h->next_k * interval_ns(h);
        pthread_mutex_unlock(&lock);
        if (silent) {
            sleep_ns(timeout_ms >= 0 ? (uint64_t)timeout_ms * 1000000ull : 1000000000ull);
            fds[0].revents = 0;
            return 0;
        }
        uint64_t now = now_ns();
        uint64_t wait = due > now ? due - now : 0;
        if (timeout_ms >= 0 && wait > (uint64_t)timeout_ms * 1000000ull) {
            sleep_ns((uint64_t)timeout_ms * 1000000ull);
            fds[0].revents = 0;
            return 0;
        }
        sleep_ns(wait);
        fds[0].revents = POLLIN | POLLRDNORM;
        return 1;
    }
    return REAL(poll)(fds, nfds, timeout_ms);
}
