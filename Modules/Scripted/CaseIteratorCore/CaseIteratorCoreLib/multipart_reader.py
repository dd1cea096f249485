"""Reading a ``multipart/related`` HTTP response (WADO-RS) part by part, as it streams in.

dicomweb-client's reader copies each part three times and decodes every instance into a
pydicom dataset; the local database only needs the file bytes. Here each part's body is copied
once, out of one growing buffer that is trimmed as parts are handed out, so memory holds about
one part plus one chunk.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

logger = logging.getLogger(__name__)

#: Bytes asked of the connection per read: large enough that the per-read cost is small.
CHUNK_BYTES = 1 << 20


class MultipartError(ValueError):
    """The response is not the multipart message it should be; the message says how."""


def boundary_of(content_type: str) -> bytes | None:
    """The boundary of a ``multipart/related`` content type; None for a single-part answer.

    Raises
    ------
    MultipartError
        When the media type is neither ``multipart/related`` nor ``application/dicom``.
    """
    media_type, *params = (p.strip() for p in content_type.split(";"))
    if media_type.lower() == "application/dicom":
        return None  # some servers send one instance unwrapped
    if media_type.lower() != "multipart/related":
        raise MultipartError(
            f"the server answered with {media_type or 'no content type'!r} instead of "
            "multipart/related"
        )
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "boundary":
            return value.strip().strip('"').encode("ascii")
    return None  # multipart without a boundary: the body is the one part (as servers do)


def iter_parts(chunks: Iterable[bytes], boundary: bytes | None) -> Iterator[bytes]:
    """Yield the body of each part of a multipart body that arrives as ``chunks``.

    A part that the stream ends in (no closing delimiter) is cut short and is not yielded:
    the caller finds the instance missing, as after any cut connection.

    Parameters
    ----------
    chunks
        The response body in pieces, e.g. ``response.iter_content(CHUNK_BYTES)``.
    boundary
        From :func:`boundary_of`; None yields the whole body as one part.
    """
    if boundary is None:
        yield b"".join(chunks)
        return
    delimiter = b"\r\n--" + boundary
    # The first delimiter may open the body without a CRLF before it: add one.
    buf = bytearray(b"\r\n")
    start: int | None = None  # where the current part begins (after its delimiter line)
    search = 0
    for chunk in chunks:
        buf += chunk
        while True:
            at = buf.find(delimiter, search)
            if at < 0:
                search = max(search, len(buf) - len(delimiter) + 1)
                break
            after = at + len(delimiter)
            if len(buf) < after + 2:
                search = at
                break  # wait for the bytes that say whether this is the closing delimiter
            closing = buf[after : after + 2] == b"--"
            line_end = after if closing else buf.find(b"\r\n", after)
            if line_end < 0:
                search = at
                break
            if start is not None:
                yield _body(buf, start, at)
            if closing:
                return  # the epilogue, if any, is ignored
            start = line_end + 2
            # Drop what was handed out (cheap: a bytearray trims its front in place).
            del buf[:start]
            start, search = 0, 0
    if start is not None and len(buf) > start:
        logger.warning("multipart response ended without its closing delimiter: last part dropped")


def _body(buf: bytearray, start: int, end: int) -> bytes:
    """The body of the part in ``buf[start:end]`` (its headers end with an empty line)."""
    if buf[start : start + 2] == b"\r\n":
        return bytes(memoryview(buf)[start + 2 : end])  # a part without headers
    split = buf.find(b"\r\n\r\n", start, end)
    if split < 0:
        raise MultipartError("a part of the multipart response has no end of headers")
    return bytes(memoryview(buf)[split + 4 : end])


__all__ = ["CHUNK_BYTES", "MultipartError", "boundary_of", "iter_parts"]
