"""The sans-IO HTTP/1.1 core: bytes in, events out; response heads and chunk framing out.

Nothing here knows sockets, processes or WSGI, so all of it is tested with byte strings.

parser    requests in: heads, body bytes, the end of each request, errors with their status
framing   for every response: where its body ends, whether its connection stays, its last lines
errors    the server's own answers, each rendering itself (400 ... 504)
response  pieces of heads: reason phrases, the first lines, the Date cache, chunks
"""
