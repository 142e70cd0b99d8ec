"""The sans-IO HTTP/1.1 core: bytes in, events out; response heads and chunk framing out.

Nothing here knows sockets, processes or WSGI, so all of it is tested with byte strings.
"""
