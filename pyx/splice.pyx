# L4 pump: move a byte stream from one descriptor to another with splice(2).
#
# Included by _wire.pyx after buffers.pyx (uses its _fd_arg, _raise_errno and
# the wire_system declarations cimported there as sys_).

from cpython.mem cimport PyMem_Free, PyMem_Malloc

# Non-blocking on the pipe side: a full or empty pipe returns EAGAIN, never blocks.
cdef unsigned int _SPLICE_FLAGS = sys_.SPLICE_F_MOVE | sys_.SPLICE_F_NONBLOCK


cdef inline bint _splice_refused(int err) noexcept nogil:
    # What splice(2) answers for descriptors it cannot work with (an eventfd,
    # some /proc files, a file opened with O_APPEND) or a kernel without it.
    return err == sys_.EINVAL or err == sys_.ENOSYS or err == sys_.EOPNOTSUPP


cdef inline Py_ssize_t _clamp(Py_ssize_t want, Py_ssize_t limit, Py_ssize_t delivered) noexcept:
    """``want``, cut to what ``limit`` (-1: no limit) leaves after ``delivered``."""
    if limit >= 0 and want > limit - delivered:
        return limit - delivered
    return want


cdef int _wait_ready(int fd, short events) except -1:
    """Blocks (GIL released) until ``fd`` is ready for ``events``."""
    cdef sys_.pollfd p
    cdef int rc, err
    p.fd = fd
    p.events = events
    p.revents = 0
    while True:
        with nogil:
            rc = sys_.poll(&p, 1, -1)
            err = sys_.errno
        if rc >= 0:
            if p.revents & sys_.POLLNVAL:
                _raise_errno(sys_.EBADF)
            return 0
        if err != sys_.EINTR:
            _raise_errno(err)
        PyErr_CheckSignals()


cdef int _stop_after(int err, int fd, short events, bint wait) except -1:
    """Handles a system call on ``fd`` that failed with ``err``.

    Returns 1 when the caller should return (``fd`` would block and ``wait``
    is false), 0 when it should try again: after running signal handlers
    (EINTR) or after waiting for ``events``. Raises OSError for other errors.
    """
    if err == sys_.EINTR:
        PyErr_CheckSignals()
    elif _would_block(err):
        if not wait:
            return 1
        _wait_ready(fd, events)
    else:
        _raise_errno(err)
    return 0


cdef int _check_open(int fd) except -1:
    cdef int rc, err
    with nogil:
        rc = sys_.fcntl(fd, sys_.F_GETFD)
        err = sys_.errno
    if rc < 0:
        _raise_errno(err)
    return 0


@cython.final
@cython.auto_pickle(False)
cdef class Pipe:
    """A kernel pipe made with ``pipe2(O_CLOEXEC | O_NONBLOCK)``, owned by this object.

    Both ends are closed by ``close()``, by leaving a ``with`` block, or when
    the object is garbage collected, whichever comes first. ``size`` (bytes,
    0 for the kernel default) is asked for with ``F_SETPIPE_SZ``; the kernel
    rounds it up to a power-of-two number of pages and refuses more than
    ``/proc/sys/fs/pipe-max-size`` to unprivileged processes, in which case
    the default stays: ``capacity`` says what was granted.
    """

    cdef int _rfd
    cdef int _wfd

    def __cinit__(self):
        self._rfd = -1
        self._wfd = -1

    def __init__(self, Py_ssize_t size=0):
        """Open a pipe, asking for ``size`` bytes of buffer (0: the kernel default)."""
        cdef int fds[2]
        cdef int rc, err
        if self._rfd >= 0:
            raise RuntimeError("Pipe is already open")
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        with nogil:
            rc = sys_.pipe2(fds, sys_.O_CLOEXEC | sys_.O_NONBLOCK)
            err = sys_.errno
        if rc < 0:
            _raise_errno(err)
        self._rfd = fds[0]
        self._wfd = fds[1]
        if size > 0 and size <= 0x7fffffff:
            # Best effort: a refusal (EPERM above pipe-max-size) keeps the default.
            sys_.fcntl(self._wfd, sys_.F_SETPIPE_SZ, <int>size)

    def __dealloc__(self):
        self._close()

    cdef void _close(self) noexcept:
        if self._rfd >= 0:
            sys_.close(self._rfd)
            self._rfd = -1
        if self._wfd >= 0:
            sys_.close(self._wfd)
            self._wfd = -1

    def close(self):
        """Close both ends (idempotent)."""
        self._close()

    @property
    def closed(self):
        """True once both ends are closed."""
        return self._rfd < 0

    @property
    def read_fd(self):
        """The read end's descriptor (-1 once closed)."""
        return self._rfd

    @property
    def write_fd(self):
        """The write end's descriptor (-1 once closed)."""
        return self._wfd

    @property
    def capacity(self):
        """The pipe's buffer size in bytes (``F_GETPIPE_SZ``)."""
        cdef int size
        if self._wfd < 0:
            raise ValueError("I/O operation on a closed Pipe")
        size = sys_.fcntl(self._wfd, sys_.F_GETPIPE_SZ)
        if size < 0:
            _raise_errno(sys_.errno)
        return size

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._close()

    def __repr__(self):
        if self._rfd < 0:
            return "<Pipe closed>"
        return f"<Pipe read_fd={self._rfd} write_fd={self._wfd}>"


