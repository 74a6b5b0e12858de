#if defined(__linux__)
#define _GNU_SOURCE
#endif

#include "CLinuxFiles.h"

#include <errno.h>

#if defined(__linux__)
#include <fcntl.h>
#include <unistd.h>

ssize_t clf_copy_file_range(int in_fd, int64_t *in_offset, int out_fd, int64_t *out_offset, size_t count) {
    loff_t in = (loff_t)*in_offset, out = (loff_t)*out_offset;
    ssize_t n = copy_file_range(in_fd, &in, out_fd, &out, count, 0);
    *in_offset = (int64_t)in;
    *out_offset = (int64_t)out;
    return n;
}

int clf_start_writeback(int fd, int64_t offset, int64_t count) {
    return sync_file_range(fd, (off_t)offset, (off_t)count, SYNC_FILE_RANGE_WRITE);
}

#else

ssize_t clf_copy_file_range(int in_fd, int64_t *in_offset, int out_fd, int64_t *out_offset, size_t count) {
    (void)in_fd; (void)in_offset; (void)out_fd; (void)out_offset; (void)count;
    errno = ENOSYS;
    return -1;
}

int clf_start_writeback(int fd, int64_t offset, int64_t count) {
    (void)fd; (void)offset; (void)count;
    errno = ENOSYS;
    return -1;
}

#endif
