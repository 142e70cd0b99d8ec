"""The link between the front and the workers: its messages, their frames, how each side reads them.

Theory of operation
-------------------
Each worker process holds one Unix stream connection to the front, its *link*. Frames on it
carry a request id (``rid``), so the requests of all of a worker's threads share one socket, and
the front writes everything it has for a worker in one system call per event-loop turn; the
worker reads many frames per ``recv``. Per request, the only messages are:

    front  -> worker:  REQUEST, then WINDOW* (flow-control credit), or CANCEL, or TIMEOUT
    worker -> front:   HEAD, BODY*, END    or  FULL (head, body and end in one frame)
                       ABORT (the app failed after the head was sent, or the request was
                              cancelled: the thread is free again either way)
                       FILE (a wsgi.file_wrapper file: the front answers TAKEN; then END
                             if it sends the file itself, else HEAD, BODY*, END as usual)

The front sends a worker a REQUEST only while it has an idle thread, so a worker never holds
more requests than threads. A thread may send BODY bytes only while it has credit: it starts
with WINDOW_SIZE per request and the front returns credit as it hands bytes to the client. A slow
reader therefore stops one thread, never the whole link.

Worker-level frames use rid 0: HELLO (after connecting), DRAIN (the worker wants to stop: send
it nothing new) and DRAINED (the front's answer, after which no REQUEST can follow).

A REQUEST whose body the front spooled to a file carries no body: the open file itself comes
with the frame (maitred.link.files says how and why).

The closed set of messages
--------------------------
Every message is declared here once, as a NamedTuple of typed fields (:class:`Full`,
:class:`Request`, ...), with its frame type, a :class:`Kind`. Both ends are checked against that
one declaration by mypy, without building a NamedTuple on the hot path (marshal refuses tuple
subclasses, and building one costs several times a plain tuple):

* A sender calls the message's encoder, ``encode_full(rid, status, content_length, head,
  body)``, whose parameters mypy takes from the NamedTuple (a ParamSpec): a missing field or
  one of the wrong type is a type error. The encoder marshals the fields as a plain tuple.
  Fields go by position (a keyword argument is a TypeError at run time).
* A receiver reads frames through its side's table, a :class:`Receivers` built from
  ``on(Full)(WorkerConnection._full)`` entries: the handler takes the message's fields as its own
  parameters, which mypy checks against the NamedTuple, names and types. BODY's handler gets
  the bytes; REQUEST's (``on_request``) gets the :class:`Request` itself, which the worker keeps.

At run time a receiver checks each message's shape: its payload decodes to a tuple of the
declared number of fields. The field types are left to mypy at the sender: a check per field
costs about 300 instructions in CPython, a few percent of a hello-world request for the 13
fields of a REQUEST. :func:`decode` (tests, tools) checks them too.

A frame of a type the receiving side does not take (the other side's, or none at all), or a
payload that is not its message, is a :class:`ProtocolViolation`: the peer is broken, and nothing
after it on the link can be trusted. The front then closes that worker's link
(maitred.front.dispatcher); a worker stops, and the master starts another
(maitred.worker.main). Both say so in the error log.

A frame is a 9-byte header, payload length (u32), frame type (u8) and rid (u32), little-endian,
then the payload: the raw bytes for BODY, the marshalled tuple of the fields for the others
(marshal is fast, and both ends always run the same Python). This package is the only code
that knows the format.

Layout
------
The messages and the frame types are declared in :mod:`maitred.link.messages`; their encoders,
decoders, the receiving tables and the frame readers are in :mod:`maitred.link.codec`. Both
sides import the package alone (``from maitred import link``), which names everything here.
"""

from __future__ import annotations

from maitred.link.codec import (
    FrameBuffer,
    FrameReader,
    Receive,
    Receivers,
    Receiving,
    Route,
    decode,
    encode_abort,
    encode_body,
    encode_cancel,
    encode_drain,
    encode_drained,
    encode_end,
    encode_file,
    encode_full,
    encode_head,
    encode_hello,
    encode_request,
    encode_taken,
    encode_timeout,
    encode_window,
    on,
    on_request,
)
from maitred.link.files import MAX_FILES, Receiver, send_with_files
from maitred.link.messages import (
    BODY_FIELD,
    HEADER,
    HEADER_SIZE,
    MARSHAL_VERSION,
    MAX_BODY_FRAME,
    MAX_FRAME,
    MESSAGES,
    READ_SIZE,
    REQUEST_META,
    Abort,
    Body,
    Cancel,
    Chunk,
    Drain,
    Drained,
    End,
    Field,
    File,
    Frame,
    FromFront,
    FromWorker,
    Full,
    Head,
    Hello,
    Kind,
    LinkError,
    Message,
    P,
    Payload,
    ProtocolViolation,
    Request,
    T,
    Taken,
    Timeout,
    Window,
    kind_name,
)

__all__ = [
    "BODY_FIELD",
    "HEADER",
    "HEADER_SIZE",
    "MARSHAL_VERSION",
    "MAX_BODY_FRAME",
    "MAX_FILES",
    "MAX_FRAME",
    "MESSAGES",
    "READ_SIZE",
    "REQUEST_META",
    "Abort",
    "Body",
    "Cancel",
    "Chunk",
    "Drain",
    "Drained",
    "End",
    "Field",
    "File",
    "Frame",
    "FrameBuffer",
    "FrameReader",
    "FromFront",
    "FromWorker",
    "Full",
    "Head",
    "Hello",
    "Kind",
    "LinkError",
    "Message",
    "P",
    "Payload",
    "ProtocolViolation",
    "Receive",
    "Receiver",
    "Receivers",
    "Receiving",
    "Request",
    "Route",
    "T",
    "Taken",
    "Timeout",
    "Window",
    "decode",
    "encode_abort",
    "encode_body",
    "encode_cancel",
    "encode_drain",
    "encode_drained",
    "encode_end",
    "encode_file",
    "encode_full",
    "encode_head",
    "encode_hello",
    "encode_request",
    "encode_taken",
    "encode_timeout",
    "encode_window",
    "kind_name",
    "on",
    "on_request",
    "send_with_files",
]
