# Zero-copy buffer chains: gather many bytes-like segments into one writev(2).
#
# Included by _wire.pyx. The helpers _fd_arg and _raise_errno are shared with
# splice.pyx, which is included after this file.

from cpython.buffer cimport (
    PyBUF_SIMPLE,
    PyBuffer_FillInfo,
    PyBuffer_Release,
    PyObject_GetBuffer,
)
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.memoryview cimport PyMemoryView_FromObject, PyMemoryView_GET_BUFFER
from cpython.object cimport PyObject_AsFileDescriptor
from cpython.ref cimport PyObject

cimport wire_system as sys_


cdef extern from *:
    """
    /* Py_buffer.obj as a raw pointer: NULL for exports not tied to an object. */
    static PyObject *dmsc_buffer_owner(Py_buffer *view) { return view->obj; }
    """
    PyObject *_buffer_owner "dmsc_buffer_owner"(Py_buffer *view)


cdef int _raise_errno(int err) except -1:
    # OSError(errno, text) picks the matching subclass (BrokenPipeError, ...).
    raise OSError(err, sys_.strerror(err).decode())


cdef int _fd_arg(object fd, str name) except -1:
    """An int file descriptor or an object with fileno(); negative is a ValueError."""
    if isinstance(fd, int) and fd < 0:
        raise ValueError(f"{name} must be a file descriptor >= 0, got {fd}")
    return PyObject_AsFileDescriptor(fd)


cdef inline bint _would_block(int err) noexcept nogil:
    return err == sys_.EAGAIN


