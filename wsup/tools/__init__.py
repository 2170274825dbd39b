"""wsup's tools, apart from the server: ``wsup logs`` (read and check the
log), ``wsup chaos`` (kill actors under traffic), ``wsup bench`` (against
the peers) and ``wsup send`` / the workers' control sockets (control.py)."""
