"""``bundle publish``: put a bundle, under its id, where the targets pull it from.

A bundle is published as ``<bundle_id>.tar`` (the same bytes) with ``<bundle_id>.tar.sha256`` beside it: the file's
SHA-256 in sha256sum's format (``HEX  NAME``), which ``sha256sum -c`` and Ansible's get_url
(``checksum: sha256:URL``) read. The destination is a directory a web server serves (each file written under a
temporary name and renamed, so a reader never sees half a bundle) or an HTTP(S) URL: one whose path ends in ``/`` is
a base both files are PUT under (nginx's WebDAV PUT, an object store's bucket path); any other URL is the bundle's
own destination (a presigned S3 PUT URL names one object: no checksum file then).

Targets trust nothing of the server: they check what they pull against its bundle id (the manifest's hash, then
every member against the manifest). So publishing needs the bundle whole, not a trusted server: the bundle is
verified before it goes out (a bundle the targets would refuse is refused here), and the bytes sent are hashed as
they go, so a file that changed meanwhile is reported instead of published.

Publishing is idempotent: a directory that holds the same bytes under the id, or a base URL whose checksum file names
the same SHA-256 and whose bundle has the size, is left alone (``changed`` false).

The HTTP client is the standard library's (urllib): the environment's proxies (``https_proxy``, ``no_proxy``, ...),
certificates checked against the system's CAs or ``ca_file``, ``timeout`` seconds for the connection and each read,
and ``retries`` further attempts, ``retry_delay`` seconds apart, after a failure that may pass (no connection, a
connection cut, a timeout, HTTP 408, 429 or 5xx). Messages name URLs without their user, query and fragment: the
signature of a presigned URL is a credential.
"""

import hashlib
import http.client
import os
import ssl
import stat
import time
import urllib.error
import urllib.parse
import urllib.request

from ..errors import BlkfleetError
from ..files import atomic_write, create_new, open_file, trusted_dir
from . import pack

CHUNK = 1 << 20
CHECKSUM_SUFFIX = ".sha256"
CHECKSUM_MAX = 4096  # a checksum file is one line
RETRYABLE_STATUS = frozenset((408, 429, 500, 502, 503, 504))
SCHEMES = ("http", "https")


class TransferError(BlkfleetError):
    """A transfer that failed: the server refused it (HTTP status), did not answer, or stopped."""

    code = "transfer_failed"


def is_url(to):
    """Whether a ``--to`` names a URL (``scheme://...``) rather than a directory."""
    return "://" in to


def redact(url):
    """``url`` without user information, query and fragment, for messages and results."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def check_url(url):
    """Refuse what is not an absolute http(s) URL with a host; returns it."""
    try:
        parts = urllib.parse.urlsplit(url)
        port_ok = parts.port != 0  # .port raises ValueError for a port out of range or not a number
    except ValueError as e:
        raise BlkfleetError(f"{redact(url)}: not a valid URL ({e})") from None
    if parts.scheme.lower() not in SCHEMES or not parts.hostname or not port_ok:
        raise BlkfleetError(f"{redact(url)}: not an http:// or https:// URL with a host")
    if any(c in url for c in " \t\r\n"):
        raise BlkfleetError(f"{redact(url)}: a URL holds no whitespace (encode it as %20)")
    return url


def join(base, name):
    """``name`` appended to a base URL's path (which ends in ``/``), its query kept."""
    parts = urllib.parse.urlsplit(base)
    return urllib.parse.urlunsplit(parts._replace(path=parts.path + urllib.parse.quote(name)))


def checksum_line(sha256, name):
    return f"{sha256}  {name}\n"


def parse_checksum(text, name):
    """The SHA-256 a checksum file gives for ``name`` (sha256sum's format), or None."""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].lstrip("*") == name and len(fields[0]) == 64:
            return fields[0].lower()
    return None


def describe(path):
    """``(size, sha256)`` of a regular file, read once."""
    digest = hashlib.sha256()
    size = 0
    with open_file(path) as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            size += len(block)
            digest.update(block)
    return size, digest.hexdigest()


class _Source:
    """The bundle's bytes, read again for each attempt and hashed as they go out."""

    def __init__(self, path, size, sha256):
        self.path, self.size, self.sha256 = path, size, sha256

    def chunks(self, digest):
        with open(self.path, "rb") as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                digest.update(block)
                yield block

    def check(self, digest, sent):
        if sent != self.size or digest.hexdigest() != self.sha256:
            raise BlkfleetError(f"{self.path}: changed while it was published (its sha256 or size differs)")


def publish(bundle, to, check=False, timeout=60.0, retries=3, retry_delay=2.0, ca_file=None):
    """Publish the bundle file ``bundle`` to ``to`` (a directory or an http(s) URL); the result document.

    ``check``: change nothing, tell whether publishing would (for a URL that is not a base, it always would)."""
    manifest = pack.verify(bundle)
    size, sha256 = describe(bundle)
    bundle_id = manifest["bundle_id"]
    name = f"{bundle_id}.tar"
    doc = {"bundle_id": bundle_id, "size": size, "sha256": sha256, "name": name, "checked": bool(check)}
    source = _Source(bundle, size, sha256)
    if is_url(to):
        client = _Client(timeout, retries, retry_delay, ca_file)
        doc.update(_to_url(source, check_url(to), name, check, client))
    else:
        doc.update(_to_directory(source, to, name, check))
    return doc


# -- a directory ---------------------------------------------------------------------------------------------

