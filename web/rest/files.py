"""``upload/``: store a file in MongoDB; ``files/{id}/``: download it.

Rules (also in openapi.json and docs/rest-api.md):

* The body is ``multipart/form-data`` with one part ``file`` (with a filename) and an
  optional field ``conversation_id``; any other field is refused (400).
* At most ``settings.upload_max_bytes`` (``UPLOAD_MAX_BYTES``, default 10 MiB) of file
  content: 413, nothing stored. A body past the limit (plus multipart framing) but within
  ``DISCARD_ALLOWANCE_BYTES`` more is read and dropped before the 413, so that clients which
  send the whole body before reading (``urllib``, ``requests``) get the answer and keep the
  connection. A body declared larger still is refused as soon as the headers arrive, and
  a chunked one as soon as it passes that bound; the connection then closes unread.
* Upload quotas (``storage.upload_usage``): past one, 429 ``upload_quota_exceeded`` with
  ``Retry-After``, nothing stored; a file larger than a whole quota, 413. A declared length
  that alone (less the framing allowance) does not fit is refused before the body is kept, and
  answered once it is read, as past the size limit; the exact check reserves the file's bytes.
* The type is decided by the bytes (``filetype``; UTF-8 text without binary control
  characters is text). It must be in ``ALLOWED_TYPES``; a declared part type other than
  ``application/octet-stream`` must agree with the bytes. Otherwise 415.
* Download: with a conversation, its participants (and tenant admins); without one,
  the uploader and tenant admins. Anyone else, and other tenants, get 404.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import AsyncIterator
from urllib.parse import quote

import filetype
import tornado.httputil
import tornado.web
from tornado.iostream import StreamClosedError

from actors import protocol
from actors.errors import ChatError, InvalidMessage, NotFound, PayloadTooLarge, UnsupportedMediaType, UploadQuotaExceeded
from actors.policy import Action
from storage.files import FileIntegrityError
from storage.upload_usage import QuotaExceeded, Quotas
from web.rest.base import API_PREFIX, ApiHandler, authorize_conversation

logger = logging.getLogger(__name__)

# Room for multipart framing around a file at the size limit.
BODY_OVERHEAD_BYTES = 64 * 1024
# How far past the limit a body is still read, only to be dropped. A fixed amount rather than a
# multiple of the limit: it covers the near misses (a photo a few MiB too large) whatever the
# limit is, and reading it costs time and bandwidth, never memory. Further than that is not a near
# miss, and not worth reading: a client sending 1 GB gets its 413 at once and loses the connection.
DISCARD_ALLOWANCE_BYTES = 16 * 1024 * 1024
# A chunked body declares no length: Tornado's own limit is lifted, and data_received answers
# as soon as the body passes the discard bound.
UNCOUNTED_BODY_BYTES = 2**63 - 1
FILENAME_MAX_CHARS = 255

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/heic", "image/avif")
DOCUMENT_TYPES = (
    "application/pdf",
    "application/rtf",
    "application/msword",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
)
ARCHIVE_TYPES = ("application/zip",)
TEXT_TYPES = ("text/plain", "text/csv", "text/markdown")
ALLOWED_TYPES = IMAGE_TYPES + DOCUMENT_TYPES + ARCHIVE_TYPES + TEXT_TYPES

# What clients declare for a part whose type they do not know: the bytes decide alone.
UNDECLARED_TYPES = frozenset({"", "application/octet-stream", "application/unknown", "binary/octet-stream"})
# Other names in common use for the same types.
TYPE_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-ms-bmp": "image/bmp",
    "application/x-pdf": "application/pdf",
    "text/rtf": "application/rtf",
    "application/x-zip-compressed": "application/zip",
    "application/x-zip": "application/zip",
    "text/x-markdown": "text/markdown",
}

# Tornado leaves a name sent as ``filename*=UTF-8''...`` (RFC 5987) escaped as in a quoted string,
# ``"`` as ``\"`` and ``\`` as ``\\``: ``z%22x.txt`` came out as ``"x.txt``, cut at the backslash.
# Undone for every name; a name sent as ``filename="..."`` only changes where a backslash (a path
# separator) comes right before a quote: it is not cut there.
_QUOTED_PAIR = re.compile(r'\\(["\\])')
# Control characters that do not occur in text files (tab, newline, form feed and CR do).
_BINARY_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
# Extensions that name each accepted type (the first is added to a name that has none of them),
# so what a file is called never disagrees with what it is.
EXTENSIONS = {
    "image/png": (".png",),
    "image/jpeg": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "image/gif": (".gif",),
    "image/webp": (".webp",),
    "image/bmp": (".bmp",),
    "image/heic": (".heic", ".heif"),
    "image/avif": (".avif",),
    "application/pdf": (".pdf",),
    "application/rtf": (".rtf",),
    "application/msword": (".doc",),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": (".docx",),
    "application/vnd.ms-excel": (".xls",),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": (".xlsx",),
    "application/vnd.ms-powerpoint": (".ppt",),
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": (".pptx",),
    "application/vnd.oasis.opendocument.text": (".odt",),
    "application/vnd.oasis.opendocument.spreadsheet": (".ods",),
    "application/vnd.oasis.opendocument.presentation": (".odp",),
    "application/zip": (".zip",),
    "text/plain": (".txt", ".text", ".log"),
    "text/csv": (".csv",),
    "text/markdown": (".md", ".markdown"),
}


def media_type(value: str | None) -> str:
    base = (value or "").split(";", 1)[0].strip().lower()
    return TYPE_ALIASES.get(base, base)


def looks_like_text(data: bytes) -> bool:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not _BINARY_CHARS.search(text)


def checked_content_type(data: bytes, declared: str | None) -> str:
    """The content type the bytes show, if allowed and consistent with ``declared``; else 415."""
    declared = media_type(declared)
    kind = filetype.guess(data)
    if kind is not None:
        detected = media_type(kind.mime)
    elif looks_like_text(data):
        detected = declared if declared in TEXT_TYPES else "text/plain"
    else:
        detected = None
    if detected not in ALLOWED_TYPES:
        raise UnsupportedMediaType(
            "This kind of file is not accepted",
            {"file": [f"The content is {detected or 'unrecognised binary data'}; allowed: {', '.join(ALLOWED_TYPES)}."]},
        )
    if declared not in UNDECLARED_TYPES and declared != detected:
        raise UnsupportedMediaType(
            "The file's content does not match its declared type",
            {"file": [f"Declared {declared}, but the content is {detected}."]},
        )
    return detected


def clean_filename(name: str, content_type: str) -> str:
    """The last path component without control or invisible format characters (bidi overrides
    would show ``\u202egnp.txt`` as ``txt.png``), at most 255 characters, ending in an
    extension of ``content_type``."""
    name = _QUOTED_PAIR.sub(r"\1", name).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf")).strip() or "file"
    extensions = EXTENSIONS[content_type]
    if not name.lower().endswith(extensions):
        name = name[: FILENAME_MAX_CHARS - len(extensions[0])] + extensions[0]
    return name[-FILENAME_MAX_CHARS:]


def quota_error(refused: QuotaExceeded) -> ChatError:
    """429 while waiting makes room; 413 for a file larger than the whole quota."""
    whose = "your" if refused.scope == "user" else "your organisation's"
    if refused.retry_after_secs is None:
        return PayloadTooLarge(
            f"A file may have at most {refused.quota_bytes} bytes, {whose} upload quota for 24 hours",
            {"file": [f"Larger than {refused.quota_bytes} bytes."], "max_bytes": refused.quota_bytes},
        )
    details = {
        "quota": refused.scope,
        "quota_bytes": refused.quota_bytes,
        "used_bytes": refused.used_bytes,
        "retry_after": round(refused.retry_after_secs, 3),
    }
    message = f"Over {whose} upload quota: {refused.used_bytes} of {refused.quota_bytes} bytes used in the last 24 hours"
    return UploadQuotaExceeded(message, details, refused.retry_after_secs)


def file_url(file_id: str) -> str:
    return f"{API_PREFIX}/files/{file_id}/"


@tornado.web.stream_request_body
class UploadHandler(ApiHandler):
    """Streams the body in (so the size checks happen as it arrives), then parses the form."""

    def initialize(self, context) -> None:
        super().initialize(context)
        self._parts: list[bytes] = []
        self._received = 0
        self._refusal: ChatError | None = None  # decided before the body ended: keep none of it

    @property
    def _max_body_bytes(self) -> int:
        return self.ctx.settings.upload_max_bytes + BODY_OVERHEAD_BYTES

    @property
    def _discard_bound(self) -> int:
        return self._max_body_bytes + DISCARD_ALLOWANCE_BYTES

    @property
    def _quotas(self) -> Quotas:
        return Quotas(self.ctx.settings.upload_quota_bytes, self.ctx.settings.tenant_upload_quota_bytes)

    async def prepare(self) -> None:
        """Auth, rate limit, then what the headers can tell; only then may the body be this large."""
        await super().prepare()
        if self.request.method != "POST":
            return  # answered 405 once prepare is done
        if media_type(self.request.headers.get("Content-Type")) != "multipart/form-data":
            raise UnsupportedMediaType("Upload with Content-Type: multipart/form-data")
        length = self.request.headers.get("Content-Length")
        if length is None:
            self.request.connection.set_max_body_size(UNCOUNTED_BODY_BYTES)
            return
        declared = int(length) if length.strip().isdigit() else 0  # Tornado answers 400 to a malformed one
        if declared > self._discard_bound:
            raise self._too_large()
        if declared > self._max_body_bytes:
            self._refusal = self._too_large()
        elif declared > BODY_OVERHEAD_BYTES:
            try:
                await self.ctx.storage.files.usage.check(self.tenant_id, self.principal.user_id, declared - BODY_OVERHEAD_BYTES, self._quotas)
            except QuotaExceeded as refused:
                self._refusal = quota_error(refused)
        self.request.connection.set_max_body_size(self._discard_bound)

    def data_received(self, chunk: bytes) -> None:
        """Keeps the body up to the limit; past it keeps nothing, and past the bound answers."""
        if self._finished:
            return
        self._received += len(chunk)
        if self._received > self._discard_bound:
            self.respond_error(self._too_large())
            return
        if self._refusal is None and self._received > self._max_body_bytes:
            self._refusal = self._too_large()
        if self._refusal is not None:
            self._parts.clear()
        else:
            self._parts.append(chunk)

    def _too_large(self) -> PayloadTooLarge:
        limit = self.ctx.settings.upload_max_bytes
        return PayloadTooLarge(f"A file may have at most {limit} bytes", {"file": [f"Larger than {limit} bytes."], "max_bytes": limit})

    async def post(self) -> None:
        if self._refusal is not None:
            raise self._refusal
        body, self._parts = b"".join(self._parts), []
        fields: dict[str, list[bytes]] = {}
        files: dict[str, list[tornado.httputil.HTTPFile]] = {}
        try:
            tornado.httputil.parse_body_arguments(self.request.headers["Content-Type"], body, fields, files, self.request.headers)
        except Exception as error:  # HTTPInputError, or undecodable part headers
            raise InvalidMessage("The body is not valid multipart/form-data", {"body": [str(error)[:200]]}) from None
        del body
        form = self._form_fields(fields, files)
        part = files["file"][0]
        if len(part.body) > self.ctx.settings.upload_max_bytes:
            raise self._too_large()
        if not part.body:
            raise InvalidMessage("Invalid fields", {"file": ["The file is empty."]})
        conversation_id = form["conversation_id"]
        if conversation_id is not None:
            await authorize_conversation(self.ctx, self.principal, conversation_id, Action.POST)
        content_type = checked_content_type(part.body, part.content_type)
        try:
            doc = await self.ctx.storage.files.save(
                self.tenant_id,
                owner_id=self.principal.user_id,
                filename=clean_filename(part.filename, content_type),
                content_type=content_type,
                data=part.body,
                conversation_id=conversation_id,
                quotas=self._quotas,
            )
        except QuotaExceeded as refused:
            raise quota_error(refused) from None
        self.respond(protocol.file_object(doc, file_url(doc["_id"])), 201)

    def _form_fields(self, fields: dict[str, list[bytes]], files: dict[str, list]) -> dict:
        errors: dict[str, list[str]] = {}
        for name in {*fields, *files} - {"file", "conversation_id"}:
            errors[name] = ["Unknown field."]
        if "conversation_id" in files:
            errors["conversation_id"] = ["Send a plain form field, not a file."]
        if "file" in fields:
            errors["file"] = ["Send the file as a file part (with a filename)."]
        elif len(files.get("file", [])) != 1:
            errors["file"] = ["Missing data for required field." if "file" not in files else "Send exactly one file."]
        values = fields.get("conversation_id", [])
        if len(values) > 1:
            errors["conversation_id"] = ["Give it once."]
        if errors:
            raise InvalidMessage("Invalid fields", errors)
        form = {}
        if values:
            try:
                form["conversation_id"] = values[0].decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidMessage("Invalid fields", {"conversation_id": ["Not valid UTF-8."]}) from None
        return self.ctx.protocol.load_body("upload", form)


class FileHandler(ApiHandler):
    async def get(self, file_id: str) -> None:
        doc = await self.ctx.storage.files.get(self.tenant_id, file_id)
        if doc is None:
            raise NotFound("File not found")
        if doc.get("conversation_id") is not None:
            try:
                await authorize_conversation(self.ctx, self.principal, doc["conversation_id"])
            except NotFound:
                raise NotFound("File not found") from None
        elif doc["owner_id"] != self.principal.user_id and not self.principal.is_tenant_admin:
            raise NotFound("File not found")
        self.rows_sent = doc["chunk_count"]
        chunks = self.ctx.storage.files.chunks_of(self.tenant_id, doc)
        try:
            first = await anext(chunks)  # a broken file is still an error answer, not a cut-off one
        except (FileIntegrityError, StopAsyncIteration):
            logger.error("file %s: its content is incomplete", file_id)
            raise ChatError("The file's content is incomplete") from None
        content_type = doc["content_type"]
        self.set_header("Content-Type", f"{content_type}; charset=utf-8" if content_type.startswith("text/") else content_type)
        self.set_header("Content-Length", str(doc["size"]))
        self.set_header("Content-Disposition", content_disposition(doc["filename"], inline=content_type in IMAGE_TYPES))
        self.set_header("X-Content-Type-Options", "nosniff")
        await self._stream(first, chunks)

    async def _stream(self, first: bytes, rest: AsyncIterator[bytes]) -> None:
        """One chunk at a time, the next fetched only once the last has reached the socket: a
        reader that stops reading holds one chunk of memory, not the file."""
        try:
            self.write(first)
            await self.flush()
            async for chunk in rest:
                self.write(chunk)
                await self.flush()
        except FileIntegrityError as error:
            logger.error("%s; the download was cut off", error)
            self.request.connection.close()
            return
        except StreamClosedError:
            return  # the reader went away
        self.finish()


def content_disposition(filename: str, *, inline: bool) -> str:
    """RFC 6266: an ASCII fallback and the exact name in ``filename*``."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename)
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
