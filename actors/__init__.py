"""wsup's actors: thin shells that own resources and pass messages.

* ListenerActor (listener.py): the listening socket, accepting, handing sockets over.
* ConnectionSupervisor (connection_supervisor.py): one connection's subtree.
* ConnectionActor (connection.py): one client socket, handshake, frames, the app.
"""
