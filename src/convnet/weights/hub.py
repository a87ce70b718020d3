"""Weight files from the network, verified and cached: downloads that lose nothing and trust nothing.

A file is fetched once into the cache and read from there afterwards:

- **Where.** The cache is ``$CONVNET_CACHE/weights`` (default ``~/.cache/convnet/weights``); a
  file keeps its published name there (``resnet18-f37072fd.pth``; a Hugging Face file keeps its
  repository path, ``timm/resnet50.a1_in1k/model.safetensors``; a file fetched by URL alone,
  ``load_pretrained(model, URL)``, is kept under ``url/HOST/PATH``). ``CONVNET_WEIGHTS_MIRROR=BASE``
  fetches every file from ``BASE/<that name>`` instead of its published URL, so a cache
  directory served over HTTP is a mirror, and a mirror's files copied into a cache are a cache.
  ``CONVNET_OFFLINE=1`` never opens a connection: a file missing from the cache is an error that
  names the file, where it comes from and where to put it.
- **Verified before use.** The download streams to a temporary file in the cache directory and
  is hashed (SHA-256) as it arrives; it is renamed into place only when the hash matches the
  expected one (a full digest, or the 8-hex prefix torchvision writes into its file names and
  checks itself, ``torch.hub.HASH_REGEX``). A wrong hash is refused before anything is
  deserialised and leaves nothing in the cache. Where no hash is stored, the SHA-256 Hugging Face
  publishes for a file (the ``X-Linked-Etag`` of its download) is used when the server sends one.
- **Bounded.** No download grows past the file's known size, the source's rounded size, or
  :data:`MAX_DOWNLOAD_BYTES`; a transfer that ends short of its ``Content-Length`` or known size
  is refused.
- **Interruptions restart.** An interrupted download deletes its temporary file and the next
  attempt starts from the first byte (no ``Range`` resume: a restart is the one way that never
  stitches bytes of two different versions of a file together). A process killed outright
  leaves a ``.part`` file that the next downloader of that file removes.
- **Concurrent processes.** A downloader holds an exclusive ``flock`` on ``.<name>.lock`` next
  to the file (as run directories do, train/run.py); a second process asking for the same file
  waits for it and then uses the finished file instead of fetching it again.
- **Checked once.** A cached file is hashed the first time it is used (a file copied into the
  cache by hand is checked like a download) and a stamp ``.<name>.verified`` records the digest
  with the file's size and modification time; later uses trust an unchanged file without
  rehashing it.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path
from typing import Iterator

from .io import atomic_write_json, fsync_dir, new_file_mode

ENV_CACHE = "CONVNET_CACHE"
ENV_MIRROR = "CONVNET_WEIGHTS_MIRROR"
ENV_OFFLINE = "CONVNET_OFFLINE"

# The largest file of the weights table is ConvNeXt V2-Huge (660 M float32 parameters, about
# 2.6 GB); twice that bounds a download whose size nobody published.
MAX_DOWNLOAD_BYTES = 6 * 2**30
CHUNK = 1 << 20
TIMEOUT_S = 60.0
_HEX64 = re.compile(r"[0-9a-f]{64}")
# torch.hub's HASH_REGEX: the hex digits after the last-but-extension dash of a file name are
# the first digits of the file's SHA-256 (torchvision's builders check them, check_hash=True).
_NAME_HASH = re.compile(r"-([0-9a-f]{8,})\.")


class DownloadError(ValueError):
    """A download that failed or was refused (server error, short transfer, wrong hash, too
    large). A ValueError, so that the command line reports it in one line."""


def cache_dir() -> Path:
    """Where weight files are cached: ``$CONVNET_CACHE/weights`` or ``~/.cache/convnet/weights``."""
    root = os.environ.get(ENV_CACHE, "").strip() or "~/.cache/convnet"
    return Path(root).expanduser() / "weights"


def offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "").strip().lower() not in ("", "0", "false", "no")


def source_url(url: str, file_name: str) -> str:
    """``url``, or ``$CONVNET_WEIGHTS_MIRROR/file_name`` when a mirror is set."""
    mirror = os.environ.get(ENV_MIRROR, "").strip()
    if not mirror:
        return url
    return mirror.rstrip("/") + "/" + urllib.parse.quote(file_name)


def is_url(text: str) -> bool:
    return isinstance(text, str) and text.split("://", 1)[0].lower() in ("http", "https") and "://" in text


def name_hash_prefix(file_name: str) -> str:
    """The SHA-256 prefix a torch.hub-style file name carries (``resnet18-f37072fd.pth`` ->
    ``f37072fd``), or ""."""
    m = _NAME_HASH.search(Path(file_name).name)
    return m.group(1) if m else ""


def check_sha256(expected: str, digest: str) -> bool:
    """Whether ``digest`` (64 hex) matches ``expected``: the whole digest, or a prefix of it."""
    expected = expected.lower()
    return digest == expected if len(expected) == 64 else digest.startswith(expected)


def _validate_sha256(expected: str | None, what: str) -> str:
    expected = (expected or "").strip().lower()
    if expected and not re.fullmatch(r"[0-9a-f]{8,64}", expected):
        raise ValueError(f"{what}: sha256 must be 8 to 64 hex digits (a full digest or its prefix), got {expected!r}")
    return expected


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- fetching
def fetch(url: str, file_name: str | None = None, *, sha256: str | None = None, size: int | None = None,
          max_size: int | None = None, progress: bool = True, what: str = "") -> Path:
    """The cached copy of ``url``, downloading and verifying it first if needed.

    Args:
        url: the published location (http or https).
        file_name: the path under the cache and under a mirror (a table entry's). Default: under
            a mirror the URL's last part (its published name); in the cache ``url/HOST/PATH``,
            so that two URLs of one file name never share a cached file.
        sha256: the expected SHA-256 (64 hex digits) or a prefix of it (8 or more).
        size: the exact size in bytes, where known.
        max_size: an upper bound where only an approximate size is known.
        progress: show a progress bar while downloading.
        what: how errors name the file (e.g. ``resnet18.tv_in1k``).

    Raises:
        FileNotFoundError: offline (``CONVNET_OFFLINE=1``) and not in the cache.
        DownloadError: the server failed, the transfer was short, too large, or its hash wrong.
        ValueError: a cached file whose hash is wrong (the file is named; it is not deleted).
    """
    if not is_url(url):
        raise ValueError(f"not an http(s) URL: {url!r}")
    parts = urllib.parse.urlparse(url)
    published = file_name or Path(parts.path).name
    cache_name = file_name or f"url/{parts.netloc}{parts.path}"
    if not published or Path(cache_name).is_absolute() or ".." in Path(cache_name).parts:
        raise ValueError(f"{url}: cannot cache it under the file name {cache_name!r}")
    what = what or published
    sha256 = _validate_sha256(sha256, what)
    target = cache_dir() / cache_name
    if target.is_file():
        return _verified(target, sha256, size, what)
    if offline():
        raise FileNotFoundError(
            f"{ENV_OFFLINE}=1 and {what} is not in the cache: place {Path(published).name} (from {url}) "
            f"at {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target):
        if target.is_file():  # another process downloaded it while this one waited
            return _verified(target, sha256, size, what)
        for stale in target.parent.glob(f".{target.name}.*.part"):  # a killed downloader's
            stale.unlink(missing_ok=True)
        digest = _download(source_url(url, published), target, sha256, size, max_size, progress, what)
        _write_stamp(target, digest)
    return target


def verify_file(path: str | os.PathLike, sha256: str, what: str = "") -> Path:
    """Refuse ``path`` unless its SHA-256 matches ``sha256`` (a digest or a prefix of one)."""
    path = Path(path)
    expected = _validate_sha256(sha256, what or str(path))
    digest = file_sha256(path)
    if expected and not check_sha256(expected, digest):
        raise ValueError(f"{path}: SHA-256 {digest} does not match the expected {expected}; not loaded")
    return path


def _verified(path: Path, sha256: str, size: int | None, what: str) -> Path:
    """A cached file, checked against the expected hash once (the stamp remembers it)."""
    st = path.stat()
    if size is not None and st.st_size != size:
        raise ValueError(f"{path}: cached {what} has {st.st_size:,} bytes, expected {size:,}; delete it to "
                         "download it again")
    stamp = _stamp_path(path)
    digest = None
    try:
        record = json.loads(stamp.read_text())
        if record.get("size") == st.st_size and record.get("mtime_ns") == st.st_mtime_ns:
            digest = record.get("sha256")
    except (OSError, ValueError, AttributeError):
        pass
    if digest is None:
        digest = file_sha256(path)
        if not sha256 or check_sha256(sha256, digest):
            with contextlib.suppress(OSError):  # a read-only cache still loads
                _write_stamp(path, digest)
    if sha256 and not check_sha256(sha256, digest):
        raise ValueError(f"{path}: cached {what} has SHA-256 {digest}, expected {sha256}; delete it to "
                         "download it again (or replace it with the published file)")
    return path


def _stamp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.verified")


def _write_stamp(path: Path, digest: str) -> None:
    st = path.stat()
    atomic_write_json(_stamp_path(path), {"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns})


@contextlib.contextmanager
def _file_lock(target: Path) -> Iterator[None]:
    """An exclusive flock on ``.<name>.lock`` beside ``target``; waits for another holder."""
    import fcntl  # POSIX, as run directories' locks (train/run.py); imported here so convnet imports anywhere

    fd = os.open(target.with_name(f".{target.name}.lock"), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class _RecordRedirects(urllib.request.HTTPRedirectHandler):
    """Keeps the ``X-Linked-*`` headers of a redirect: Hugging Face sends a file's SHA-256
    (``X-Linked-Etag``) and size (``X-Linked-Size``) on the answer that redirects to its CDN."""

    def __init__(self) -> None:
        super().__init__()
        self.linked: dict[str, str] = {}

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 (urllib's signature)
        for key in ("X-Linked-Etag", "X-Linked-Size"):
            if headers.get(key):
                self.linked[key] = headers[key]
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _published_sha256(headers: dict[str, str]) -> str:
    tag = (headers.get("X-Linked-Etag") or "").strip().strip('"').removeprefix("W/").strip('"').lower()
    return tag if _HEX64.fullmatch(tag) else ""


def _download(url: str, target: Path, sha256: str, size: int | None, max_size: int | None, progress: bool,
              what: str) -> str:
    """Stream ``url`` into ``target`` through a temporary file; returns the SHA-256."""
    from tqdm.auto import tqdm

    redirects = _RecordRedirects()
    opener = urllib.request.build_opener(redirects)
    request = urllib.request.Request(url, headers={"User-Agent": "convnet", "Accept-Encoding": "identity"})
    try:
        response = opener.open(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"{what}: the server answered {e.code} {e.reason} for {url}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"{what}: cannot reach {url} ({reason}); set {ENV_MIRROR} to a reachable mirror, "
                            f"or fill the cache on another machine and set {ENV_OFFLINE}=1") from None
    headers = {**{k: v for k, v in response.headers.items()}, **redirects.linked}
    expected = sha256 or _published_sha256(headers)
    if not expected:
        warnings.warn(f"{what}: no SHA-256 is known for {url}; it is checked only as a weights file when read",
                      stacklevel=3)
    length = _int_header(headers.get("Content-Length"))
    linked_size = _int_header(headers.get("X-Linked-Size"))
    size = size if size is not None else linked_size
    bound = min(b for b in (size, max_size, MAX_DOWNLOAD_BYTES) if b is not None)
    if length is not None and (length > bound or (size is not None and length != size)):
        response.close()
        raise DownloadError(f"{what}: {url} announces {length:,} bytes, expected "
                            f"{f'{size:,}' if size is not None else f'at most {bound:,}'}; not downloaded")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    h, received = hashlib.sha256(), 0
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "wb") as f, response, tqdm(total=length or size, unit="B", unit_scale=True,
                                                      unit_divisor=1024, desc=Path(target).name,
                                                      disable=not progress, leave=False) as bar:
            while True:
                try:
                    block = response.read(CHUNK)
                except (http.client.IncompleteRead, OSError) as e:
                    raise DownloadError(f"{what}: the transfer from {url} broke off after {received:,} bytes "
                                        f"({type(e).__name__}); nothing was cached, try again") from None
                if not block:
                    break
                received += len(block)
                if received > bound:
                    raise DownloadError(f"{what}: {url} sent more than {bound:,} bytes; refused, nothing was cached")
                h.update(block)
                f.write(block)
                bar.update(len(block))
            f.flush()
            os.fsync(f.fileno())
        expected_total = length if length is not None else size
        if expected_total is not None and received != expected_total:
            raise DownloadError(f"{what}: the transfer from {url} ended after {received:,} of {expected_total:,} "
                                "bytes; nothing was cached, try again")
        digest = h.hexdigest()
        if expected and not check_sha256(expected, digest):
            raise DownloadError(f"{what}: {url} sent a file with SHA-256 {digest}, expected {expected}; refused "
                                "before reading it, nothing was cached")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
    return digest


def _int_header(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


__all__ = ["DownloadError", "ENV_CACHE", "ENV_MIRROR", "ENV_OFFLINE", "MAX_DOWNLOAD_BYTES", "cache_dir",
           "check_sha256", "fetch", "file_sha256", "is_url", "name_hash_prefix", "offline", "source_url",
           "verify_file"]
