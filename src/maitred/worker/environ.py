"""PEP 3333's environ in the worker, built from a REQUEST message (maitred.link.Request).

The front parsed and checked the request; this only spells it as the environ, once per
request on the worker's hot path: the message is unpacked at once, a copy of the fixed keys
(:attr:`EnvironBuilder.base`) is filled in, and each header name's environ key is taken from a
bounded cache instead of being built again. wsgi.input is the body in memory (a large one read
where the link received it: maitred.worker.bodyinput), or the file the front spooled it to,
which came open with the request (maitred.link.files); either way its length is known (the
front read the whole body).
"""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any
from urllib.parse import unquote_to_bytes

from maitred import __version__, link
from maitred.worker.bodyinput import body_input

log = logging.getLogger("maitred.error")


class FileWrapper:
    """wsgi.file_wrapper: iterate a file in blocks; close() closes it."""

    def __init__(self, filelike: IO[bytes], blksize: int = 64 * 1024) -> None:
        self.filelike = filelike
        self.blksize = blksize
        close = getattr(filelike, "close", None)
        if close is not None:
            self.close = close

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while data := read(self.blksize):
            yield data


class ErrorStream:
    """wsgi.errors: what the app writes goes to the error log's stream."""

    def flush(self) -> None:
        sys.stderr.flush()

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def writelines(self, lines: Iterable[str]) -> None:
        sys.stderr.writelines(lines)


class EnvironBuilder:
    """Turns a Request into a PEP 3333 environ. One per worker; keeps a cache of header keys."""

    def __init__(self, root_path: str, threads: int, processes: int) -> None:
        self.root_path = root_path.rstrip("/")
        self.base: dict[str, Any] = {
            "SERVER_SOFTWARE": f"maitred/{__version__}",
            "SCRIPT_NAME": self.root_path,
            "wsgi.version": (1, 0),
            "wsgi.errors": ErrorStream(),
            "wsgi.multithread": threads > 1,
            "wsgi.multiprocess": processes > 1,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            "wsgi.input_terminated": True,
        }
        self._keys: dict[bytes, str] = {}

    def _key(self, name: bytes) -> str:
        """The environ key of a header name not in the cache yet ("": drop the header)."""
        text = name.decode("latin-1")
        if "_" in text:
            # X-Auth_User and X-Auth-User would both become HTTP_X_AUTH_USER; a proxy that
            # strips one spelling would let the other through. Drop it (nginx, gunicorn).
            key = ""
        else:
            key = text.upper().replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
        if len(self._keys) < 4096:  # bounded: header names come from clients
            self._keys[name] = key
        return key

    def _unmount(self, environ: dict[str, Any], path_info: str) -> str:
        """PATH_INFO below --root-path, or the whole path (and no SCRIPT_NAME) outside it."""
        root = self.root_path
        # On a segment boundary: /application is not under /app.
        if path_info == root or path_info.startswith(root + "/"):
            return path_info[len(root) :]
        # Not under the mount (the proxy sent it unprefixed, or it is another app's): the app
        # sees the whole path, as with no root path at all.
        environ["SCRIPT_NAME"] = ""
        return path_info

    def build(self, req: link.Request, spooled: IO[bytes] | None = None) -> dict[str, Any]:
        """The environ of one request (the common case makes one call of ours: the headers);
        `spooled`: the file of a spooled body, which the caller closes."""
        (
            method,
            target,
            version,
            headers,
            body,
            _,  # spooled: the file is given
            remote_addr,
            remote_port,
            server_name,
            server_port,
            url_scheme,
            queue_time,
            request_id,
            script_name,
            client_dn,
        ) = req  # at once: cheaper than an attribute lookup per field
        environ = self.base.copy()
        path, _, query = target.partition(b"?")
        if not path.startswith(b"/"):
            path = _origin_path(path)
        # find(), not `in`: CPython tries bytes `in` as an int first, and pays for an exception.
        path_info = (unquote_to_bytes(path) if path.find(b"%") >= 0 else path).decode("latin-1")
        if script_name:  # a gateway's proxy split the path: the target is SCRIPT_NAME + PATH_INFO
            environ["SCRIPT_NAME"] = script_name
            path_info = path_info[len(script_name) :]
        elif self.root_path:  # a call only when mounted under --root-path
            path_info = self._unmount(environ, path_info)
        environ["REQUEST_METHOD"] = method.decode("ascii")
        environ["PATH_INFO"] = path_info
        environ["QUERY_STRING"] = query.partition(b"#")[0].decode("latin-1")
        environ["RAW_URI"] = target.decode("latin-1")
        environ["SERVER_PROTOCOL"] = "HTTP/" + version
        environ["SERVER_NAME"] = server_name
        environ["SERVER_PORT"] = server_port
        environ["REMOTE_ADDR"] = remote_addr
        environ["REMOTE_PORT"] = remote_port
        environ["wsgi.url_scheme"] = url_scheme
        environ["maitred.queue_time"] = queue_time
        if request_id:
            environ["maitred.request_id"] = request_id
        if client_dn:  # named as nginx and Apache's mod_ssl name it
            environ["SSL_CLIENT_S_DN"] = client_dn
        self._add_headers(environ, headers)
        # The front read the whole body, so its length is known even when it came chunked.
        if spooled is not None:  # a call for large bodies only
            stream: IO[bytes] = _spooled_input(environ, spooled)
        else:
            stream = io.BytesIO(body) if isinstance(body, bytes) else body_input(body)
            if body or "CONTENT_LENGTH" in environ:
                environ["CONTENT_LENGTH"] = str(len(body))
        environ["wsgi.input"] = stream
        return environ

    def _add_headers(self, environ: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
        """Each header under its environ key; a repeated one joined with commas (cookies with
        "; ")."""
        keys = self._keys
        for name, raw in headers:
            key = keys.get(name)
            if key is None:
                key = self._key(name)
            if not key:
                log.debug("dropped header %r: underscores are ambiguous in the environ", name)
                continue
            value = raw.decode("latin-1").strip(" \t")  # RFC 9110 5.5: OWS is not the value
            if key in environ:
                separator = "; " if key == "HTTP_COOKIE" else ","
                environ[key] = environ[key] + separator + value
            else:
                environ[key] = value


def _spooled_input(environ: dict[str, Any], stream: IO[bytes]) -> IO[bytes]:
    """wsgi.input from the file the front spooled the body to; sets CONTENT_LENGTH."""
    environ["CONTENT_LENGTH"] = str(os.fstat(stream.fileno()).st_size)
    return stream


def _origin_path(target: bytes) -> bytes:
    """The path of an absolute-form target (http://host/path), or the target as it is."""
    scheme, sep, rest = target.partition(b"://")
    if sep and scheme.lower() in (b"http", b"https"):
        slash = rest.find(b"/")
        return rest[slash:] if slash >= 0 else b"/"
    return target  # asterisk-form (OPTIONS *) or authority-form
