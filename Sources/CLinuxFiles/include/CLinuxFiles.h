// CLinuxFiles: the GNU file calls Glibc's Swift module does not export (they need _GNU_SOURCE),
// as plain C functions. On other systems they fail with ENOSYS and the callers fall back.
#ifndef C_LINUX_FILES_H
#define C_LINUX_FILES_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// copy_file_range(2): copies up to `count` bytes from `in_fd` at `*in_offset` to `out_fd` at
/// `*out_offset` inside the kernel, advancing both offsets. Returns the bytes copied (0 at the
/// source's end) or -1 with errno set (ENOSYS where the call does not exist).
ssize_t clf_copy_file_range(int in_fd, int64_t *in_offset, int out_fd, int64_t *out_offset, size_t count);

/// sync_file_range(fd, offset, count, SYNC_FILE_RANGE_WRITE): starts writeback of the range
/// without waiting for it. Returns 0 or -1 with errno set (ENOSYS where the call does not exist).
int clf_start_writeback(int fd, int64_t offset, int64_t count);

#endif