@cython.final
@cython.auto_pickle(False)
cdef class BufferChain:
    """A chain of bytes-like segments written out with one ``writev(2)``.

    ``append`` keeps a buffer-protocol reference (a ``Py_buffer`` export, as a
    ``memoryview`` does) to each object: nothing is copied. ``bytes``,
    ``bytearray``, ``memoryview`` and any C-contiguous buffer-protocol object
    (``array.array``, numpy arrays, ``mmap``) are accepted.

    Coalescing is the point: a response made of a status line, a dozen header
    fragments and a body goes out in one system call (``write_to``) or one
    ``transport.writelines`` call instead of one write per piece, and without
    the ``b"".join`` copy. Each segment costs about 10 ns to hold and release
    plus an iovec in the kernel, so for a few dozen tiny ``bytes`` pieces a
    join followed by one write is just as cheap; the chain pays off for large
    segments (no copy at all) and for resuming partial writes.

    While a segment is in the chain its exporter is locked the way a
    ``memoryview`` locks it: a ``bytearray`` cannot be resized (``BufferError``)
    and a ``memoryview`` cannot be released. Do not change the contents of an
    appended ``bytearray`` (or other mutable buffer) until the bytes have been
    written: the chain holds a view, not a copy, so the new contents would be
    sent.

    Segments leave the chain as they are written: fully written ones are
    released, a partially written head segment is kept with an offset (no
    copy). Not thread-safe beyond this: a chain belongs to one connection,
    driven from one thread; methods that drop segments refuse to run while
    ``write_to`` is inside ``writev`` (``RuntimeError``).
    """

    cdef Py_buffer *_bufs
    cdef Py_ssize_t _cap
    # Live segments are _bufs[_head:_tail]; _offset bytes of the head are written.
    cdef Py_ssize_t _head
    cdef Py_ssize_t _tail
    cdef Py_ssize_t _offset
    cdef Py_ssize_t _nbytes
    cdef bint _writing

    def __cinit__(self):
        self._bufs = NULL
        self._cap = 0
        self._head = 0
        self._tail = 0
        self._offset = 0
        self._nbytes = 0
        self._writing = False

    def __init__(self, segments=None):
        """Start a chain, optionally with ``segments`` (an iterable of bytes-like objects)."""
        if segments is not None:
            self.extend(segments)

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self._bufs is not NULL:
            for i in range(self._head, self._tail):
                PyBuffer_Release(&self._bufs[i])
            PyMem_Free(self._bufs)
            self._bufs = NULL

    # -- building -------------------------------------------------------------

    cdef int _make_room(self) except -1:
        cdef Py_ssize_t live = self._tail - self._head
        cdef Py_ssize_t new_cap
        cdef Py_buffer *grown
        if self._head > 0 and self._head * 2 >= self._cap:
            # Reuse the slots of written segments before growing.
            sys_.memmove(self._bufs, self._bufs + self._head, live * sizeof(Py_buffer))
            self._head = 0
            self._tail = live
            return 0
        new_cap = self._cap * 2 if self._cap else 16
        grown = <Py_buffer *>PyMem_Realloc(self._bufs, new_cap * sizeof(Py_buffer))
        if grown is NULL:
            raise MemoryError()
        self._bufs = grown
        self._cap = new_cap
        return 0

    cdef int _append(self, object data) except -1:
        cdef Py_buffer *slot
        if self._tail == self._cap:
            self._make_room()
        slot = &self._bufs[self._tail]
        if type(data) is bytes:
            # What bytes' own getbuffer does, minus the slot dispatch.
            if PyBytes_GET_SIZE(data) == 0:
                return 0
            PyBuffer_FillInfo(slot, data, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data),
                              1, PyBUF_SIMPLE)
        else:
            # TypeError for non-buffers, BufferError for non-contiguous buffers.
            PyObject_GetBuffer(data, slot, PyBUF_SIMPLE)
        if slot.len == 0:
            PyBuffer_Release(slot)
            return 0
        self._nbytes += slot.len
        self._tail += 1
        return 0

    def append(self, data):
        """Add ``data`` (any bytes-like object) at the end, without copying it.

        Empty objects are skipped. Raises ``TypeError`` for objects without the
        buffer protocol and ``BufferError`` for non-contiguous buffers.
        """
        self._append(data)

    def extend(self, segments):
        """Append every bytes-like object of the iterable ``segments``, in order.

        On a bad item the items before it stay appended and the error is raised.
        """
        cdef object item
        for item in segments:
            self._append(item)

    # -- consuming ------------------------------------------------------------

    cdef int _check_idle(self) except -1:
        if self._writing:
            raise RuntimeError("BufferChain is being written by another thread")
        return 0

    cdef int _advance(self, Py_ssize_t n) except -1:
        """Drops ``n`` bytes (``0 <= n <= nbytes``) from the head."""
        cdef Py_buffer done
        cdef Py_ssize_t left
        while n > 0:
            left = self._bufs[self._head].len - self._offset
            if n < left:
                self._offset += n
                self._nbytes -= n
                return 0
            n -= left
            self._nbytes -= left
            # Update the indices before releasing: the release may run
            # arbitrary code (the exporter's deallocation).
            done = self._bufs[self._head]
            self._head += 1
            self._offset = 0
            PyBuffer_Release(&done)
        if self._head == self._tail:
            self._head = 0
            self._tail = 0
        return 0

    def consume(self, Py_ssize_t n):
        """Drop the first ``n`` bytes, as if they had been written.

        ``n`` must be between 0 and ``len(chain)`` (``ValueError`` otherwise).
        """
        self._check_idle()
        if n < 0 or n > self._nbytes:
            raise ValueError(f"n must be between 0 and {self._nbytes}, got {n}")
        self._advance(n)

    def clear(self):
        """Drop every segment (releasing the views on them)."""
        self._check_idle()
        self._advance(self._nbytes)

    def write_to(self, fd):
        """Write the chain to ``fd`` with ``writev(2)``; return the bytes written.

        Up to ``IOV_MAX`` segments go in each system call, with the GIL
        released. Written bytes leave the chain (a partially written segment is
        kept with an offset), so a call on a non-blocking descriptor that
        stops at ``EAGAIN`` can simply be repeated when the descriptor is
        writable: ``len(chain)`` is what is still to send. On a blocking
        descriptor the call returns once everything is written. ``EINTR`` is
        retried (after running signal handlers). Other errors raise
        ``OSError``; bytes written before the error have already left the
        chain.

        ``fd`` is an int or an object with ``fileno()``.
        """
        cdef int c_fd = _fd_arg(fd, "fd")
        cdef sys_.iovec iov[sys_.IOV_MAX]
        cdef Py_buffer *b
        cdef Py_ssize_t i, stop, n
        cdef Py_ssize_t total = 0
        cdef int count, err
        self._check_idle()
        self._writing = True
        try:
            while self._nbytes > 0:
                stop = self._tail
                if stop - self._head > sys_.IOV_MAX:
                    stop = self._head + sys_.IOV_MAX
                count = 0
                for i in range(self._head, stop):
                    b = &self._bufs[i]
                    iov[count].iov_base = <char *>b.buf
                    iov[count].iov_len = <size_t>b.len
                    count += 1
                iov[0].iov_base = <char *>iov[0].iov_base + self._offset
                iov[0].iov_len -= <size_t>self._offset
                with nogil:
                    n = sys_.writev(c_fd, iov, count)
                    err = sys_.errno
                if n >= 0:
                    self._advance(n)
                    total += n
                elif err == sys_.EINTR:
                    PyErr_CheckSignals()
                elif _would_block(err):
                    break
                else:
                    _raise_errno(err)
        finally:
            self._writing = False
        return total

    def write_to_transport(self, transport):
        """Hand every segment to ``transport.writelines`` and empty the chain.

        Segments are passed as the original ``bytes`` objects or as
        ``memoryview`` objects on the original buffers (no copy). Each view is
        a new export, so the transport may keep it after this call. uvloop
        writes such a list with one ``writev``; asyncio's default
        ``writelines`` joins it first. Returns the number of bytes handed over.
        If ``writelines`` raises, the chain keeps its segments.
        """
        cdef Py_ssize_t nbytes = self._nbytes
        cdef Py_ssize_t i, skip
        cdef Py_buffer *b
        cdef Py_buffer *mv_buf
        cdef PyObject *owner
        cdef object exporter, segment
        cdef list segments
        self._check_idle()
        if nbytes == 0:
            return 0
        segments = []
        for i in range(self._head, self._tail):
            b = &self._bufs[i]
            skip = self._offset if i == self._head else 0
            owner = _buffer_owner(b)
            if owner is NULL:
                # An exporter not tied to an object: nothing to re-export, copy.
                segments.append(PyBytes_FromStringAndSize(<char *>b.buf + skip, b.len - skip))
                continue
            exporter = <object>owner
            if type(exporter) is bytes and skip == 0:
                segments.append(exporter)
                continue
            segment = PyMemoryView_FromObject(exporter)
            mv_buf = PyMemoryView_GET_BUFFER(segment)
            if mv_buf.ndim != 1 or mv_buf.itemsize != 1:
                segment = segment.cast("B")
            if skip:
                segment = segment[skip:]
            segments.append(segment)
        transport.writelines(segments)
        self._advance(nbytes)
        return nbytes

    def to_bytes(self):
        """Copy the chain into one ``bytes`` object (for tests and debugging)."""
        cdef object out = PyBytes_FromStringAndSize(NULL, self._nbytes)
        cdef char *dest = PyBytes_AS_STRING(out)
        cdef Py_ssize_t i, skip
        cdef Py_buffer *b
        for i in range(self._head, self._tail):
            b = &self._bufs[i]
            skip = self._offset if i == self._head else 0
            sys_.memcpy(dest, <char *>b.buf + skip, <size_t>(b.len - skip))
            dest += b.len - skip
        return out

    # -- inspection -----------------------------------------------------------

    @property
    def nbytes(self):
        """Bytes still to write (same as ``len(chain)``)."""
        return self._nbytes

    @property
    def segments(self):
        """Number of segments still (partly) to write."""
        return self._tail - self._head

    def __len__(self):
        return self._nbytes

    def __repr__(self):
        return f"<BufferChain segments={self._tail - self._head} nbytes={self._nbytes}>"