@cython.final
@cython.auto_pickle(False)
cdef class SplicePump:
    """Moves a byte stream from ``src_fd`` to ``dst_fd`` (an L4 proxy's inner loop).

    The bytes go ``src -> pipe -> dst`` with ``splice(2)`` and never enter user
    space. When the kernel refuses splice for these descriptors (``EINVAL``,
    ``ENOSYS``, ``EOPNOTSUPP``: e.g. an eventfd, some ``/proc`` files, a file
    opened with ``O_APPEND``), or when built with ``use_splice=False``, the
    pump copies through one reusable ``chunk``-sized buffer with
    ``read``/``write`` instead; bytes already in the pipe are delivered first,
    so nothing is lost or reordered by the switch. ``used_splice`` tells which
    path is in use.

    Descriptors are ints or objects with ``fileno()``; the pump does not own
    them (it never closes or shuts them down), but it owns its pipe and copy
    buffer: ``close()`` or garbage collection frees them.

    Two ways to drive it:

    * ``pump(max_bytes=-1)``: blocking. Returns after ``src`` reached EOF and
      everything read was delivered, or after ``max_bytes`` bytes. Works on
      blocking and non-blocking descriptors (it waits with ``poll(2)``).
    * ``step(max_bytes=1 << 20)``: never waits; for an event loop
      (``loop.add_reader(src, ...)``) on non-blocking sockets. See ``step``.

    The GIL is released around every system call. Reads from ``src`` never
    go past ``max_bytes``, so the rest of the stream stays in ``src``.

    ``chunk`` is the most bytes one read moves (and the pipe size asked for).
    Each chunk costs two system calls, so bulk transfers gain from larger
    chunks, up to ``/proc/sys/fs/pipe-max-size`` (1 MiB by default).
    """

    cdef readonly int src_fd
    cdef readonly int dst_fd
    cdef readonly Py_ssize_t chunk
    cdef readonly long long bytes_moved
    cdef readonly bint used_splice
    cdef readonly bint eof
    cdef Pipe _pipe
    # Bytes read from src into the pipe and not yet delivered.
    cdef Py_ssize_t _in_pipe
    # Copy path: _buf[_buf_start:_buf_end] is read and not yet delivered.
    cdef char *_buf
    cdef Py_ssize_t _buf_start
    cdef Py_ssize_t _buf_end
    cdef bint _busy
    cdef bint _closed

    def __cinit__(self):
        self.src_fd = -1
        self.dst_fd = -1
        self._buf = NULL
        self._in_pipe = 0
        self._buf_start = 0
        self._buf_end = 0
        self._busy = False
        self._closed = False

    def __init__(self, src_fd, dst_fd, *, Py_ssize_t chunk=65536, bint use_splice=True):
        cdef int src = _fd_arg(src_fd, "src_fd")
        cdef int dst = _fd_arg(dst_fd, "dst_fd")
        if self.src_fd >= 0:
            raise RuntimeError("SplicePump is already initialised")
        if chunk <= 0 or chunk > 0x40000000:
            raise ValueError(f"chunk must be between 1 and 2**30 bytes, got {chunk}")
        _check_open(src)
        _check_open(dst)
        self.src_fd = src
        self.dst_fd = dst
        self.chunk = chunk
        self.bytes_moved = 0
        self.eof = False
        self.used_splice = use_splice
        if use_splice:
            self._pipe = Pipe(chunk)

    def __dealloc__(self):
        if self._buf is not NULL:
            PyMem_Free(self._buf)
            self._buf = NULL

    # -- state ----------------------------------------------------------------

    @property
    def pending(self):
        """Bytes read from ``src`` and not yet delivered to ``dst`` (in the pipe or buffer)."""
        return self._in_pipe + (self._buf_end - self._buf_start)

    @property
    def done(self):
        """True once ``src`` reached EOF and every byte read was delivered."""
        return self.eof and self.pending == 0

    @property
    def closed(self):
        """True after ``close()``."""
        return self._closed

    def close(self):
        """Free the pipe and the copy buffer; bytes still pending are dropped.

        The source and destination descriptors are left open.
        """
        if self._busy:
            raise RuntimeError("SplicePump is running in another thread")
        self._closed = True
        self._in_pipe = 0
        self._buf_start = self._buf_end = 0
        if self._pipe is not None:
            self._pipe._close()
            self._pipe = None
        if self._buf is not NULL:
            PyMem_Free(self._buf)
            self._buf = NULL

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return (
            f"<SplicePump src_fd={self.src_fd} dst_fd={self.dst_fd} "
            f"path={'splice' if self.used_splice else 'copy'} "
            f"bytes_moved={self.bytes_moved} pending={self.pending} eof={self.eof}>"
        )

    # -- moving bytes -----------------------------------------------------------

    cdef int _fall_back(self) except -1:
        """Switch to the copy path for good; bytes in the pipe are drained first."""
        self.used_splice = False
        if self._in_pipe == 0 and self._pipe is not None:
            self._pipe._close()
            self._pipe = None
        return 0

    cdef Py_ssize_t _run(self, Py_ssize_t limit, bint wait) except -1:
        """Delivers up to ``limit`` bytes (-1: no limit); returns how many.

        Stops at EOF with nothing pending, at ``limit``, or (``wait`` false)
        when a descriptor would block.
        """
        cdef Py_ssize_t delivered = 0
        cdef Py_ssize_t want, n
        cdef int fd_in, err
        cdef int src = self.src_fd
        cdef int dst = self.dst_fd
        cdef bint from_pipe
        while True:
            if self.used_splice:
                if self._in_pipe > 0:
                    want = _clamp(self._in_pipe, limit, delivered)
                    if want <= 0:
                        return delivered
                    fd_in = self._pipe._rfd
                    with nogil:
                        n = sys_.splice(fd_in, NULL, dst, NULL, <size_t>want, _SPLICE_FLAGS)
                        err = sys_.errno
                    if n > 0:
                        self._in_pipe -= n
                        delivered += n
                        self.bytes_moved += n
                        continue
                    if n == 0:
                        err = sys_.EIO
                    if _splice_refused(err):
                        self._fall_back()
                    elif _stop_after(err, dst, sys_.POLLOUT, wait):
                        return delivered
                    continue
                if self.eof:
                    return delivered
                want = _clamp(self.chunk, limit, delivered)
                if want <= 0:
                    return delivered
                fd_in = self._pipe._wfd
                with nogil:
                    n = sys_.splice(src, NULL, fd_in, NULL, <size_t>want, _SPLICE_FLAGS)
                    err = sys_.errno
                if n > 0:
                    self._in_pipe += n
                elif n == 0:
                    self.eof = True
                elif _splice_refused(err):
                    self._fall_back()
                elif _stop_after(err, src, sys_.POLLIN, wait):
                    return delivered
                continue

            # Copy path.
            if self._buf is NULL:
                self._buf = <char *>PyMem_Malloc(<size_t>self.chunk)
                if self._buf is NULL:
                    raise MemoryError()
            if self._buf_end > self._buf_start:
                want = _clamp(self._buf_end - self._buf_start, limit, delivered)
                if want <= 0:
                    return delivered
                with nogil:
                    n = sys_.write(dst, self._buf + self._buf_start, <size_t>want)
                    err = sys_.errno
                if n == 0:
                    n = -1
                    err = sys_.EIO
                if n > 0:
                    self._buf_start += n
                    delivered += n
                    self.bytes_moved += n
                    if self._buf_start == self._buf_end:
                        self._buf_start = self._buf_end = 0
                elif _stop_after(err, dst, sys_.POLLOUT, wait):
                    return delivered
                continue
            # Buffer empty: refill, from the pipe left by the splice path first.
            from_pipe = self._in_pipe > 0
            if from_pipe:
                fd_in = self._pipe._rfd
                want = self._in_pipe
            elif self.eof:
                return delivered
            else:
                fd_in = src
                want = self.chunk
            if want > self.chunk:
                want = self.chunk
            want = _clamp(want, limit, delivered)
            if want <= 0:
                return delivered
            with nogil:
                n = sys_.read(fd_in, self._buf, <size_t>want)
                err = sys_.errno
            if n > 0:
                self._buf_end = n
                if from_pipe:
                    self._in_pipe -= n
                    if self._in_pipe == 0:
                        self._pipe._close()
                        self._pipe = None
            elif n == 0:
                if from_pipe:
                    _raise_errno(sys_.EIO)
                self.eof = True
            elif _stop_after(err, fd_in, sys_.POLLIN, wait):
                return delivered

    cdef int _enter(self) except -1:
        if self._closed:
            raise ValueError("I/O operation on a closed SplicePump")
        if self._busy:
            raise RuntimeError("SplicePump is running in another thread")
        self._busy = True
        return 0

    def pump(self, Py_ssize_t max_bytes=-1):
        """Move bytes until ``src`` reaches EOF (-1) or ``max_bytes`` are delivered.

        Blocks; returns the number of bytes delivered to ``dst`` by this call.
        ``OSError`` subclasses propagate (e.g. ``BrokenPipeError`` when the
        destination's peer is gone, ``ConnectionResetError``).
        """
        if max_bytes < -1:
            raise ValueError(f"max_bytes must be >= 0 or -1 (no limit), got {max_bytes}")
        self._enter()
        try:
            return self._run(max_bytes, True)
        finally:
            self._busy = False

    def step(self, Py_ssize_t max_bytes=1048576):
        """Move what can be moved now without blocking; for event-loop callbacks.

        Returns:

        * ``n > 0``: bytes delivered to ``dst`` by this call;
        * ``0``: nothing could move. If ``pending`` is non-zero, ``dst`` is
          full: wait until it is writable; otherwise wait until ``src`` is
          readable;
        * ``-1``: finished: ``src`` reached EOF and every byte read was
          delivered (``done``). A call that delivers the last bytes returns
          their count; the next one returns -1.

        ``max_bytes`` (-1: no limit) caps one call so that one busy stream
        cannot monopolise the loop. The descriptors must be non-blocking
        (``sock.setblocking(False)``), otherwise a step can block.
        """
        cdef Py_ssize_t n
        if max_bytes < -1:
            raise ValueError(f"max_bytes must be >= 0 or -1 (no limit), got {max_bytes}")
        self._enter()
        try:
            n = self._run(max_bytes, False)
        finally:
            self._busy = False
        if n == 0 and self.eof and self.pending == 0:
            return -1
        return n


def splice_pump(src_fd, dst_fd, *, Py_ssize_t chunk=65536, Py_ssize_t max_bytes=-1,
                bint use_splice=True):
    """Move bytes from ``src_fd`` to ``dst_fd`` until EOF or ``max_bytes``; return the count.

    A one-shot ``SplicePump(src_fd, dst_fd, chunk=chunk, use_splice=use_splice)
    .pump(max_bytes)`` whose pipe is closed before returning. Use the class to
    know which path was taken (``used_splice``) or to drive it from an event
    loop.
    """
    cdef SplicePump pump = SplicePump(src_fd, dst_fd, chunk=chunk, use_splice=use_splice)
    try:
        return pump.pump(max_bytes)
    finally:
        pump.close()
