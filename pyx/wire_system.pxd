# Linux system calls used by the wire code (buffers.pyx, splice.pyx).
#
# Declarations only (`cdef extern`), so cimporting this file adds no runtime
# import. Python.h, included first by every Cython module, defines
# _GNU_SOURCE, which exposes splice(2), pipe2(2) and F_SETPIPE_SZ.

from posix.types cimport off_t


cdef extern from "<errno.h>" nogil:
    int errno
    enum:
        EINTR
        EAGAIN  # == EWOULDBLOCK on Linux
        EINVAL
        ENOSYS
        EOPNOTSUPP
        EBADF
        EIO


cdef extern from "<string.h>" nogil:
    char *strerror(int errnum)
    void *memcpy(void *dest, const void *src, size_t n)
    void *memmove(void *dest, const void *src, size_t n)


cdef extern from "<limits.h>" nogil:
    # Most iovecs one writev(2) accepts (1024 on Linux).
    enum: IOV_MAX


cdef extern from "<sys/uio.h>" nogil:
    struct iovec:
        void *iov_base
        size_t iov_len

    ssize_t writev(int fd, const iovec *iov, int iovcnt)


cdef extern from "<unistd.h>" nogil:
    ssize_t read(int fd, void *buf, size_t count)
    ssize_t write(int fd, const void *buf, size_t count)
    int close(int fd)
    int pipe2(int *pipefd, int flags)


cdef extern from "<fcntl.h>" nogil:
    enum:
        O_CLOEXEC
        O_NONBLOCK
        F_GETFD
        F_SETPIPE_SZ
        F_GETPIPE_SZ
        SPLICE_F_MOVE
        SPLICE_F_NONBLOCK
        SPLICE_F_MORE

    int fcntl(int fd, int cmd, ...)
    ssize_t splice(int fd_in, off_t *off_in, int fd_out, off_t *off_out,
                   size_t length, unsigned int flags)


cdef extern from "<poll.h>" nogil:
    enum:
        POLLIN
        POLLOUT
        POLLNVAL

    struct pollfd:
        int fd
        short events
        short revents

    ctypedef unsigned long nfds_t

    int poll(pollfd *fds, nfds_t nfds, int timeout)
