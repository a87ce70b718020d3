"""What ``serve`` checks before an upload reaches a Task: the body's size while it arrives, its
content type, its multipart framing, the pixel count an image declares and the header of a
NumPy ``.npy`` file. Every refusal is a :class:`ServeError` with the HTTP status that names the
problem (413 too large, 415 wrong type, 422 unreadable) and one line saying what was expected.

Nothing here decodes pixels or array data: the body is counted chunk by chunk as the ASGI server
hands it over (a declared ``Content-Length`` over the cap is refused before the first chunk; a
chunked upload is refused as soon as the running count passes it), an image's size comes from
its header (Pillow's ``Image.open`` reads only the header), and a ``.npy`` header is parsed by
NumPy's own header readers without touching the data or unpickling anything.
"""
from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Awaitable, Callable
from email.message import Message
from typing import Any

import numpy as np

__all__ = ["ServeError", "check_image_pixels", "check_npy", "guess_suffix", "parse_multipart", "read_body",
           "request_kind", "safe_filename"]

MB = 1 << 20
MAX_PARTS = 32  # a form with more parts than this is not an upload from our page or from curl


class ServeError(Exception):
    """A request refused with an HTTP ``status`` and a one-line ``message`` for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class ClientGone(Exception):
    """The client disconnected before its body arrived: nobody is left to answer."""


# ----------------------------------------------------------------------------- the body
async def read_body(receive: Callable[[], Awaitable[dict[str, Any]]], content_length: str | None,
                    max_bytes: int) -> bytes:
    """The request body from the ASGI ``receive`` channel, never more than ``max_bytes``.

    A declared ``Content-Length`` above the cap is refused before anything is read; without one
    (chunked transfer) the running count is checked after every chunk, so at most one chunk past
    the cap is ever held.

    Raises:
        ServeError: 413 over the cap; 400 for a malformed Content-Length.
        ClientGone: the client disconnected first.
    """
    if content_length is not None:
        if not content_length.isdigit():
            raise ServeError(400, f"Content-Length must be a number of bytes, got {content_length[:40]!r}")
        if int(content_length) > max_bytes:
            raise ServeError(413, f"body of {int(content_length):,} bytes exceeds the cap of {max_bytes:,} bytes "
                                  "(--max-body-mb)")
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > max_bytes:
            raise ServeError(413, f"body exceeds the cap of {max_bytes:,} bytes (--max-body-mb); "
                                  f"refused after {total:,} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def request_kind(content_type: str) -> str:
    """"multipart" or "raw" for the content types ``/predict`` takes.

    Raises:
        ServeError: 415 for any other type (a form, JSON, text: the file must come as a file).
    """
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        return "multipart"
    if media in ("", "application/octet-stream", "application/x-npy") or media.startswith(("image/", "audio/", "video/")):
        return "raw"
    raise ServeError(415, f"unsupported Content-Type {media!r}: send the file as multipart/form-data (field 'file') "
                          "or as raw bytes (application/octet-stream, image/*)")


def parse_multipart(body: bytes, content_type: str) -> tuple[str, bytes]:
    """The uploaded file of a ``multipart/form-data`` body (RFC 7578): the part named ``file``,
    else the first part with a filename. Returns (filename, content).

    Raises:
        ServeError: 422 when the framing is broken or no part holds a file.
    """
    boundary = _header_param(content_type, "content-type", "boundary")
    if not boundary or len(boundary) > 70:  # RFC 2046 §5.1.1: 1 to 70 characters
        raise ServeError(422, "multipart/form-data without a valid boundary parameter")
    delimiter = b"--" + boundary.encode("latin-1")
    pieces = body.split(b"\r\n" + delimiter)
    # The first delimiter may open the body without a preceding CRLF.
    first = pieces[0]
    if not first.startswith(delimiter):
        raise ServeError(422, "multipart body does not start with its boundary")
    pieces[0] = first[len(delimiter):]
    if len(pieces) - 1 > MAX_PARTS:
        raise ServeError(422, f"multipart body has more than {MAX_PARTS} parts")
    named: tuple[str, bytes] | None = None
    fallback: tuple[str, bytes] | None = None
    for piece in pieces:
        if piece.startswith(b"--"):  # the closing delimiter
            break
        if not piece.startswith(b"\r\n"):
            raise ServeError(422, "malformed multipart body: a boundary is not followed by a line end")
        head, sep, content = piece[2:].partition(b"\r\n\r\n")
        if not sep:
            raise ServeError(422, "malformed multipart body: a part has no blank line after its headers")
        disposition = ""
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-disposition":
                disposition = value.strip()
        field = _header_param(disposition, "content-disposition", "name")
        filename = _header_param(disposition, "content-disposition", "filename")
        if field == "file" and named is None:
            named = (safe_filename(filename or "upload"), content)
        elif filename is not None and fallback is None:
            fallback = (safe_filename(filename), content)
    else:
        raise ServeError(422, "multipart body has no closing boundary (truncated upload?)")
    if named is None and fallback is None:
        raise ServeError(422, "multipart body holds no file: send it in a part named 'file'")
    return named or fallback


def _header_param(value: str, header: str, param: str) -> str | None:
    """A parameter of a structured header (quoting and RFC 2231 as the email package reads them)."""
    if not value:
        return None
    msg = Message()
    msg[header] = value
    found = msg.get_param(param, header=header)
    if isinstance(found, tuple):  # RFC 2231 (charset, language, value)
        found = found[2]
    return None if found is None else str(found)


_UNSAFE = re.compile(r"[^\w.\- ]")


def safe_filename(name: str) -> str:
    """The last path component of a client's filename, printable and at most 100 characters
    (it ends up in messages and in the suffix a reader is chosen by)."""
    base = re.split(r"[\\/]", name)[-1].strip() or "upload"
    return _UNSAFE.sub("_", base)[-100:]


def guess_suffix(data: bytes) -> str:
    """A suffix for raw bytes sent without a filename, from their first bytes ("" if unknown)."""
    if data.startswith(b"\x93NUMPY"):
        return ".npy"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return ".wav"
    return ""


# ----------------------------------------------------------------------------- before decoding
def check_image_pixels(data: bytes, max_pixels: int) -> tuple[int, int] | None:
    """The (width, height) an image's header declares, or None for bytes Pillow does not
    recognise as an image (a ``.npy``, a WAV: the task decides about those).

    Raises:
        ServeError: 413 when the image declares more than ``max_pixels`` pixels (0: no cap);
            Pillow's own bomb check (above twice its limit) refuses the same way.
    """
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:  # the header only; no pixel is decoded
                width, height = img.size
    except Image.DecompressionBombError as e:
        raise ServeError(413, f"image refused before decoding: {e}") from None
    except Exception:  # not an image Pillow identifies (or a broken header): the task's reader says why
        return None
    if max_pixels and width * height > max_pixels:
        raise ServeError(413, f"image of {width}x{height} = {width * height:,} pixels exceeds the cap of "
                              f"{max_pixels:,} pixels (--max-pixels); refused before decoding")
    return width, height


def check_npy(data: bytes, max_elements: int) -> tuple[int, ...] | None:
    """The shape a NumPy ``.npy`` payload declares (None if ``data`` is not one), after checking
    its header: no Python objects (they would need unpickling), data exactly as long as the
    header says, and at most ``max_elements`` values (0: no cap).

    ``np.load`` on an in-memory buffer allocates the declared array before reading it, so a
    100-byte file declaring 10^12 values is refused here, from its header.

    Raises:
        ServeError: 422 for a broken header, pickled objects or a length mismatch; 413 over the cap.
    """
    if not data.startswith(b"\x93NUMPY"):
        return None
    fmt = np.lib.format
    fp = io.BytesIO(data)
    try:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(fp)
        else:
            raise ValueError(f"format version {version[0]}.{version[1]} is not accepted (1.0 and 2.0 are)")
    except Exception as e:  # numpy raises ValueError, SyntaxError or TypeError for a bad header
        raise ServeError(422, f"not a readable .npy file: {e}") from None
    if dtype.hasobject:
        raise ServeError(422, f".npy file of dtype {dtype} holds Python objects, which would need unpickling: refused")
    count = int(np.prod(shape, dtype=np.float64)) if shape else 1
    if max_elements and count > max_elements:
        raise ServeError(413, f".npy array of shape {tuple(shape)} = {count:,} values exceeds the cap of "
                              f"{max_elements:,} (--max-pixels)")
    expected = count * dtype.itemsize
    held = len(data) - fp.tell()
    if held != expected:
        raise ServeError(422, f".npy header declares shape {tuple(shape)} of {dtype} ({expected:,} bytes) "
                              f"but the file holds {held:,} bytes of data")
    return tuple(shape)


async def within(awaitable: Awaitable[Any], deadline: float, status: int, what: str) -> Any:
    """``awaitable`` if it finishes before the event loop's clock reaches ``deadline``.

    Raises:
        ServeError: ``status`` (504 for the server's own work, 408 for a slow upload) after it.
    """
    remaining = deadline - asyncio.get_running_loop().time()
    try:
        return await asyncio.wait_for(awaitable, max(remaining, 0.0))
    except asyncio.TimeoutError:
        raise ServeError(status, f"{what} did not finish within the request timeout (--timeout-s)") from None