def _to_directory(source, directory, name, check):
    directory = os.path.abspath(directory)
    exists = os.path.isdir(directory)
    if exists or not check:
        directory = trusted_dir(directory, "publication directory")
    dest = os.path.join(directory, name)
    sums = dest + CHECKSUM_SUFFIX
    line = checksum_line(source.sha256, name)
    have_bundle = exists and _holds(dest, source.size, source.sha256)
    have_sums = exists and _reads(sums) == line
    result = {"to": directory, "bundle": dest, "checksum_file": sums, "changed": not (have_bundle and have_sums),
              "attempts": 0}
    if check:
        return result
    if not have_bundle:
        _copy(source, dest)
    if not have_sums:
        atomic_write(sums, line)
    return result


def _holds(path, size, sha256):
    try:
        st = os.lstat(path)
        return stat.S_ISREG(st.st_mode) and st.st_size == size and describe(path)[1] == sha256
    except OSError:
        return False


def _reads(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read(CHECKSUM_MAX).decode("ascii", "replace")


def _copy(source, dest):
    """The bundle into ``dest`` through a new temporary file beside it, renamed once whole and checked."""
    directory, base = os.path.split(dest)
    tmp = os.path.join(directory, f".{base}.{os.urandom(6).hex()}.partial")
    fd = create_new(tmp, 0o644)
    try:
        digest = hashlib.sha256()
        sent = 0
        with os.fdopen(fd, "wb") as out:
            fd = None
            for block in source.chunks(digest):
                out.write(block)
                sent += len(block)
            out.flush()
            os.fsync(out.fileno())
        source.check(digest, sent)
        os.replace(tmp, dest)
    except BaseException:
        if fd is not None:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# -- a URL ---------------------------------------------------------------------------------------------------

def _to_url(source, to, name, check, client):
    base = urllib.parse.urlsplit(to).path.endswith("/")
    bundle_url = join(to, name) if base else to
    sums_url = join(to, name + CHECKSUM_SUFFIX) if base else None
    result = {"to": redact(to), "bundle": redact(bundle_url), "checksum_file": sums_url and redact(sums_url)}
    published = False
    if base:
        text = client.get_small(sums_url, CHECKSUM_MAX)
        published = (text is not None and parse_checksum(text, name) == source.sha256
                     and client.length(bundle_url) == source.size)
    result.update(changed=not published, attempts=0)
    if check or published:
        return result
    last = {}  # the digest and byte count of the last attempt's body

    def body():
        last.update(digest=hashlib.sha256(), sent=0)
        for block in source.chunks(last["digest"]):
            last["sent"] += len(block)
            yield block

    result["attempts"] = client.put(bundle_url, body, source.size)
    source.check(last["digest"], last["sent"])
    if sums_url:
        line = checksum_line(source.sha256, name).encode("ascii")
        client.put(sums_url, lambda: iter((line,)), len(line))
    return result


class _Client:
    """urllib with one timeout, retries of what may pass, and one-line errors naming the redacted URL."""

    def __init__(self, timeout, retries, retry_delay, ca_file=None):
        self.timeout, self.retries, self.retry_delay = timeout, retries, retry_delay
        try:
            context = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as e:
            raise BlkfleetError(f"{ca_file}: cannot read CA certificates: {e}") from None
        self.opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))

    def _attempts(self, url, what, once):
        """``once()`` until it succeeds or fails for good; (its value, the attempts made)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return once(), attempt
            except urllib.error.HTTPError as e:
                problem, again = f"HTTP {e.code} {e.reason}", e.code in RETRYABLE_STATUS
                e.close()
            except urllib.error.URLError as e:
                reason = e.reason
                problem = f"{getattr(reason, 'strerror', None) or reason}"
                again = not isinstance(reason, ssl.SSLCertVerificationError)
            except (OSError, http.client.HTTPException) as e:
                problem, again = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__, True
            if not again or attempt > self.retries:
                tries = f" (after {attempt} attempts)" if attempt > 1 else ""
                raise TransferError(f"{redact(url)}: {what} failed: {problem}{tries}") from None
            time.sleep(self.retry_delay)

    def put(self, url, body, size):
        """PUT ``body()`` (an iterable of bytes, made again for each attempt) of ``size`` bytes; the attempts."""

        def once():
            request = urllib.request.Request(url, data=body(), method="PUT", headers={
                "Content-Length": str(size), "Content-Type": "application/octet-stream"})
            with self.opener.open(request, timeout=self.timeout) as response:
                response.read()

        return self._attempts(url, "PUT", once)[1]

    def get_small(self, url, limit):
        """The text at ``url`` (at most ``limit`` bytes), or None when the server has none (404, 403, 410)."""

        def once():
            try:
                with self.opener.open(url, timeout=self.timeout) as response:
                    return response.read(limit).decode("ascii", "replace")
            except urllib.error.HTTPError as e:
                if e.code in (403, 404, 410):  # an object store answers 403 for a missing key it may not list
                    e.close()
                    return None
                raise

        return self._attempts(url, "GET", once)[0]

    def length(self, url):
        """The Content-Length a HEAD of ``url`` reports, or None."""

        def once():
            try:
                with self.opener.open(urllib.request.Request(url, method="HEAD"), timeout=self.timeout) as r:
                    value = r.headers.get("Content-Length")
                    return int(value) if value and value.isdigit() else None
            except urllib.error.HTTPError as e:
                if e.code in (403, 404, 410):
                    e.close()
                    return None
                raise

        return self._attempts(url, "HEAD", once)[0]
