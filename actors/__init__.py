"""wsup's actors: thin shells that own resources and pass messages.

Process tier (multiprocTCPBase, one process each):

* WorkerActor (worker.py): one worker process — its listening socket, its
  I/O loop (wscore.ioloop) and, in-process, the subtrees of its connections.

In-process tier (a worker's simpleSystemBase, on its loop):

* ConnectionSupervisor (connection_supervisor.py): one connection's subtree.
* ConnectionActor (connection.py): one client socket (a Port), the Session
  (handshake done, frames, the application).
* CompressionActor (compression.py): the only holder of that connection's
  zlib contexts.
* messages.py: what they tell each other (never pickled).
"""
