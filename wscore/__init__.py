"""wsup's core, with no actors and no processes: the WebSocket protocol
(handshake, frames, permessage-deflate), the connection as an event-driven
Session, the worker's I/O loop, the compression context ledger, the server's
configuration and the application API's types.  Sans-I/O where it pays;
imported by actors/ and by wsup/, importing neither."""
